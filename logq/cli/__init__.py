"""The ``logq`` command line: a thin click layer over the library (see :mod:`logq.cli.app`)."""

from logq.cli.app import main

__all__ = ["main"]
