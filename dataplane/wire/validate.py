"""
What is structurally wrong with a frame, in words: for comments on frames that enter from outside.

The nodes parse every frame once as it arrives (``frames.FlowView``,
``ipv6.FlowView6``) and drop what does not parse, counting it by reason;
this module says *why* in a sentence, for the comment of a frame a test or
a recording puts on a segment.  It checks lengths and header lengths
(Ethernet, ARP, IPv4, IPv6 and its extension headers, TCP, UDP, ICMP,
ICMPv6 and the frame inside a VXLAN tunnel), not checksums -- except that a
zero UDP checksum over IPv6 is a defect, and Neighbor Discovery messages
are validated whole (``nd.parse_nd``: hop limit 255, checksum, options).
"""

from __future__ import annotations

from .arp import parse_arp
from .frames import FlowView, Malformed, ethertype, vxlan_inner
from .headers import ETH_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_UDP
from .ipv6 import FlowView6
from .nd import parse_nd

VXLAN_PORTS = (4789, 1550)


def defect(frame: bytes, depth: int = 0) -> str | None:
    """A sentence naming what is wrong with ``frame``, or None if its headers fit."""
    if len(frame) < ETH_LEN:
        return f"runt frame of {len(frame)} bytes"
    kind = ethertype(frame)
    if kind == ETHERTYPE_ARP:
        return None if parse_arp(frame) is not None else f"arp packet cut short ({len(frame) - ETH_LEN} bytes)"
    if kind not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return None
    try:
        view = FlowView(frame) if kind == ETHERTYPE_IPV4 else FlowView6(frame)
        if kind == ETHERTYPE_IPV6:
            parse_nd(frame, view)
    except Malformed as error:
        return str(error)
    if view.proto == PROTO_UDP and not view.fragment and view.dport in VXLAN_PORTS and depth == 0:
        inner = vxlan_inner(frame, view)
        if inner is None:
            return "vxlan datagram too short to carry a frame"
        problem = defect(inner, depth + 1)
        return f"inside the tunnel: {problem}" if problem else None
    return None
