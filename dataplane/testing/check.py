"""
Validate a capture: ``dataplane check CAPTURE [--no-tshark]``.

This module owns the capture gate (docs/design.md, "How we check it").  With tshark
installed it is the oracle: checksum validation on for IPv4, TCP and UDP,
and any malformed frame or expert error is a finding, in two passes
(without and with ``-d udp.port==1550,vxlan``, so the SE-to-SE tunnel's
inner frames are checked too).  Without tshark (or with ``--no-tshark``)
our own validation runs: IPv4 header, TCP and UDP checksums, lengths that
run past the frame, recursing into VXLAN.  Each finding names the frame
number, interface, the frame's decision comment and the message.

A file that is not a capture at all is bad input (``CaptureError``); a
capture whose last record is cut short is a finding.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass

from ..wire.capture_reader import LINKTYPE_ETHERNET, CaptureError, open_capture
from ..wire.masks import VXLAN_PORTS

EXPERT_ERROR = 0x00800000  # PI_ERROR in Wireshark's expert.h
GATE_FILTER = '_ws.malformed || _ws.expert.severity >= "Error"'
TSHARK_PASSES = ((), ("-d", "udp.port==1550,vxlan"))
#: The label of a finding that is one TCP segment seen on two hops (testing.multihop).
SEEN_AGAIN = "seen again on a later hop; check per hop with dataplane split"
CHECKSUM_PREFS = ("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                  "-o", "udp.check_checksum:TRUE")


@dataclass(frozen=True, slots=True)
class Finding:
    number: int  # 0: the file as a whole
    interface: str
    comment: str
    message: str
    #: The earlier frame that carried the same TCP segment on another hop (testing.multihop), or 0.
    seen_before: int = 0

    def format(self) -> str:
        where = f"frame {self.number}" if self.number else "capture"
        iface = f" ({self.interface})" if self.interface else ""
        comment = f"\n    comment: {self.comment}" if self.comment else ""
        again = f"\n    {SEEN_AGAIN} (first seen as frame {self.seen_before})" if self.seen_before else ""
        return f"{where}{iface}: {self.message}{comment}{again}"


def format_findings(findings: list[Finding], limit: int = 50) -> str:
    lines = [f.format() for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more findings")
    return "\n".join(lines)


def check_capture(path: str | os.PathLike, use_tshark: bool | None = None) -> list[Finding]:
    """Return the findings for ``path``; ``use_tshark`` None means "if installed".

    Raises CaptureError when the file is not a capture, and RuntimeError when
    ``use_tshark`` is True and tshark is missing.
    """
    tshark = shutil.which("tshark") if use_tshark is not False else None
    if use_tshark and tshark is None:
        raise RuntimeError("tshark is not installed (Debian: apt-get install tshark)")
    findings = _read_and_check(path, own_checks=tshark is None)
    if tshark is None or findings:  # a truncated tail: tshark would only repeat it as a read error
        return findings
    return _tshark_findings(tshark, path)


# -- tshark ----------------------------------------------------------------------

def _tshark_findings(tshark: str, path) -> list[Finding]:
    seen: dict[tuple[int, str], Finding] = {}
    for decode in TSHARK_PASSES:
        command = [tshark, "-n", "-r", os.fspath(path), *decode, *CHECKSUM_PREFS, "-Y", GATE_FILTER,
                   "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
                   "-e", "frame.number", "-e", "frame.interface_name", "-e", "frame.comment",
                   "-e", "_ws.expert.message", "-e", "_ws.expert.severity"]
        # A comment is whatever bytes the capture holds: never let one that is not UTF-8 stop the check.
        result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace")
        if result.returncode != 0:
            error = " ".join(line for line in result.stderr.splitlines() if "as user \"root\"" not in line)
            seen[(0, error)] = Finding(0, "", "", f"tshark cannot read it: {error.strip()}")
            break
        for line in result.stdout.splitlines():
            number, iface, comment, messages, severities = (line.split("\t") + [""] * 5)[:5]
            # Expert items come with their severity in the same order; the frame comment is one of
            # them (severity Comment), so keep only errors, as the gate's filter does.
            errors = [m for m, sev in zip(messages.split("|"), severities.split("|"))
                      if sev.isdigit() and int(sev) >= EXPERT_ERROR] or ["Malformed frame"]
            for message in errors:
                suffix = " (with -d udp.port==1550,vxlan)" if decode else ""
                seen.setdefault((int(number or 0), message), Finding(int(number or 0), iface, comment,
                                                                     message + suffix))
    return sorted(seen.values(), key=lambda f: f.number)


# -- our own validation ------------------------------------------------------------

def _read_and_check(path, own_checks: bool) -> list[Finding]:
    findings: list[Finding] = []
    count = 0
    try:
        for record in open_capture(path):
            count += 1
            if own_checks and record.linktype == LINKTYPE_ETHERNET and len(record.data) == record.orig_len:
                for message in check_frame(record.data):
                    findings.append(Finding(record.number, record.interface_name or "", record.comment or "",
                                            message))
    except CaptureError as error:
        if error.frame_number == 0 or (count == 0 and "truncated" not in str(error)):
            raise
        findings.append(Finding(error.frame_number, "", "", f"unreadable: {error}"))
    return findings


def _sum16(data: bytes) -> int:
    if len(data) & 1:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _should_be(data: bytes, at: int) -> int:
    zeroed = data[:at] + b"\x00\x00" + data[at + 2:]
    return ~_sum16(zeroed) & 0xFFFF


def check_frame(frame: bytes, depth: int = 0) -> list[str]:
    """Return problems in one Ethernet frame: malformed lengths and bad checksums, as tshark words them."""
    where = " (inside VXLAN)" if depth else ""
    if len(frame) < 14:
        return [f"Malformed: frame shorter than an Ethernet header ({len(frame)} bytes){where}"]
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0806:
        return [] if len(frame) >= 42 else [f"Malformed: ARP packet cut short{where}"]
    if ethertype != 0x0800:
        return []
    ip = frame[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or (ip[0] & 0x0F) < 5:
        return [f"Malformed: bad IPv4 header{where}"]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    if total > len(ip) or total < ihl:
        return [f"Malformed: IPv4 total length {total} exceeds packet length ({len(ip)} bytes){where}"]
    problems = []
    if _sum16(ip[:ihl]) != 0xFFFF:
        problems.append(f"Bad IPv4 header checksum [should be 0x{_should_be(ip[:ihl], 10):04x}]{where}")
    proto, segment = ip[9], ip[ihl:total]
    if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
        return problems  # a fragment: the transport checksum spans fragments
    pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(segment))
    if proto == 6:
        if len(segment) < 20 or (segment[12] >> 4) * 4 > len(segment) or segment[12] >> 4 < 5:
            return problems + [f"Malformed: TCP header cut short{where}"]
        if _sum16(pseudo + segment) != 0xFFFF:
            problems.append(f"Bad TCP checksum [should be 0x{_should_be(pseudo + segment, 28):04x}]{where}")
    elif proto == 17:
        if len(segment) < 8 or struct.unpack_from("!H", segment, 4)[0] != len(segment):
            return problems + [f"Malformed: UDP length disagrees with the IPv4 length{where}"]
        if struct.unpack_from("!H", segment, 6)[0] and _sum16(pseudo + segment) != 0xFFFF:
            problems.append(f"Bad UDP checksum [should be 0x{_should_be(pseudo + segment, 18):04x}]{where}")
        if struct.unpack_from("!H", segment, 2)[0] in VXLAN_PORTS and len(segment) >= 16 and depth == 0:
            problems += check_frame(segment[16:], depth + 1)
    return problems
