"""
``dataplane check CAPTURE [--no-tshark]``: the command over ``testing.check``.
"""

from __future__ import annotations

import os
import shutil

from ..errors import EXIT_FINDING, EXIT_OK, UsageError
from ..testing.check import check_capture, format_findings
from ..wire.capture_reader import CaptureError


def register(commands) -> None:
    parser = commands.add_parser("check", help="validate a capture: checksums, malformed frames, expert errors",
                                 description="Validate a capture with tshark (checksum validation on, with and "
                                             "without the VXLAN decode of the SE tunnel) or, without tshark, with "
                                             "our own checksum and length checks. Exit 0 clean, 1 findings, "
                                             "2 bad input.")
    parser.add_argument("capture", help="capture file (pcapng or pcap)")
    parser.add_argument("--no-tshark", action="store_true", help="use our own checks even if tshark is installed")
    parser.set_defaults(handler=_cmd_check)


def _cmd_check(args) -> int:
    if not os.path.isfile(args.capture):
        raise UsageError(f"{args.capture}: no such capture file")
    try:
        findings = check_capture(args.capture, use_tshark=False if args.no_tshark else None)
    except CaptureError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{args.capture}: cannot read: {error.strerror}") from None
    how = "our own checks" if args.no_tshark or not shutil.which("tshark") else "tshark"
    if findings:
        print(format_findings(findings))
        print(f"{args.capture}: {len(findings)} finding{'s' if len(findings) != 1 else ''} ({how})")
        return EXIT_FINDING
    print(f"{args.capture}: clean ({how})")
    return EXIT_OK
