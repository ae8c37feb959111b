"""
``dataplane check CAPTURE [--no-tshark]``: the command over ``testing.check`` and ``testing.multihop``.

Findings that are one TCP segment seen on two hops are labelled apart from
real defects; when every finding is of that kind and the one-hop files
that hold them pass the gate, the capture is clean (exit 0).
"""

from __future__ import annotations

import os
import shutil

from ..errors import EXIT_FINDING, EXIT_OK, UsageError
from ..testing.check import Finding, check_capture, format_findings
from ..testing.multihop import SEEN_AGAIN, explain
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
    if not findings:
        print(f"{args.capture}: clean ({how})")
        return EXIT_OK
    per_hop = None
    if how == "tshark":
        findings, per_hop = explain(args.capture, findings)
    real = [f for f in findings if not f.seen_before]
    again = [f for f in findings if f.seen_before]
    if real:
        print(format_findings(real))
    if again:
        print(format_findings(again, limit=3 if not real else 10))
    if per_hop is not None and per_hop.findings:
        print("checked per hop, these remain:\n" + format_findings(per_hop.findings))
    print(_verdict(args.capture, real, again, per_hop, how))
    return EXIT_OK if per_hop is not None and per_hop.clean else EXIT_FINDING


def _verdict(capture: str, real: list[Finding], again: list[Finding], per_hop, how: str) -> str:
    def count(n: int) -> str:
        return f"{n} finding{'s' if n != 1 else ''}"
    if not again:
        return f"{capture}: {count(len(real))} ({how})"
    if real:
        return f"{capture}: {count(len(real) + len(again))} ({how}): {len(real)} real, {len(again)} {SEEN_AGAIN}"
    hops = f"{len(per_hop.hops)} one-hop file{'s' if len(per_hop.hops) != 1 else ''} ({'; '.join(per_hop.hops)})"
    if per_hop.clean:
        return (f"{capture}: clean per hop ({how}): all {count(len(again))} are one TCP segment seen again on a "
                f"later hop, and {hops} pass the gate")
    return (f"{capture}: {count(len(again))} seen again on a later hop ({how}), but checked per hop "
            f"{count(len(per_hop.findings))} remain in {hops}")
