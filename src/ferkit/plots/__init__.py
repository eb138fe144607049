"""Matplotlib figures (Agg backend, imported only where a figure is drawn)."""
