"""
``dataplane diff A B [--ignore FIELDS] [--limit N]``: the command over ``testing.diff``.
"""

from __future__ import annotations

import os

from ..errors import EXIT_FINDING, EXIT_OK, UsageError
from ..testing.diff import diff_captures
from ..wire.capture_reader import CaptureError
from .arguments import ascii_int


def register(commands) -> None:
    parser = commands.add_parser("diff", help="compare two captures field by field, per interface",
                                 description="Align two captures per interface, by order, and print the first "
                                             "differing frames field by field. Exit 0 same, 1 different, 2 bad input.")
    parser.add_argument("a", help="first capture (pcapng or pcap)")
    parser.add_argument("b", help="second capture")
    parser.add_argument("--ignore", action="append", default=[], metavar="FIELDS",
                        help="comma-separated fields to ignore (Wireshark names: ip.ttl, tcp.seq, eth.src, ..., "
                             "frame.comment, frame.time); repeatable")
    parser.add_argument("--limit", type=ascii_int, default=10, help="differing frames to print (default 10)")
    parser.set_defaults(handler=_cmd_diff)


def _cmd_diff(args) -> int:
    ignore = [name.strip() for item in args.ignore for name in item.split(",") if name.strip()]
    for path in (args.a, args.b):
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such capture file")
    try:
        report = diff_captures(args.a, args.b, ignore, limit=max(0, args.limit))
    except CaptureError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(f"--ignore: {error}") from None
    except OSError as error:
        raise UsageError(f"{error.filename}: cannot read: {error.strerror}") from None
    print(report.format())
    return EXIT_OK if report.same else EXIT_FINDING
