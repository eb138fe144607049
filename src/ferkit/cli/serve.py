"""`ferkit serve`: the web page and REST API (FastAPI on uvicorn).

    ferkit serve                                  # http://127.0.0.1:8000, API docs at /docs
    ferkit serve --host 0.0.0.0 --port 9000 --token "$SECRET" --workers 2
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import DefaultsHelpFormatter, add_recognizer_options

_SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart")


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="web page and REST API for photos, webcam and videos",
        description="Serve the ferkit page at / and the REST API at /api/v1 (OpenAPI docs at /docs). Binds to "
                    "127.0.0.1 unless --host says otherwise; the model loads once per worker.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--model", default="default", help="shipped model name, checkpoint .pt or exported .onnx")
    add_recognizer_options(p)
    p.add_argument("--workers", type=int, default=1, metavar="N", help="server processes, each with its own model")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="inference threads per worker")
    p.add_argument("--queue", type=int, default=32, metavar="N",
                   help="requests admitted beyond those running; more get 503 with Retry-After")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="M", help="largest image request (413 beyond)")
    p.add_argument("--max-pixels", type=int, default=50_000_000, metavar="N", help="largest image, width x height")
    p.add_argument("--video-max-mb", type=float, default=100.0, metavar="M", help="largest video upload")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds a request may take")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on the API; when not given, the "
                                   "FERKIT_TOKEN environment variable (which, unlike a flag, `ps` does not show)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow this origin to call the API from its pages (repeatable); none: same origin only")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ferkit import deps

    deps.require(*_SERVE_MODULES, for_what="the web server")
    from ferkit.serve.app import run_server
    from ferkit.serve.settings import TOKEN_ENV, ServeSettings

    settings = ServeSettings(
        model=args.model, detector=args.detector, detector_model=args.detector_model, backend=args.backend,
        device=args.device, min_face=args.min_face, max_side=args.max_side, crop_margin=args.crop_margin,
        tta=args.tta, host=args.host, port=args.port, workers=args.workers, threads=args.threads, queue=args.queue,
        max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, video_max_mb=args.video_max_mb,
        request_timeout_s=args.timeout, token=args.token or os.environ.get(TOKEN_ENV) or None,
        cors_origins=tuple(args.cors),
    )
    run_server(settings, access_log=not args.no_access_log, log_level="debug" if args.verbose else "info")
    return 0
