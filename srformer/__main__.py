"""``python -m srformer COMMAND ...``: the ``srformer`` command (:mod:`srformer.cli`)."""

import sys

from srformer.cli import main

if __name__ == "__main__":
    sys.exit(main())
