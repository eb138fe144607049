"""`ferkit download`: fetch the YuNet face detector model into ferkit's cache, on purpose (``--detector auto``
otherwise fetches it on first use).

    ferkit download              # once; later runs check the cached file's SHA-256 and do nothing
    ferkit download --force      # fetch again
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "download", help="fetch the YuNet face detector model into the cache",
        description="Download the YuNet face detector (OpenCV Zoo, MIT licence, 230 kB) into ferkit's cache "
                    "($FERKIT_CACHE_DIR, default ~/.cache/ferkit), checked against its pinned SHA-256. "
                    "--detector auto and yunet then use it without touching the network.",
    )
    p.add_argument("--detector", default="yunet", choices=("yunet",), help="which model to fetch")
    p.add_argument("--force", action="store_true", help="download again even if the cached file is intact")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.inference.detectors import ensure_yunet

    path, fetched = ensure_yunet(force=args.force)
    if fetched:
        print(f"downloaded the {args.detector} face detector to {path}")
    else:
        print(f"the {args.detector} face detector is already in the cache (SHA-256 checked): {path}")
    return 0
