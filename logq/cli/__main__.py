"""``python -m logq.cli``: the same command line as the ``logq`` script."""

from logq.cli import main

main(prog_name="logq")
