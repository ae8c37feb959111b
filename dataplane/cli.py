"""
Parse the ``dataplane`` command line (minimal placeholder; subcommands come later).
"""

from __future__ import annotations

import argparse

from dataplane import __version__


def build_parser() -> argparse.ArgumentParser:
    """
    Return the top-level argument parser.
    """
    parser = argparse.ArgumentParser(
        prog="dataplane",
        description="Packet-level emulator of Avi / NSX ALB virtual-service scale-out.",
    )
    parser.add_argument("--version", action="version", version=f"dataplane {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run the CLI and return the process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0
