"""Evaluation: ``evaluate`` runs a model over a dataset split (optionally occluded, with TTA) and writes the
report; ``metrics`` computes every number papers report (accuracy, F1, AUCs, confusion, ECE);
``calibrate`` fits the temperature a checkpoint carries."""
