"""
ARP over Ethernet for IPv4 (RFC 826): requests, replies, gratuitous ARP, parsing.

Built with ``struct``: an ARP frame is 42 fixed bytes, and a replay ARPs once
per recorded client address, thousands of times.
"""

from __future__ import annotations

import struct

from .headers import BROADCAST, ETH_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ZERO_MAC

REQUEST, REPLY = 1, 2
_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # Ethernet header, then the ARP body
_BODY = struct.Struct("!HHBBH6s4s6s4s")


def arp_frame(op: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes,
              eth_dst: bytes | None = None) -> bytes:
    """Return an ARP request (op 1) or reply (op 2); a request is broadcast unless ``eth_dst`` says otherwise."""
    if eth_dst is None:
        eth_dst = BROADCAST if op == REQUEST else target_mac
    return _ARP.pack(eth_dst, sender_mac, ETHERTYPE_ARP, 1, ETHERTYPE_IPV4, 6, 4, op, sender_mac, sender_ip,
                     target_mac, target_ip)


def gratuitous_arp(mac: bytes, ip: bytes) -> bytes:
    """Return a gratuitous ARP request announcing ``ip`` at ``mac`` (RFC 5227 announcement)."""
    return arp_frame(REQUEST, mac, ip, ZERO_MAC, ip, eth_dst=BROADCAST)


def parse_arp(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """Return (op, sender_mac, sender_ip, target_mac, target_ip), or None if not IPv4-over-Ethernet ARP."""
    if len(frame) < ETH_LEN + _BODY.size:
        return None
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = _BODY.unpack_from(frame, ETH_LEN)
    if htype != 1 or ptype != ETHERTYPE_IPV4 or hlen != 6 or plen != 4:
        return None
    return op, smac, sip, tmac, tip
