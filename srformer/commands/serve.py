"""``srformer serve``: a local web page to upscale an image and compare models, with an API for scripts.

    srformer serve                              # http://127.0.0.1:8000/
    srformer serve --port 9000 --models runs/my_run/ weights/mine.safetensors

The page and its API are :mod:`srformer.web` (the API is documented in :mod:`srformer.web.app`). Needs the
``web`` extra: ``pip install "srformer[web]"``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from srformer.errors import SRFormerError, exit_on_user_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srformer serve",
        description="A local web page to upscale an image and compare models (and its API under /api/).",
        epilog="Example: srformer serve --models runs/my_run/  then open http://127.0.0.1:8000/. Scripts: curl -F"
        " image=@photo.jpg -F model=x4 http://127.0.0.1:8000/api/upscale -o photo_x4.jpg; every route and error"
        " is documented in srformer/web/app.py.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument(
        "--models",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="weights files or run folders to offer besides the shipped models (named by file stem or folder)",
    )
    parser.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1 (default: cuda if present)")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=4_200_000,
        help="largest input accepted, in pixels (default: 4200000, about 2048x2048)",
    )
    parser.add_argument("--max-upload-mb", type=int, default=50, help="largest upload accepted (default: 50 MB)")
    parser.add_argument("--queue", type=int, default=4, help="upscales that may wait; more are refused (default: 4)")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from srformer.web import require_web_extra

    require_web_extra()
    for name, value in (("--max-pixels", args.max_pixels), ("--max-upload-mb", args.max_upload_mb)):
        if value < 1:
            raise SRFormerError(f"{name} must be positive, got {value}")
    if args.queue < 0 or not 0 <= args.port <= 65535:
        raise SRFormerError("--queue must not be negative and --port must be 0-65535")

    from srformer.web.app import Settings
    from srformer.web.server import serve

    settings = Settings(
        models=tuple(args.models),
        device=args.device,
        max_upload_bytes=args.max_upload_mb * 2**20,
        max_pixels=args.max_pixels,
        max_waiting=args.queue,
    )
    serve(settings, args.host, args.port)  # until Ctrl+C, which uvicorn turns into a clean shutdown
    return 0


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
