"""`ferkit data inspect PATH`: splits, class balance, duplicates, leaks and blanks of a dataset."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("data", help="inspect datasets", description="Dataset tools.")
    verbs = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    inspect = verbs.add_parser(
        "inspect", help="splits, class counts, duplicates, leaks and blanks of a dataset",
        description="Read a dataset (FER2013 folder, .zip or fer2013.csv) through the cache and report its "
                    "splits, per-class counts, exact duplicates, train/test leaks and blank images.",
    )
    inspect.add_argument("path", help="FER2013 folder, .zip or fer2013.csv")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    inspect.add_argument("--plot", metavar="FILE", help="save a class-count bar chart (PNG)")
    inspect.add_argument("--strict", action="store_true", help="fail on corrupt images or bad CSV rows")
    inspect.add_argument("--cache-dir", metavar="DIR", help="decoded-dataset cache (default: ferkit cache dir)")
    inspect.add_argument("--no-cache", action="store_true", help="decode the source without using the cache")
    inspect.add_argument("--label-overrides", metavar="CSV", help="path,label CSV applied on load")
    inspect.add_argument("--examples", type=int, default=3, metavar="N", help="example ids per finding (3)")
    inspect.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    import json

    from ferkit.data.loader import load_dataset_with_report
    from ferkit.data.quality import quality_report

    ds, load = load_dataset_with_report(args.path, cache=not args.no_cache, cache_dir=args.cache_dir,
                                        strict=args.strict, label_overrides=args.label_overrides)
    quality = quality_report(ds)
    plot = None
    if args.plot:
        from ferkit.plots.data import plot_class_counts

        plot = str(plot_class_counts(quality, args.plot, title=f"{ds.name}: class counts per split"))
    if args.json:
        print(json.dumps({"path": str(args.path), "load": load.to_dict(),
                          "quality": quality.to_dict(args.examples), "plot": plot}, indent=2))
        return 0
    _print_text(load, quality, args.examples)
    if plot:
        print(f"\nplot saved to {plot}")
    return 0


def _print_text(load, quality, examples: int) -> None:
    origin = f"cache, {load.seconds:.1f} s" if load.from_cache else f"decoded in {load.seconds:.1f} s"
    print(f"{load.path}: {quality.n:,} images ({load.layout}, {origin})")
    print(f"skipped: {load.junk_skipped} junk file(s), {len(load.issues)} unusable item(s)")
    for issue in load.issues[:examples]:
        print(f"  {issue}")
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
