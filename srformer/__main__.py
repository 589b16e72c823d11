"""``python -m srformer COMMAND ...``: the ``srformer`` command (:mod:`srformer.cli`)."""

from srformer.cli import console_main

if __name__ == "__main__":
    console_main()
