"""
``dataplane split CAPTURE [--by hop|nic|se] [--out DIR]``: the command over ``testing.split``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EXIT_OK, UsageError
from ..testing.split import BY, SplitError, split_capture
from ..wire.capture_reader import CaptureError


def register(commands) -> None:
    parser = commands.add_parser(
        "split", help="write one pcapng per hop, NIC or SE of a capture",
        description="Write one pcapng per hop (segment and MAC pair, both directions), per NIC (what it sent "
                    "and received, broadcasts included, as tcpdump on it would show) or per SE (all its NICs). "
                    "The files keep the frames' comments, interface names, nanosecond timestamps and the "
                    "name-resolution block. A one-hop file shows each TCP segment once, so Wireshark's TCP "
                    "analysis of it holds. Exit 0 written, 2 bad input.")
    parser.add_argument("capture", type=Path, help="capture file (pcapng or pcap)")
    parser.add_argument("--by", choices=BY, default="hop", help="one file per hop (default), nic or se")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: split-<by> beside the capture)")
    parser.set_defaults(handler=_cmd_split)


def _cmd_split(args) -> int:
    if not args.capture.is_file():
        raise UsageError(f"{args.capture}: no such capture file")
    out = args.out or args.capture.parent / f"split-{args.by}"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    try:
        result = split_capture(args.capture, args.by, out)
    except (CaptureError, SplitError) as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{error.filename or out}: {error.strerror or error}") from None
    if not result.parts:
        print(f"{args.capture}: no frame to split by {args.by}")
    print(result.format())
    if args.by == "hop" and result.parts:
        example = os.fspath(result.path(max(result.parts, key=lambda part: part.frames)))
        print(f"analyse one hop: tshark -r {example} -q -z conv,tcp -z expert   (or: dataplane check {example})")
    return EXIT_OK
