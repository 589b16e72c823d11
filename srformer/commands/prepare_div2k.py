"""``srformer prepare-div2k``: download and unpack DIV2K into its official layout (:mod:`srformer.data.div2k`).

srformer prepare-div2k --root data/DIV2K                      # train + valid HR, LR x2 x3 x4
srformer prepare-div2k --root data/DIV2K --splits valid --scales 4
srformer prepare-div2k --root data/DIV2K --hr-only            # LR is then made by srformer
"""

from __future__ import annotations

import argparse
import sys

from srformer.data.div2k import DEFAULT_BASE_URL, SCALES, SPLITS, prepare_div2k
from srformer.errors import DataError, exit_on_user_error


def _parse_sha256(values: list[str]) -> dict[str, str]:
    pins = {}
    for value in values:
        name, sep, digest = value.partition("=")
        if not sep or len(digest) != 64:
            raise DataError(f"--sha256 takes NAME=HEX (64 hex digits), got {value!r}")
        pins[name] = digest
    return pins


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="srformer prepare-div2k", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="folder to put DIV2K_* folders in (e.g. <data_dir>/DIV2K)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--scales", nargs="+", type=int, default=list(SCALES), help="LR scales to fetch (2 3 4)")
    parser.add_argument("--hr-only", action="store_true", help="fetch HR only; srformer makes the LR images")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"where the zips are (default {DEFAULT_BASE_URL})")
    parser.add_argument("--sha256", nargs="*", default=[], metavar="NAME=HEX", help="expected SHA-256 of archives")
    parser.add_argument("--keep-archives", action="store_true", help="keep the zip files after extracting")
    parser.add_argument("--retries", type=int, default=3, help="resumes after a broken transfer, per archive")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    args = parser.parse_args(argv)
    try:
        folders = prepare_div2k(
            args.root,
            args.splits,
            args.scales,
            args.hr_only,
            args.base_url,
            _parse_sha256(args.sha256),
            args.keep_archives,
            args.retries,
            args.timeout,
        )
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    for folder in folders:
        print(folder)
    return 0


if __name__ == "__main__":
    from srformer.cli import exit_after

    exit_after(main)
