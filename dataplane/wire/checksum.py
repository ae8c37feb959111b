"""
The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

Forwarding never recomputes a checksum over a whole packet: a NAT rewrite
or a TTL decrement adds a precomputed delta (``apply_delta``).  Building a
new frame computes it once (``checksum``, ``transport_checksum``).
"""

from __future__ import annotations

import struct

from .headers import PROTO_UDP

_PSEUDO_TAIL = struct.Struct("!BBH")  # IPv4 (RFC 793): zero, protocol, length
_PSEUDO_TAIL6 = struct.Struct("!I3xB")  # IPv6 (RFC 8200 section 8.1): 32-bit length, 3 zero bytes, next header


def ones_complement_sum(data: bytes) -> int:
    """Return the 16-bit one's-complement sum of ``data`` (not inverted)."""
    if len(data) & 1:
        data = data + b"\x00"
    # 2**16 == 1 (mod 0xFFFF), so the big-endian integer of the buffer has the
    # same residue as the sum of its 16-bit words: one C-level bignum modulo
    # instead of a Python loop over every word.
    total = int.from_bytes(data, "big")
    folded = total % 0xFFFF
    return 0xFFFF if folded == 0 and total else folded


def checksum(data: bytes) -> int:
    """Return the Internet checksum (RFC 1071) of ``data``."""
    return ~ones_complement_sum(data) & 0xFFFF


def udp_checksum_field(value: int) -> int:
    """The value a UDP checksum field carries for a computed checksum ``value``.

    RFC 768: zero in the field means "no checksum", so a computed zero is sent as all ones.
    """
    return value or 0xFFFF


def transport_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    """Return the TCP, UDP or ICMPv6 checksum of ``segment`` (its checksum field zero) over the pseudo-header.

    The addresses say the family: 4 bytes each for IPv4, 16 for IPv6.  A UDP
    checksum of zero is sent as all ones in both (RFC 768, RFC 8200 section 8.1).
    """
    if len(src) == 4:
        value = checksum(src + dst + _PSEUDO_TAIL.pack(0, proto, len(segment)) + segment)
    else:
        value = checksum(src + dst + _PSEUDO_TAIL6.pack(len(segment), proto) + segment)
    return udp_checksum_field(value) if proto == PROTO_UDP else value


#: One's-complement checksum delta of decrementing the TTL by one: the TTL/protocol word
#: drops by 0x0100, and ~w + (w - 0x0100) == 0xFEFF for every w (RFC 1624).
TTL_DECREMENT_DELTA = 0xFEFF


def checksum_delta(old: bytes, new: bytes) -> int:
    """Return the unfolded delta that turns a checksum over ``old`` into one over ``new``."""
    return (~ones_complement_sum(old) & 0xFFFF) + ones_complement_sum(new)


def apply_delta(old_checksum: int, delta: int) -> int:
    """Return ``old_checksum`` updated by ``delta`` (from ``checksum_delta``)."""
    total = (~old_checksum & 0xFFFF) + delta
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def bad_checksum(data: bytes, ip: int = 14) -> str | None:
    """Name the first wrong checksum of the IPv4 packet at ``data[ip:]``: "ipv4", "tcp", "udp", or None.

    A node calls it once at entry to drop what a real stack drops.  It judges only
    checksums the bytes hold: a packet shorter than its headers say is left to the
    parsers (None), a fragment's transport checksum covers the whole datagram
    (not checked), and a zero UDP checksum means "none" (RFC 768).  Each sum is
    one bignum modulo (see ``ones_complement_sum``): a correct checksum makes the
    one's-complement sum 0xFFFF, which is 0 modulo 0xFFFF.
    """
    if len(data) < ip + 20 or data[ip] >> 4 != 4:   # IPv6 checksums are not judged here
        return None
    ihl = (data[ip] & 0x0F) * 4
    total = (data[ip + 2] << 8) | data[ip + 3]
    end = ip + total
    if ihl < 20 or total < ihl or end > len(data):
        return None
    if int.from_bytes(data[ip:ip + ihl], "big") % 0xFFFF:
        return "ipv4"
    if data[ip + 6] & 0x3F or data[ip + 7]:  # more fragments, or a fragment offset
        return None
    proto = data[ip + 9]
    length = total - ihl
    if proto == 6:
        if length < 20:
            return None
    elif proto == 17:
        if length < 8 or not (data[ip + ihl + 6] or data[ip + ihl + 7]):
            return None
    else:
        return None
    # Pseudo-header (addresses, protocol, length) plus the segment.  Without IP options the
    # addresses and an even-length segment are contiguous: one integer for both.
    if ihl == 20 and not length & 1:
        value = int.from_bytes(data[ip + 12:end], "big")
    else:  # an odd segment is summed as if padded with a zero byte (RFC 1071)
        value = int.from_bytes(data[ip + 12:ip + 20], "big") + \
            (int.from_bytes(data[ip + ihl:end], "big") << (8 * (length & 1)))
    if (value + proto + length) % 0xFFFF:
        return "tcp" if proto == 6 else "udp"
    return None
