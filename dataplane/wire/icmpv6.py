"""
ICMPv6 (RFC 4443): echo for health monitors, and the error messages a router or host sends.

Every ICMPv6 checksum covers the IPv6 pseudo-header (next header 58), so a
message is built for its addresses (``icmpv6_message``).  Neighbor
Discovery, also ICMPv6, lives in ``nd``.

What the nodes do with the errors (the node code owns rate limiting, RFC
4443 section 2.4 (f)): a router that would forward a frame with hop limit
1 or 0 sends ``time_exceeded`` instead; a host or router that cannot deliver
sends ``destination_unreachable``; both ask ``may_send_error`` first, which
says no for the frames RFC 4443 section 2.4 (e) forbids answering.
"""

from __future__ import annotations

import struct

from .checksum import transport_checksum
from .frames import FlowView
from .headers import ETH_LEN, IPV6_HEADER, PROTO_ICMPV6, ZERO_MAC
from .ipv6 import FlowView6, ipv6_frame, is_multicast

# Message types (RFC 4443 section 2.1; ND's 133-137 in RFC 4861).
DESTINATION_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM = 1, 2, 3, 4
ECHO_REQUEST, ECHO_REPLY = 128, 129
NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT = 135, 136
ERROR_TYPES = frozenset((DESTINATION_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM))
# Destination Unreachable codes.
NO_ROUTE, ADMINISTRATIVELY_PROHIBITED, BEYOND_SCOPE, ADDRESS_UNREACHABLE, PORT_UNREACHABLE = 0, 1, 2, 3, 4
# Time Exceeded codes.
HOP_LIMIT_EXCEEDED, REASSEMBLY_TIME_EXCEEDED = 0, 1
#: An ICMPv6 error carries as much of the invoking packet as fits in the minimum IPv6 MTU (RFC 4443 2.4 (c)).
MINIMUM_MTU = 1280
_ERROR_QUOTE = MINIMUM_MTU - IPV6_HEADER - 8

_HEAD = struct.Struct("!BBH")  # type, code, checksum
_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence number
_ERROR = struct.Struct("!BBHI")  # type, code, checksum, unused / MTU / pointer
_U16 = struct.Struct("!H")


def icmpv6_message(src: bytes, dst: bytes, kind: int, code: int, body: bytes) -> bytes:
    """An ICMPv6 message (type, code, checksum, ``body``) with its checksum over the IPv6 pseudo-header."""
    message = bytearray(_HEAD.pack(kind, code, 0) + body)
    message[2:4] = _U16.pack(transport_checksum(src, dst, PROTO_ICMPV6, message))
    return bytes(message)


def icmpv6_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, kind: int, code: int, body: bytes,
                 hop_limit: int = 64) -> bytes:
    return ipv6_frame(eth_dst, eth_src, src, dst, PROTO_ICMPV6, icmpv6_message(src, dst, kind, code, body),
                      hop_limit)


def icmpv6_checksum_ok(frame: bytes, view: FlowView6) -> bool:
    """Whether the ICMPv6 message of a parsed, unfragmented frame has a valid checksum."""
    # Summed with its checksum field, a valid message checksums to zero (either spelling of one's-complement 0).
    return transport_checksum(view.src, view.dst, PROTO_ICMPV6, frame[view.l4:view.end]) == 0


# -- echo ----------------------------------------------------------------------

def echo6_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, reply: bool, ident: int,
                sequence: int, data: bytes, hop_limit: int = 64) -> bytes:
    """An ICMPv6 echo request (or reply) frame, as ``icmp.icmp_echo_frame`` builds the IPv4 one."""
    body = _ECHO.pack(0, 0, 0, ident, sequence)[4:] + data
    return icmpv6_frame(eth_dst, eth_src, src, dst, ECHO_REPLY if reply else ECHO_REQUEST, 0, body, hop_limit)


def parse_icmpv6_echo(frame: bytes, view: FlowView6) -> tuple[int, int, int, bytes] | None:
    """(type, identifier, sequence, data) of an ICMPv6 echo frame (``view`` is its parse), else None."""
    if view.proto != PROTO_ICMPV6 or view.fragment:
        return None
    kind, code, _, ident, sequence = _ECHO.unpack_from(frame, view.l4)  # FlowView6 made sure 8 bytes are there
    if kind not in (ECHO_REQUEST, ECHO_REPLY) or code:
        return None
    return kind, ident, sequence, frame[view.l4 + 8:view.end]


# -- errors --------------------------------------------------------------------

def may_send_error(frame: bytes, view: FlowView6) -> bool:
    """Whether RFC 4443 section 2.4 (e) lets a node answer ``frame`` with an ICMPv6 error.

    Not for an ICMPv6 error (or a fragment that may be one), nor for a frame
    sent to a multicast address or a multicast MAC, nor from the unspecified
    or a multicast source.  (The exceptions for Packet Too Big and Parameter
    Problem code 2 toward multicast do not arise here.)
    """
    if view.proto == PROTO_ICMPV6 and (view.fragment or frame[view.l4] < 128):  # types 0-127 are errors
        return False
    return not (is_multicast(view.dst) or frame[0] & 1 or is_multicast(view.src) or not any(view.src))


def error_for(frame: bytes, eth_src: bytes, src: bytes, kind: int, code: int, parameter: int = 0,
              hop_limit: int = 64) -> bytes:
    """The ICMPv6 error ``kind``/``code`` from ``src`` about the IPv6 ``frame``, to the frame's source.

    The message quotes as much of the invoking packet as keeps it within the
    minimum MTU; ``parameter`` is the MTU (Packet Too Big), the pointer
    (Parameter Problem) or 0 (unused).  The destination MAC is left zero:
    the sender resolves its next hop.
    """
    view = FlowView6(frame)
    quote = frame[ETH_LEN:view.end][:_ERROR_QUOTE]
    body = _ERROR.pack(0, 0, 0, parameter)[4:] + quote
    return icmpv6_frame(ZERO_MAC, eth_src, src, view.src, kind, code, body, hop_limit)


def time_exceeded(frame: bytes, eth_src: bytes, src: bytes, code: int = HOP_LIMIT_EXCEEDED) -> bytes:
    """Time Exceeded: what a router sends instead of forwarding a frame whose hop limit runs out."""
    return error_for(frame, eth_src, src, TIME_EXCEEDED, code)


def destination_unreachable(frame: bytes, eth_src: bytes, src: bytes, code: int = ADDRESS_UNREACHABLE) -> bytes:
    return error_for(frame, eth_src, src, DESTINATION_UNREACHABLE, code)


def packet_too_big(frame: bytes, eth_src: bytes, src: bytes, mtu: int) -> bytes:
    return error_for(frame, eth_src, src, PACKET_TOO_BIG, 0, mtu)


def parse_icmpv6_error(frame: bytes, view: FlowView6 | FlowView) -> tuple[int, int, int, bytes] | None:
    """(type, code, parameter, quoted packet) of an ICMPv6 error frame (``view`` is its parse), else None."""
    if view.version != 6 or view.proto != PROTO_ICMPV6 or view.fragment:
        return None
    kind, code, _, parameter = _ERROR.unpack_from(frame, view.l4)
    if kind not in ERROR_TYPES:
        return None
    return kind, code, parameter, frame[view.l4 + 8:view.end]
