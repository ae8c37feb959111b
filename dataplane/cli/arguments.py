"""
Argument parsing that keeps the command line's contract: a usage error is one line and exit status 2.

``Parser`` is argparse's parser with ``error`` turned into a ``UsageError``
(argparse itself prints the whole usage block, several lines, before its
message); subcommands inherit it.  ``ascii_int`` reads an integer from
ASCII digits only: ``int()`` also accepts Arabic-Indic and other Unicode
digits, so ``--seed ١٢`` would silently mean 12.
"""

from __future__ import annotations

import argparse
import re

from ..errors import UsageError

_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_MAX_DIGITS = 30  # far past any option's range; int() of thousands of digits is refused by Python anyway


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``PROG: MESSAGE (see 'PROG --help')``."""

    def error(self, message: str):
        raise UsageError(f"{self.prog.removeprefix('dataplane ')}: {message} (see '{self.prog} --help')"
                         if self.prog != "dataplane" else f"{message} (see 'dataplane --help')")


def ascii_int(text: str) -> int:
    """argparse ``type=``: an integer written in ASCII digits."""
    if len(text) > _MAX_DIGITS or not _ASCII_INT.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an integer in ASCII digits, got {text[:_MAX_DIGITS]!r}")
    return int(text)
