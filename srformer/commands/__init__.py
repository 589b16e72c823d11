"""The command-line faces of the library, one module per ``srformer`` subcommand (:mod:`srformer.cli`).

A command module parses its arguments (shared options: :mod:`srformer.commands.options`), calls the library
(:mod:`srformer.handle`, :mod:`srformer.upscaling`, :mod:`srformer.evaluation`, :mod:`srformer.comparison`,
:mod:`srformer.explain`, :mod:`srformer.export`), prints messages and returns an exit status; nothing else.
No command imports another command, and no library module imports a command or ``argparse``.
"""
