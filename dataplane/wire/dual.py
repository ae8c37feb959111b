"""
Either family: the builders and readers a node uses without caring whether a flow is IPv4 or IPv6.

A dual-stack node (an SE, the router) and the hosts of either family build
their frames here: the family follows the addresses (4 bytes: IPv4, 16:
IPv6), and a frame is read through its parsed view (``FlowView`` or
``FlowView6``, which share field names).  The IPv4 builders keep their IP
identification; IPv6 has none in an unfragmented packet.  A SYN's MSS is
the family's (1460 or 1440 for a 1500-byte MTU).
"""

from __future__ import annotations

from . import frames, icmp, icmpv6, ipv6
from .headers import ETHERTYPE_IPV6, TCP_MSS, TCP_MSS6

__all__ = ["echo_frame", "endpoint", "mss_for", "parse_echo", "reset_for", "seq_ack", "tcp",
           "udp", "window"]


def endpoint(address: bytes, port: int) -> str:
    """``10.0.0.1:80`` or ``[2001:db8::1]:80`` (RFC 3986: an IPv6 address in brackets before a port)."""
    text = frames.ip_text(address)
    return f"[{text}]:{port}" if len(address) == 16 else f"{text}:{port}"


def mss_for(address: bytes) -> int:
    """The MSS a host on a 1500-byte MTU announces for a connection of ``address``'s family."""
    return TCP_MSS if len(address) == 4 else TCP_MSS6


def tcp(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
        flags: int, payload: bytes = b"", ident: int = 0, mss: int | None = None, window: int = 64240) -> bytes:
    if len(src) == 4:
        return frames.tcp_frame(eth_dst, eth_src, src, dst, sport, dport, seq, ack, flags, payload, ident, mss, window)
    return ipv6.tcp6_frame(eth_dst, eth_src, src, dst, sport, dport, seq, ack, flags, payload, mss, window=window)


def udp(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes,
        ident: int = 0) -> bytes:
    if len(src) == 4:
        return frames.udp_frame(eth_dst, eth_src, src, dst, sport, dport, payload, ident)
    return ipv6.udp6_frame(eth_dst, eth_src, src, dst, sport, dport, payload)


def reset_for(frame: bytes, eth_src: bytes) -> bytes:
    """The RST a stack answers ``frame`` with (RFC 793 "reset generation"), in the frame's family."""
    if frames.ethertype(frame) == ETHERTYPE_IPV6:
        return ipv6.tcp6_reset_for(frame, eth_src)
    return frames.tcp_reset_for(frame, eth_src)


def seq_ack(frame: bytes, view) -> tuple[int, int]:
    return ipv6.seq_ack_of(frame, view)


def window(frame: bytes, view) -> int:
    return ipv6.window_of(frame, view)


def echo_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, reply: bool, ident: int, sequence: int,
               data: bytes, ip_ident: int = 0) -> bytes:
    """An ICMP (IPv4) or ICMPv6 echo request or reply."""
    if len(src) == 4:
        return icmp.icmp_echo_frame(eth_dst, eth_src, src, dst, reply, ident, sequence, data, ip_ident)
    return icmpv6.echo6_frame(eth_dst, eth_src, src, dst, reply, ident, sequence, data)


def parse_echo(frame: bytes, view) -> tuple[bool, int, int, bytes] | None:
    """(is a request, identifier, sequence, data) of an echo message of either family, else None."""
    if view.version == 4:
        echo = icmp.parse_icmp_echo(frame, view)
        return None if echo is None else (echo[0] == icmp.ECHO_REQUEST, *echo[1:])
    echo = icmpv6.parse_icmpv6_echo(frame, view)
    return None if echo is None else (echo[0] == icmpv6.ECHO_REQUEST, *echo[1:])
