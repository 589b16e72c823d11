"""The ``srformer`` command: ``srformer upscale|evaluate|compare|export|explain|serve|upscale-dataset ...``.

Each subcommand hands the rest of the command line to the ``main(argv)`` of its module in
:mod:`srformer.commands`, so ``srformer upscale`` is ``python infer.py``, ``srformer evaluate`` is ``python -m
srformer.commands.evaluate`` and so on; options and help are the module's own. Modules are imported only for
the subcommand that runs, so ``srformer --help`` and ``srformer --version`` answer without loading PyTorch.
Installed as a console script (``[project.scripts]``) and as ``python -m srformer``.
"""

from __future__ import annotations

import atexit
import difflib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from srformer import __version__

#: Subcommand -> (module with ``main(argv)``, one-line description).
COMMANDS: dict[str, tuple[str, str]] = {
    "upscale": ("srformer.commands.upscale", "upscale image files, folders and globs (--model auto by default)"),
    "evaluate": ("srformer.commands.evaluate", "score a model or bicubic on benchmark folders (Y-PSNR / SSIM)"),
    "compare": ("srformer.commands.compare", "compare checkpoints side by side: metrics, cost and crops"),
    "export": ("srformer.commands.export", "export a model to ONNX (and TorchScript), checked against PyTorch"),
    "explain": ("srformer.commands.explain", "attention maps and Local Attribution Maps of a model"),
    "serve": ("srformer.commands.serve", "a local web page to upscale an image and compare models"),
    "prepare-div2k": ("srformer.commands.prepare_div2k", "download and unpack DIV2K (resumable, checksummed)"),
    "preview-degradation": (
        "srformer.commands.preview_degradation",
        "save a batch of degraded training patches as PNGs, to look at a degradation config",
    ),
    "upscale-dataset": (
        "srformer.commands.upscale_dataset",
        "upscale a folder, glob or manifest of any size, resumable, locally or on Ray Data",
    ),
}

EXIT_USAGE = 2


def usage() -> str:
    return "usage: srformer [-h] [--version] COMMAND [ARGS ...]"


def help_text() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        usage(),
        "",
        "Image super-resolution with windowed self- and cross-attention.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {description}" for name, (_, description) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help and exit",
        "  --version   show the version and exit",
        "",
        "'srformer COMMAND --help' shows the options of a command.",
        "Example: srformer upscale photo.jpg -o out/",
    ]
    return "\n".join(lines)


def _unknown(command: str) -> str:
    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"error: unknown command '{command}'{hint}; choose one of {', '.join(COMMANDS)} (srformer --help)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"error: a command is required: one of {', '.join(COMMANDS)} (srformer --help)", file=sys.stderr)
        return EXIT_USAGE
    command, rest = args[0], args[1:]
    if command in ("-h", "--help", "help"):
        print(help_text())
        return 0
    if command in ("-V", "--version"):
        print(f"srformer {__version__}")
        return 0
    if command not in COMMANDS:
        print(_unknown(command), file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[command][0])
    status = module.main(rest)
    return 0 if status is None else int(status)


def exit_after(entry: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``entry()`` and end the process with its status, skipping the interpreter's teardown.

    With PyTorch loaded, the interpreter's teardown (module and library destructors, after every output file is
    closed) raised the peak RSS of a whole ``infer.py`` run by about 125 MiB and took 0.1-0.9 s (``python -c
    "import torch"``: 654 MiB against 528 MiB with an immediate exit, 2026-11-30). Exit handlers still run and
    the standard streams are flushed; a ``SystemExit`` (argparse's ``--help`` and usage errors) gives its status.
    While another non-daemon thread is still working, the interpreter's own exit waits for it as usual.
    """
    try:
        status = entry()
    except SystemExit as exit_:
        if exit_.code is not None and not isinstance(exit_.code, int):
            raise  # a message to print: leave it to the interpreter
        status = exit_.code
    working = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if working:
        sys.exit(status)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if status is None else int(status))


def console_main() -> NoReturn:
    """The ``srformer`` console script and ``python -m srformer``: :func:`main` through :func:`exit_after`."""
    exit_after(main)


if __name__ == "__main__":
    console_main()
