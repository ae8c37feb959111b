"""
ICMP echo request and reply (RFC 792), as the health monitor's icmp probe sends them.
"""

from __future__ import annotations

import struct

from .checksum import checksum
from .frames import FlowView, ethernet, ipv4
from .headers import ETHERTYPE_IPV4, PROTO_ICMP

ECHO_REPLY, ECHO_REQUEST = 0, 8
_ICMP_ECHO = struct.Struct("!BBHHH")
_U16 = struct.Struct("!H")


def icmp_echo_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, reply: bool, ident: int,
                    sequence: int, data: bytes, ip_ident: int = 0) -> bytes:
    """Return an ICMP echo request (or reply) frame."""
    message = bytearray(_ICMP_ECHO.pack(ECHO_REPLY if reply else ECHO_REQUEST, 0, 0, ident, sequence) + data)
    message[2:4] = _U16.pack(checksum(message))
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_ICMP, bytes(message), ip_ident))


def parse_icmp_echo(frame: bytes, view: FlowView) -> tuple[int, int, int, bytes] | None:
    """Return (type, identifier, sequence, data) of an ICMP echo frame (``view`` is its parse), else None."""
    if view.proto != PROTO_ICMP or view.fragment:
        return None
    kind, _, _, ident, sequence = _ICMP_ECHO.unpack_from(frame, view.l4)  # FlowView made sure 8 bytes are there
    if kind not in (ECHO_REPLY, ECHO_REQUEST):
        return None
    return kind, ident, sequence, frame[view.l4 + 8:view.l4 + view.payload_len]
