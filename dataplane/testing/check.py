"""
Validate a capture: ``dataplane check CAPTURE [--no-tshark]``.

This module owns the capture gate (docs/design.md, "How we check it").  With tshark
installed it is the oracle: checksum validation on for IPv4, TCP and UDP
(tshark always checks ICMP's and ICMPv6's, but calls a bad one a warning,
so the gate asks for those by name), and any malformed frame, expert error
or bad checksum is a finding, in two passes (without and with ``-d udp.port==1550,vxlan``, so
the SE-to-SE tunnel's inner frames are checked too).  Without tshark (or
with ``--no-tshark``) our own validation runs: IPv4 header, TCP, UDP and
ICMPv6 checksums over either family's pseudo-header, a zero UDP checksum
over IPv6, lengths that run past the frame, IPv6 extension headers walked
(at most ``MAX_EXTENSION_HEADERS``), recursing into VXLAN.  Transport
checksums of IPv6 packets whose Routing header has segments left are not
checked (the pseudo-header's destination is then in the routing header,
whose layout depends on its type), nor those of fragments (they span
fragments).  Each finding names the frame number, interface, the frame's
decision comment and the message.

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
from ..wire.fields import VXLAN_PORTS
from ..wire.ipv6 import MAX_EXTENSION_HEADERS

_EXTENSION_HEADERS = (0, 43, 44, 60)  # Hop-by-Hop, Routing, Fragment, Destination Options
EXPERT_ERROR = 0x00800000  # PI_ERROR in Wireshark's expert.h
EXPERT_WARNING = 0x00600000  # PI_WARN: what tshark 4.0 makes a bad ICMP or ICMPv6 checksum
EXPERT_CHECKSUM = 0x01000000  # PI_CHECKSUM, the expert group of checksum problems
GATE_FILTER = ('_ws.malformed || _ws.expert.severity >= "Error" || icmp.checksum.status == "Bad" || '
               'icmpv6.checksum.status == "Bad"')
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
    findings, oversize = _read_and_check(path, own_checks=tshark is None)
    if tshark is None or findings:  # a truncated tail: tshark would only repeat it as a read error
        return sorted(findings + oversize, key=lambda f: f.number)
    return sorted(_tshark_findings(tshark, path) + oversize, key=lambda f: f.number)


# -- tshark ----------------------------------------------------------------------

def _tshark_findings(tshark: str, path) -> list[Finding]:
    seen: dict[tuple[int, str], Finding] = {}
    for decode in TSHARK_PASSES:
        command = [tshark, "-n", "-r", os.fspath(path), *decode, *CHECKSUM_PREFS, "-Y", GATE_FILTER,
                   "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
                   "-e", "frame.number", "-e", "frame.interface_name", "-e", "frame.comment",
                   "-e", "_ws.expert.message", "-e", "_ws.expert.severity", "-e", "_ws.expert.group",
                   *(arg for name in _ICMP_ERROR_FIELDS for arg in ("-e", name))]
        # A comment is whatever bytes the capture holds: never let one that is not UTF-8 stop the check.
        result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace")
        if result.returncode != 0:
            error = " ".join(line for line in result.stderr.splitlines() if "as user \"root\"" not in line)
            seen[(0, error)] = Finding(0, "", "", f"tshark cannot read it: {error.strip()}")
            break
        for line in result.stdout.splitlines():
            values = (line.split("\t") + [""] * 12)[:6 + len(_ICMP_ERROR_FIELDS)]
            number, iface, comment, messages, severities, groups = values[:6]
            # Expert items come with their severity and group in the same order; the frame comment is one
            # of them (severity Comment), so keep only errors and bad checksums, as the gate's filter does.
            items = [(m, group) for m, sev, group in zip(messages.split("|"), severities.split("|"),
                                                         groups.split("|")) if _is_finding(sev, group)]
            if items and _quotes_a_packet(values[6:]):
                items = [(m, group) for m, group in items if group != str(EXPERT_CHECKSUM)]
                if not items:
                    continue
            errors = [m for m, _ in items] or ["Malformed frame"]
            for message in errors:
                suffix = " (with -d udp.port==1550,vxlan)" if decode else ""
                seen.setdefault((int(number or 0), message), Finding(int(number or 0), iface, comment,
                                                                     message + suffix))
    return sorted(seen.values(), key=lambda f: f.number)


#: An ICMP error quotes the packet that caused it, cut short to fit (RFC 4443 section 2.4 (c), RFC 1812
#: 4.3.2.3).  tshark 4.0 verifies the transport checksum in the quote over the bytes that are there, so a
#: cut quote shows a "bad" checksum the error's sender never computed; and an uncut one is a copy of a
#: packet gated where it crossed.  So when the error's own checksums are good, checksum findings inside
#: the quote are not findings.
_ICMP_ERROR_FIELDS = ("frame.protocols", "icmpv6.type", "icmpv6.checksum.status", "icmp.type",
                      "icmp.checksum.status", "ip.checksum.status")
_ICMP_ERROR_TYPES = {"3", "4", "5", "11", "12"}
_GOOD = "1"  # a checksum status tshark found good


def _quotes_a_packet(values: list[str]) -> bool:
    """Whether a frame is an ICMP or ICMPv6 error, carried right over Ethernet, whose own checksums are good."""
    protocols, v6_type, v6_status, v4_type, v4_status, ip_status = (v.split("|")[0] for v in values)
    if protocols.startswith("eth:ethertype:ipv6:icmpv6:"):
        return v6_type.isdigit() and int(v6_type) < 128 and v6_status == _GOOD
    if protocols.startswith("eth:ethertype:ip:icmp:"):
        return v4_type in _ICMP_ERROR_TYPES and v4_status == ip_status == _GOOD
    return False


def _is_finding(severity: str, group: str) -> bool:
    if not severity.isdigit():
        return False
    level = int(severity)
    return level >= EXPERT_ERROR or (level >= EXPERT_WARNING and group.isdigit() and int(group) == EXPERT_CHECKSUM)


# -- our own validation ------------------------------------------------------------

#: The largest Ethernet frame a 1500-byte MTU carries (no FCS); only the SE tunnel's frames may be larger.
MTU_FRAME = 1514


def _read_and_check(path, own_checks: bool) -> tuple[list[Finding], list[Finding]]:
    """(read errors and, with ``own_checks``, our own validation's findings; frames over the MTU)."""
    findings: list[Finding] = []
    oversize: list[Finding] = []
    count = 0
    try:
        for record in open_capture(path):
            count += 1
            if record.orig_len > MTU_FRAME and record.linktype == LINKTYPE_ETHERNET \
                    and not _tunnelled(record.data) and not _said_dropped(record.comment or ""):
                oversize.append(Finding(record.number, record.interface_name or "", record.comment or "",
                                        f"{record.orig_len}-byte frame outside the SE tunnel: over the "
                                        f"1500-byte MTU ({MTU_FRAME} bytes with Ethernet)"))
            if own_checks and record.linktype == LINKTYPE_ETHERNET and len(record.data) == record.orig_len:
                for message in check_frame(record.data):
                    findings.append(Finding(record.number, record.interface_name or "", record.comment or "",
                                            message))
    except CaptureError as error:
        if error.frame_number == 0 or (count == 0 and "truncated" not in str(error)):
            raise
        findings.append(Finding(error.frame_number, "", "", f"unreadable: {error}"))
    return findings, oversize


def _tunnelled(frame: bytes) -> bool:
    """An IPv4/UDP frame that carries VXLAN (flags 0x08, reserved bytes zero), on whatever port."""
    if len(frame) < 14 + 20 + 8 + 8 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    vxlan = 14 + (frame[14] & 0x0F) * 4 + 8
    return len(frame) >= vxlan + 8 and frame[vxlan] == 0x08 and frame[vxlan + 1:vxlan + 4] == b"\x00\x00\x00"


def _said_dropped(comment: str) -> bool:
    """A frame the emulator captured as it dropped it (a segment refuses frames over its size, and says so)."""
    return "[DROPPED" in comment or "[LOST" in comment


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
    if ethertype == 0x0800:
        return _check_ipv4(frame[14:], where, depth)
    if ethertype == 0x86DD:
        return _check_ipv6(frame[14:], where, depth)
    return []


def _check_ipv4(ip: bytes, where: str, depth: int) -> list[str]:
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
    return problems + _check_transport(proto, segment, pseudo, "IPv4", where, depth)


def _check_ipv6(ip: bytes, where: str, depth: int) -> list[str]:
    if len(ip) < 40 or ip[0] >> 4 != 6:
        return [f"Malformed: bad IPv6 header{where}"]
    end = 40 + struct.unpack_from("!H", ip, 4)[0]
    if end > len(ip):
        return [f"Malformed: IPv6 payload length {end - 40} exceeds packet length ({len(ip) - 40} bytes "
                f"after the header){where}"]
    proto, at = ip[6], 40
    if proto == 0 and end == 40:
        return [f"Malformed: IPv6 jumbogram (payload length 0 with hop-by-hop options) not checked{where}"]
    for _ in range(MAX_EXTENSION_HEADERS):
        if proto not in _EXTENSION_HEADERS:
            break
        if proto == 0 and at != 40:
            return [f"IPv6 Hop-by-Hop extension header must appear immediately after IPv6 header{where}"]
        length = 8 if proto == 44 or at + 8 > end else (ip[at + 1] + 1) * 8
        if at + length > end:
            return [f"Malformed: IPv6 extension header {proto} runs past the payload length{where}"]
        if proto == 44 and struct.unpack_from("!H", ip, at + 2)[0] & 0xFFF9:
            return []  # a fragment: the transport checksum spans fragments
        if proto == 43 and ip[at + 3]:
            return []  # segments left: the pseudo-header's destination is in the routing header
        proto, at = ip[at], at + length
    if proto in _EXTENSION_HEADERS:
        return [f"Malformed: more than {MAX_EXTENSION_HEADERS} IPv6 extension headers{where}"]
    segment = ip[at:end]
    pseudo = ip[8:40] + struct.pack("!I3xB", len(segment), proto)
    return _check_transport(proto, segment, pseudo, "IPv6", where, depth)


def _check_transport(proto: int, segment: bytes, pseudo: bytes, family: str, where: str, depth: int) -> list[str]:
    """Problems of the TCP, UDP or ICMPv6 ``segment`` under ``pseudo`` (its IPv4 or IPv6 pseudo-header)."""
    at = len(pseudo)
    if proto == 6:
        if len(segment) < 20 or (segment[12] >> 4) * 4 > len(segment) or segment[12] >> 4 < 5:
            return [f"Malformed: TCP header cut short{where}"]
        if _sum16(pseudo + segment) != 0xFFFF:
            return [f"Bad TCP checksum [should be 0x{_should_be(pseudo + segment, at + 16):04x}]{where}"]
    elif proto == 17:
        if len(segment) < 8 or struct.unpack_from("!H", segment, 4)[0] != len(segment):
            return [f"Malformed: UDP length disagrees with the {family} length{where}"]
        problems = []
        if not struct.unpack_from("!H", segment, 6)[0]:
            if family == "IPv6":  # RFC 8200 section 8.1: mandatory over IPv6
                problems.append(f"Illegal checksum value (0) of UDP over IPv6{where}")
        elif _sum16(pseudo + segment) != 0xFFFF:
            problems.append(f"Bad UDP checksum [should be 0x{_should_be(pseudo + segment, at + 6):04x}]{where}")
        if struct.unpack_from("!H", segment, 2)[0] in VXLAN_PORTS and len(segment) >= 16 and depth == 0:
            problems += check_frame(segment[16:], depth + 1)
        return problems
    elif proto == 58 and family == "IPv6":
        if len(segment) < 4:
            return [f"Malformed: ICMPv6 header cut short{where}"]
        if _sum16(pseudo + segment) != 0xFFFF:
            return [f"Bad ICMPv6 checksum [should be 0x{_should_be(pseudo + segment, at + 2):04x}]{where}"]
    return []
