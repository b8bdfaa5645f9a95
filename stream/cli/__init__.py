"""The `profilestream` command line: each command a thin layer over the packages it drives."""

from stream.cli.main import main

__all__ = ["main"]
