"""
ICMP echo request and reply (RFC 792), as the health monitor's icmp probe sends them.
"""

from __future__ import annotations

import struct

from .checksum import checksum
from .frames import ethernet, ipv4, l4_offset
from .headers import ETH_LEN, ETHERTYPE_IPV4, IP_PROTO, PROTO_ICMP

ECHO_REPLY, ECHO_REQUEST = 0, 8
_ICMP_ECHO = struct.Struct("!BBHHH")
_U16 = struct.Struct("!H")


def icmp_echo_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, reply: bool, ident: int,
                    sequence: int, data: bytes, ip_ident: int = 0) -> bytes:
    """Return an ICMP echo request (or reply) frame."""
    message = bytearray(_ICMP_ECHO.pack(ECHO_REPLY if reply else ECHO_REQUEST, 0, 0, ident, sequence) + data)
    message[2:4] = _U16.pack(checksum(message))
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_ICMP, bytes(message), ip_ident))


def parse_icmp_echo(frame: bytes) -> tuple[int, int, int, bytes] | None:
    """Return (type, identifier, sequence, data) of an ICMP echo frame, else None."""
    if len(frame) < ETH_LEN + 28 or _U16.unpack_from(frame, 12)[0] != ETHERTYPE_IPV4 or frame[IP_PROTO] != PROTO_ICMP:
        return None
    offset = l4_offset(frame)
    kind, _, _, ident, sequence = _ICMP_ECHO.unpack_from(frame, offset)
    if kind not in (ECHO_REPLY, ECHO_REQUEST):
        return None
    return kind, ident, sequence, frame[offset + 8:]
