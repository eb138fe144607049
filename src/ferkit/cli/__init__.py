"""The ``ferkit`` command. Each verb lives in its own module with ``register(subparsers)``.

Verb modules import only argparse at module level; their heavy imports happen inside the handler, so
``ferkit --help`` is instant, and a verb whose optional dependencies are missing (PyTorch for training, ...)
says what to install when it is run (``ferkit.deps.require`` at the top of its handler).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ferkit import __version__

# Order here is the order in `ferkit --help`.
_VERB_MODULES = ("data", "models", "train", "evaluate", "ensemble", "predict", "video", "serve", "download", "export",
                 "explain", "study")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferkit", description="Facial expression recognition: data, training, evaluation, deployment."
    )
    parser.add_argument("--version", action="version", version=f"ferkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _VERB_MODULES:
        importlib.import_module(f"ferkit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ferkit.errors import FerkitError

    try:
        return int(args.func(args) or 0)
    except FerkitError as exc:
        print(f"ferkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # The net under the handlers' own checks: an optional package missing deep inside a verb is still one
        # line saying what to install. A module ferkit does not know, or a submodule of an installed package,
        # is a bug and keeps its traceback.
        from ferkit import deps

        top = (exc.name or "").partition(".")[0]
        if not deps.is_known(top) or deps.available(top):
            raise
        print(f"ferkit {args.command}: error: {deps.missing_message([top], 'this command')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ferkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `ferkit ... --json | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return 0
    except OSError as exc:
        # The machine said no: an output folder that cannot be created, a full disk, no permission. Inputs are
        # checked where they are read (FerkitError); this catches what happens on the way out. -v keeps the
        # traceback for the rare OSError that is ferkit's own bug.
        if args.verbose:
            logging.getLogger("ferkit").exception("%s failed", args.command)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"ferkit {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
