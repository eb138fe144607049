"""`ferkit data inspect PATH`: splits, class balance, duplicates, leaks and blanks of any dataset ferkit reads;
`ferkit data formats`: those datasets and the layout each expects.

``add_dataset_options`` / ``dataset_options`` are the dataset flags every verb that reads data shares
(format, size, colour, classes, FER+ label mode, validation split, ...).
"""
from __future__ import annotations

import argparse

DATA_HELP = ("dataset: FER2013 (folder, zip, fer2013.csv), FER+, RAF-DB, AffectNet, CK+, JAFFE, ExpW, a class-folder "
             "tree or a path,label CSV (`ferkit data formats`)")


def add_dataset_options(p: argparse.ArgumentParser, *, val_split: bool = True) -> None:
    """The flags that say how to read a dataset; ``dataset_options(args)`` turns them into load_dataset
    keyword arguments."""
    g = p.add_argument_group("reading the dataset")
    g.add_argument("--format", default="auto", metavar="NAME",
                   help="dataset format (default: detected): fer2013, ferplus, rafdb, affectnet, ckplus, jaffe, "
                        "expw, folders, csv")
    g.add_argument("--size", type=int, metavar="PX", help="side of the cached faces (default: the format's own)")
    g.add_argument("--color", choices=("auto", "gray", "rgb"), default="auto",
                   help="keep colour where the dataset has it (auto), or force gray or rgb")
    g.add_argument("--fit", choices=("crop", "pad"), default="crop",
                   help="images without a face box: keep their centre square (crop) or all of them, padded (pad)")
    g.add_argument("--classes", metavar="7|8|NAMES",
                   help="7 basic emotions (drops contempt), 8 with contempt, or comma-separated class names")
    g.add_argument("--label-mode", choices=("majority", "probability", "crossentropy", "multi_target"),
                   help="FER+: how votes become labels (default majority)")
    g.add_argument("--variant", choices=("auto", "aligned", "original"), default="auto",
                   help="RAF-DB: aligned faces or original photos")
    g.add_argument("--emotion-frames", type=int, default=3, metavar="N",
                   help="CK+: last N frames of a labelled sequence carry its emotion (3)")
    g.add_argument("--neutral-frames", type=int, default=1, metavar="N",
                   help="CK+: first N frames of a sequence are neutral (1; 0 for none)")
    g.add_argument("--columns", default="", metavar="SPEC",
                   help="CSV: column names, e.g. path=file,label=emotion,split=usage,subject=person")
    g.add_argument("--codes", default="", metavar="TABLE",
                   help="CSV or class folders with numeric labels: fer2013, affectnet, rafdb, ckplus or expw codes")
    g.add_argument("--fer2013-csv", default="", metavar="CSV", help="FER+: the fer2013.csv its rows follow")
    g.add_argument("--pca", type=float, metavar="SHARE",
                   help="rebuild faces from the principal components keeping this share of each channel's variance "
                        "(e.g. 0.95), stored compressed beside the cache")
    if val_split:
        g.add_argument("--val-split", type=float, metavar="SHARE",
                       help="move this share of train into a val split (stratified, by subject where known)")
        g.add_argument("--seed", type=int, default=0, help="seed of --val-split (0)")


def dataset_options(args: argparse.Namespace, *, val_split: bool = True) -> dict:
    """load_dataset keyword arguments from ``add_dataset_options`` flags (``val_split`` as given to it)."""
    out = {"format": args.format, "size": args.size, "color": args.color, "fit": args.fit, "classes": args.classes,
           "label_mode": args.label_mode, "variant": args.variant, "emotion_frames": args.emotion_frames,
           "neutral_frames": args.neutral_frames, "columns": args.columns, "codes": args.codes,
           "fer2013_csv": args.fer2013_csv, "pca": args.pca}
    if val_split and getattr(args, "val_split", None):
        out.update(val_split=args.val_split, seed=args.seed)
    return out


def register(sub) -> None:
    parser = sub.add_parser("data", help="inspect datasets", description="Dataset tools.")
    verbs = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    inspect = verbs.add_parser(
        "inspect", help="splits, class counts, duplicates, leaks and blanks of a dataset",
        description="Read a dataset (any format `ferkit data formats` lists) through the cache and report its "
                    "format, splits, per-class counts, subjects, what was skipped or excluded, exact duplicates, "
                    "train/test leaks and blank images.",
    )
    inspect.add_argument("path", help=DATA_HELP)
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    inspect.add_argument("--plot", metavar="FILE", help="save a class-count bar chart (PNG)")
    inspect.add_argument("--strict", action="store_true", help="fail on corrupt images or bad CSV rows")
    inspect.add_argument("--cache-dir", metavar="DIR", help="decoded-dataset cache (default: ferkit cache dir)")
    inspect.add_argument("--no-cache", action="store_true", help="decode the source without using the cache")
    inspect.add_argument("--label-overrides", metavar="CSV", help="path,label CSV applied on load")
    inspect.add_argument("--examples", type=int, default=3, metavar="N", help="example ids per finding (3)")
    inspect.add_argument("--folds", type=int, metavar="K",
                         help="also show the K cross-validation folds of train (by subject where known)")
    add_dataset_options(inspect)
    inspect.set_defaults(func=_inspect)

    formats = verbs.add_parser("formats", help="the datasets ferkit reads and the layout each expects",
                               description="Every dataset format ferkit reads, with the exact files it expects.")
    formats.add_argument("--markdown", action="store_true", help="print the README's Markdown table")
    formats.add_argument("--json", action="store_true", help="print a JSON list")
    formats.set_defaults(func=_formats)


def _formats(args: argparse.Namespace) -> int:
    import json

    from ferkit.data.formats import FORMATS, markdown_table

    if args.json:
        print(json.dumps([f.to_dict() for f in FORMATS], indent=2))
    elif args.markdown:
        print(markdown_table(), end="")
    else:
        for f in FORMATS:
            print(f"{f.name:<10} {f.title}\n{'':<10} layout: {f.layout}\n{'':<10} labels: {f.labels}\n"
                  f"{'':<10} splits: {f.splits}; faces: {f.faces}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from ferkit.deps import require

    if args.plot:  # the only part of `data inspect` beyond the base install
        require("matplotlib", for_what="--plot")
    from ferkit.data.loader import load_dataset_with_report
    from ferkit.data.quality import quality_report

    ds, load = load_dataset_with_report(args.path, cache=not args.no_cache, cache_dir=args.cache_dir,
                                        strict=args.strict, label_overrides=args.label_overrides,
                                        progress=not args.json, **dataset_options(args))
    quality = quality_report(ds)
    folds = _folds(ds, args.folds, args.seed) if args.folds else None
    plot = None
    if args.plot:
        from ferkit.plots.data import plot_class_counts

        plot = str(plot_class_counts(quality, args.plot, title=f"{ds.name}: class counts per split"))
    if args.json:
        print(json.dumps({"path": str(args.path), "load": load.to_dict(), "dataset": _summary(ds),
                          "quality": quality.to_dict(args.examples), "folds": folds, "plot": plot}, indent=2))
        return 0
    _print_text(load, quality, args.examples, _summary(ds), folds)
    if plot:
        print(f"\nplot saved to {plot}")
    return 0


def _summary(ds) -> dict:
    """What the dataset object holds beyond the class table."""
    shape = list(ds.images.shape[1:])
    return {"format": ds.name, "labels": list(ds.label_names), "face_shape": shape,
            "color": "rgb" if ds.channels == 3 else "gray",
            "subjects": int(len(set(ds.groups.tolist()))) if ds.groups is not None else None,
            "soft_targets": ds.target_mode or None, "extras": sorted(ds.extras),
            "evaluation_split": ds.evaluation_split()}


def _folds(ds, k: int, seed: int) -> list[dict]:
    from ferkit.data.splits import kfold

    train = ds.split("train")
    out = []
    for i, (_, val) in enumerate(kfold(train, k, seed=seed), start=1):
        fold = train.subset(val)
        out.append({"fold": i, "n": len(fold), "counts": fold.class_counts(),
                    "subjects": sorted(set(fold.groups.tolist())) if fold.groups is not None else None})
    return out


def _print_text(load, quality, examples: int, summary: dict | None = None, folds: list | None = None) -> None:
    from ferkit.data.loader import TITLES

    origin = f"cache, {load.seconds:.1f} s" if load.from_cache else f"decoded in {load.seconds:.1f} s"
    print(f"{load.path}: {quality.n:,} images ({TITLES.get(load.format, load.format)}, {load.layout}, {origin})")
    if summary:
        shape = "x".join(str(v) for v in summary["face_shape"][:2])
        extra = [f"{summary['subjects']} subjects"] if summary["subjects"] else []
        extra += [f"soft targets ({summary['soft_targets']})"] if summary["soft_targets"] else []
        extra += [f"extras: {', '.join(summary['extras'])}"] if summary["extras"] else []
        print(f"faces: {shape} {summary['color']}" + "".join(f"; {e}" for e in extra))
    print(f"skipped: {load.junk_skipped} junk file(s), {len(load.issues)} unusable item(s)")
    for issue in load.issues[:examples]:
        print(f"  {issue}")
    if len(load.issues) > examples:
        print(f"  ... and {len(load.issues) - examples} more (--examples N shows more, --json all)")
    for reason, n in load.excluded.items():
        print(f"excluded by the dataset's rules: {n:,} {reason}")
    for message in load.warnings:
        print(f"warning: {message}")

    splits = list(quality.splits)
    width = max(len(name) for name in quality.label_names + ["class", "total"])
    print()
    print(f"{'class':<{width}}" + "".join(f"{s:>20}" for s in splits))
    for label in quality.label_names:
        cells = (f"{quality.splits[s].counts[label]:,} ({quality.splits[s].percent[label]:5.2f}%)" for s in splits)
        print(f"{label:<{width}}" + "".join(f"{c:>20}" for c in cells))
    print(f"{'total':<{width}}" + "".join(f"{quality.splits[s].n:>20,}" for s in splits))

    print()
    print(f"duplicates within a split: {len(quality.duplicate_groups)} group(s), {quality.duplicate_images} "
          f"extra copies; {quality.images_with_copies} images have an exact copy somewhere")
    for group in quality.duplicate_groups[:examples]:
        print(f"  {' = '.join(group)}")
    print(f"leaks across splits: {len(quality.leak_groups)} group(s), {quality.leaked_train_images} train image(s)")
    for group in quality.leak_groups[:examples]:
        print(f"  {' = '.join(i for ids in group.values() for i in ids)}")
    print(f"blank images (pixel std < {quality.blank_std:g}): {len(quality.blanks)}")
    for source in quality.blanks[:examples]:
        print(f"  {source}")
    print(f"duplicate groups with conflicting labels: {quality.label_conflicts}")
    if folds:
        print()
        for f in folds:
            who = f"; subjects {', '.join(f['subjects'])}" if f["subjects"] else ""
            print(f"fold {f['fold']}: {f['n']:,} faces{who}")
