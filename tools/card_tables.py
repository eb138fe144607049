"""Markdown tables for MODEL_CARD.md from `ferkit evaluate --json` outputs, so the card's numbers are pasted,
never retyped.

    ferkit evaluate --data fer2013.zip --split publictest --model default --json > shipped.json
    ferkit evaluate --data fer2013.zip --split publictest --model default --tta none --json > no_tta.json
    python tools/card_tables.py shipped.json no_tta.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

SUMMARY_KEYS = ("accuracy", "macro_f1", "weighted_f1", "weighted_auc", "micro_auc", "macro_auc", "ece")


def summary_table(runs: list[dict]) -> str:
    head = "| model | split | n | TTA | excluded train copies | " + " | ".join(SUMMARY_KEYS) + " |"
    rows = [head, "|" + "---|" * 5 + "---:|" * len(SUMMARY_KEYS)]
    for m in runs:
        cells = [m.get("model", "?"), m.get("split", "?"), str(m["n"]), m["tta"],
                 str(m.get("excluded_train_copies", 0))]
        cells += ["n/a" if m.get(k) is None else f"{m[k]:.4f}" for k in SUMMARY_KEYS]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def per_class_table(m: dict) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, r in m["per_class"].items():
        rows.append(f"| {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |")
    return "\n".join(rows)


def confusion_table(m: dict) -> str:
    labels = m["labels"]
    rows = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, counts in zip(labels, m["confusion_matrix"]):
        rows.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, help="evaluate --json outputs; the first gets the per-class tables")
    args = ap.parse_args()
    runs = [json.loads(f.read_text()) for f in args.files]
    print(summary_table(runs), per_class_table(runs[0]), confusion_table(runs[0]), sep="\n\n")


if __name__ == "__main__":
    main()
