"""
Repairs a recorded IPv4 or IPv6 packet needs before it may enter the network: checksums and snap-length cuts.

Captures taken on a sending host hold the checksums the host left for its
NIC to finish (checksum offload): zero, or the pseudo-header sum alone
(Linux's CHECKSUM_PARTIAL).  ``check_checksums`` finds every wrong IPv4,
TCP or UDP checksum of a packet and ``fix_checksums`` recomputes them, as
``tcprewrite --fixcsum`` does; each fix is described in words for the
frame's comment ("tcp checksum fixed: recorded 0x0000, likely offload").
An IPv6 packet has no header checksum; its TCP/UDP checksum covers the
IPv6 pseudo-header, and a zero UDP checksum, "none" over IPv4, is wrong
over IPv6 (RFC 8200 section 8.1) and fixed like any other.

A frame cut by the capture's snap length (``tcpdump -s 96``) keeps its
headers but not all of its payload; ``fill_cut`` restores the packet's
recorded length with zero bytes (the checksum is then recomputed by the
caller, since it covered the bytes that are lost).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..wire.checksum import checksum, ones_complement_sum, transport_checksum
from ..wire.headers import IPV4_PROTO, PROTO_TCP, PROTO_UDP
from .input6 import transport6

_U16 = struct.Struct("!H")
_PSEUDO_TAIL = struct.Struct("!BBH")
_PSEUDO_TAIL6 = struct.Struct("!I3xB")
#: Where each protocol's checksum sits: IPv4 from the packet's start, TCP and UDP from the transport header's.
CHECKSUM_AT = {"ipv4": 10, "tcp": 16, "udp": 6}


@dataclass(frozen=True, slots=True)
class WrongChecksum:
    """One wrong checksum of a recorded packet."""

    protocol: str   # "ipv4", "tcp" or "udp"
    recorded: int
    correct: int
    offload: bool   # zero or the pseudo-header sum alone: what a NIC was left to finish
    at: int = -1    # where the field is in the packet (-1: at CHECKSUM_AT from its header's start, IPv4)

    def describe(self, fixed: bool) -> str:
        if fixed:
            why = "likely offload" if self.offload else f"should be 0x{self.correct:04x}"
            return f"{self.protocol} checksum fixed: recorded 0x{self.recorded:04x}, {why}"
        return (f"{self.protocol} checksum 0x{self.recorded:04x} kept as recorded (should be "
                f"0x{self.correct:04x}; --keep-checksums): a real SE drops it")


def _transport_sum_ok(packet: bytes, ihl: int, proto: int) -> bool:
    """True when the TCP/UDP checksum of a whole, unfragmented ``packet`` is right (one bignum modulo)."""
    length = len(packet) - ihl
    value = int.from_bytes(packet[12:20], "big") + (int.from_bytes(packet[ihl:], "big") << (8 * (length & 1)))
    return (value + proto + length) % 0xFFFF == 0


def check_checksums(packet: bytes) -> list[WrongChecksum]:
    """Every wrong checksum of the whole IPv4 or IPv6 ``packet`` (trimmed to its total length), fragments
    included (a fragment's transport checksum covers the datagram: only an IPv4 header is checked)."""
    # The common packet (a TCP segment, no IP options, not a fragment) in two bignum modulos: the
    # addresses and the segment are contiguous, an odd segment padded with a zero byte (RFC 1071).
    if packet[0] == 0x45 and packet[9] == PROTO_TCP and not (packet[6] & 0x3F or packet[7]) \
            and not int.from_bytes(packet[:20], "big") % 0xFFFF \
            and not (int.from_bytes(packet[12:] + b"\x00" if len(packet) & 1 else packet[12:], "big")
                     + PROTO_TCP + len(packet) - 20) % 0xFFFF:
        return []
    if packet[0] >> 4 == 6:
        return _check_checksums6(packet)
    ihl = (packet[0] & 0x0F) * 4
    wrong = []
    if int.from_bytes(packet[:ihl], "big") % 0xFFFF:
        recorded = _U16.unpack_from(packet, 10)[0]
        header = packet[:10] + b"\x00\x00" + packet[12:ihl]
        wrong.append(WrongChecksum("ipv4", recorded, checksum(header), recorded == 0))
    if _U16.unpack_from(packet, 6)[0] & 0x3FFF:
        return wrong
    proto = packet[IPV4_PROTO]
    if proto == PROTO_UDP and packet[ihl + 6:ihl + 8] == b"\x00\x00":
        return wrong  # RFC 768: no checksum
    if proto in (PROTO_TCP, PROTO_UDP) and not _transport_sum_ok(packet, ihl, proto):
        name = "tcp" if proto == PROTO_TCP else "udp"
        at = ihl + CHECKSUM_AT[name]
        recorded = _U16.unpack_from(packet, at)[0]
        segment = packet[ihl:at] + b"\x00\x00" + packet[at + 2:]
        correct = transport_checksum(packet[12:16], packet[16:20], proto, segment)
        pseudo = ones_complement_sum(packet[12:20] + _PSEUDO_TAIL.pack(0, proto, len(segment)))
        wrong.append(WrongChecksum(name, recorded, correct, recorded in (0, pseudo)))
    return wrong


def _check_checksums6(packet: bytes) -> list[WrongChecksum]:
    """The wrong TCP/UDP checksum of a whole, unfragmented IPv6 ``packet`` (trimmed to its payload length)."""
    l4, proto = transport6(packet)
    name = "tcp" if proto == PROTO_TCP else "udp"
    at = l4 + CHECKSUM_AT[name]
    recorded = _U16.unpack_from(packet, at)[0]
    length = len(packet) - l4
    pseudo = int.from_bytes(packet[8:40], "big") + length + proto
    if (pseudo + (int.from_bytes(packet[l4:], "big") << (8 * (length & 1)))) % 0xFFFF == 0 \
            and (recorded or proto == PROTO_TCP):
        return []
    correct = transport_checksum(packet[8:24], packet[24:40], proto, packet[l4:at] + b"\x00\x00" + packet[at + 2:])
    partial = ones_complement_sum(packet[8:40] + _PSEUDO_TAIL6.pack(length, proto))
    return [WrongChecksum(name, recorded, correct, recorded in (0, partial), at)]


def fix_checksums(packet: bytes, wrong: list[WrongChecksum]) -> bytes:
    """``packet`` with each of ``wrong`` replaced by its correct value."""
    buf = bytearray(packet)
    ihl = (buf[0] & 0x0F) * 4
    for fix in wrong:
        at = fix.at if fix.at >= 0 else CHECKSUM_AT[fix.protocol] + (0 if fix.protocol == "ipv4" else ihl)
        _U16.pack_into(buf, at, fix.correct)
    return bytes(buf)


def recompute_transport_checksum(packet: bytes) -> bytes:
    """``packet`` with its TCP or UDP checksum computed afresh (after its payload changed)."""
    if packet[0] >> 4 == 6:
        l4, proto = transport6(packet)
        at = l4 + CHECKSUM_AT["tcp" if proto == PROTO_TCP else "udp"]
        value = transport_checksum(packet[8:24], packet[24:40], proto, packet[l4:at] + b"\x00\x00" + packet[at + 2:])
        return packet[:at] + _U16.pack(value) + packet[at + 2:]
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[IPV4_PROTO]
    at = ihl + CHECKSUM_AT["tcp" if proto == PROTO_TCP else "udp"]
    if proto == PROTO_UDP and packet[at:at + 2] == b"\x00\x00":
        return packet  # the sender used no UDP checksum: none is still right
    segment = packet[ihl:at] + b"\x00\x00" + packet[at + 2:]
    value = transport_checksum(packet[12:16], packet[16:20], proto, segment)
    return packet[:at] + _U16.pack(value) + packet[at + 2:]


def fill_cut(packet: bytes, total: int) -> bytes:
    """A snap-length-cut ``packet`` restored to its ``total`` length with zero bytes."""
    return packet + bytes(total - len(packet))
