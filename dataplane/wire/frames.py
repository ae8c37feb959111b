"""
Read, build and rewrite Ethernet/IPv4/TCP/UDP frames as bytes (IPv6 ones: ``ipv6``).

This module owns the byte layout of every frame on the forwarding path.
Frames travel as ``bytes``; headers are read with ``struct.unpack_from`` at
the offsets named in ``headers`` and rewritten in a ``bytearray`` with
incremental checksum updates (``checksum``), because a Scapy object per hop
would make the emulator about a hundred times slower (docs/design.md,
"Frames travel as bytes").  ARP and ICMP live in their own modules.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address as _IPv6Address
from socket import AF_INET6 as _AF_INET6
from socket import inet_ntoa as _inet_ntoa
from socket import inet_ntop as _inet_ntop

from .checksum import (TTL_DECREMENT_DELTA, apply_delta, checksum, checksum_delta, transport_checksum,
                       udp_checksum_field)
from .headers import (ACK, BROADCAST, ETH_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, FIN, IP, IP_CHECKSUM, IP_PROTO,
                      IP_TTL, IPV4_DONT_FRAGMENT, IPV4_FRAGMENT_BITS, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PSH, RST,
                      SYN, TCP_CHECKSUM, TCP_MSS, UDP_CHECKSUM, VXLAN_FLAGS_VNI_VALID, VXLAN_HEADER, ZERO_MAC)

__all__ = [  # the names the rest of the package reads from here, headers' included
    "ACK", "BROADCAST", "ETH_LEN", "ETHERTYPE_ARP", "ETHERTYPE_IPV4", "FIN", "PROTO_ICMP", "PROTO_TCP",
    "PROTO_UDP", "PSH", "RST", "SYN", "TCP_MSS", "ZERO_MAC", "FlowView", "Malformed", "NatRewrite", "checksum",
    "decrement_ttl", "ethernet", "ethertype", "ip_bytes", "ip_text", "ipv4", "is_ipv4_l4", "mac_bytes",
    "mac_text", "rewrite_ethernet", "rewrite_ipv4_l4", "tcp_frame", "tcp_mss_option", "tcp_option", "tcp_payload",
    "tcp_reset_for", "tcp_segment", "tcp_seq_ack", "tcp_window", "udp_datagram", "udp_frame", "udp_payload", "vxlan_frame",
    "vxlan_inner", "TTL_DECREMENT_DELTA",
]

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_PORTS = struct.Struct("!HH")
_TCP_HEAD = struct.Struct("!HHI4xBB")  # ports, sequence number, data offset, flags
_UDP_HEAD = struct.Struct("!HHH")  # ports, length
#: From byte 12 of the common frame (IPv4 without options, then TCP): both headers in one unpack.
_IPV4_TCP_HEAD = struct.Struct("!HxxHxxHBxxx4s4sHHI4xBB")
_IP_HEAD = struct.Struct("!HBxHxxHBB2x4s4s")  # from byte 12: ethertype, version/IHL, total length, flags/offset,
#                                                TTL, protocol, source, destination
_U16 = struct.Struct("!H")
_SEQ_ACK = struct.Struct("!II")
_VXLAN = struct.Struct("!B3xI")
_L2_L3_HEAD = struct.Struct("!12xHB5xH")  # ethertype, version/IHL, flags/fragment offset


# -- addresses ---------------------------------------------------------------

def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_bytes(text: str) -> bytes:
    """The raw bytes of an address written as text: 4 for IPv4, 16 for IPv6."""
    text = str(text)
    if ":" in text:
        return _IPv6Address(text).packed
    return bytes(int(part) for part in text.split("."))


def ip_text(raw: bytes) -> str:
    """An address of either family as text (IPv6 as Wireshark prints it)."""
    try:
        return _inet_ntoa(raw)
    except OSError:  # not 4 bytes: IPv6 (the IPv4 path pays nothing for the check)
        return _inet_ntop(_AF_INET6, raw)


# -- parsing -----------------------------------------------------------------

def ihl_of(frame: bytes) -> int:
    """The IPv4 header length in bytes, from the IHL field."""
    return (frame[IP] & 0x0F) * 4


def l4_offset(frame: bytes) -> int:
    """Where the transport header starts in an IPv4 frame."""
    return IP + (frame[IP] & 0x0F) * 4


class Malformed(ValueError):
    """A frame that cannot be what its headers say.  ``reason`` is a short key for counting, the message says it all."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class FlowView:
    """The fields of one IPv4 frame that forwarding decisions read, parsed once and bounds-checked.

    Raises ``Malformed`` for a frame whose headers do not fit in it.  For a
    fragment, or a protocol other than TCP and UDP, the ports, ``seq`` and
    ``flags`` are 0; ``l4`` is where the transport header starts.
    """

    __slots__ = ("ihl", "l4", "end", "proto", "src", "dst", "ttl", "sport", "dport", "seq", "flags",
                 "payload_len", "fragment")
    version = 4  # ipv6.FlowView6 says 6

    def __init__(self, frame: bytes):
        size = len(frame)
        # The common frame first (IPv4, no options, TCP, not a fragment): one unpack, and the same checks
        # as the general parse below, which any other frame, and any that fails one of them, goes through.
        if size >= 54 and frame[14] == 0x45 and frame[23] == PROTO_TCP:
            kind, total, frag, ttl, src, dst, sport, dport, seq, offset, flags = _IPV4_TCP_HEAD.unpack_from(frame, 12)
            header = (offset >> 4) * 4
            if kind == ETHERTYPE_IPV4 and not frag & IPV4_FRAGMENT_BITS and ETH_LEN + total <= size \
                    and 20 <= header <= total - 20:
                self.ttl, self.src, self.dst, self.sport, self.dport, self.seq, self.flags = \
                    ttl, src, dst, sport, dport, seq, flags
                self.ihl, self.proto, self.l4, self.end = 20, PROTO_TCP, ETH_LEN + 20, ETH_LEN + total
                self.fragment, self.payload_len = False, total - 20 - header
                return
        self._parse(frame, size)

    def _parse(self, frame: bytes, size: int) -> None:
        """The general parse: any IPv4 frame, every check with the ``Malformed`` reason it fails."""
        if size < ETH_LEN + 20:
            raise Malformed("ipv4_truncated", f"{size}-byte frame is shorter than Ethernet and IPv4 headers")
        kind, ver_ihl, total, frag, self.ttl, proto, self.src, self.dst = _IP_HEAD.unpack_from(frame, 12)
        if kind != ETHERTYPE_IPV4 or ver_ihl >> 4 != 4:
            raise Malformed("ipv4_version", f"not IPv4 (ethertype 0x{kind:04x}, version {ver_ihl >> 4})")
        ihl = (ver_ihl & 0x0F) * 4
        if ihl < 20 or ihl > total:
            raise Malformed("ipv4_header_length", f"ipv4 header length {ihl} does not fit total length {total}")
        if ETH_LEN + total > size:
            raise Malformed("ipv4_total_length", f"ipv4 total length {total} > frame ({size - ETH_LEN} bytes of IP)")
        self.ihl, self.proto, self.l4, self.end = ihl, proto, ETH_LEN + ihl, ETH_LEN + total
        self.fragment = bool(frag & IPV4_FRAGMENT_BITS)
        if self.fragment or proto not in (PROTO_TCP, PROTO_UDP):
            if proto == PROTO_ICMP and not self.fragment and total < ihl + 8:
                raise Malformed("icmp_truncated", f"icmp header cut short ({total - ihl} bytes)")
            self.sport = self.dport = self.seq = self.flags = 0
            self.payload_len = total - ihl
        elif proto == PROTO_TCP:
            if total < ihl + 20:
                raise Malformed("tcp_truncated", f"tcp header cut short ({total - ihl} bytes)")
            self.sport, self.dport, self.seq, offset, self.flags = _TCP_HEAD.unpack_from(frame, self.l4)
            header = (offset >> 4) * 4
            if header < 20 or ihl + header > total:
                raise Malformed("tcp_header_length", f"tcp header length {header} does not fit the "
                                                     f"{total - ihl}-byte segment")
            self.payload_len = total - ihl - header
        else:
            if total < ihl + 8:
                raise Malformed("udp_truncated", f"udp header cut short ({total - ihl} bytes)")
            self.sport, self.dport, length = _UDP_HEAD.unpack_from(frame, self.l4)
            if length < 8 or length > total - ihl:
                raise Malformed("udp_length", f"udp length {length} does not fit the {total - ihl}-byte payload")
            self.seq = self.flags = 0
            self.payload_len = length - 8

    def payload(self, frame: bytes) -> bytes:
        """The transport payload (for a fragment or another protocol: the IP payload), without Ethernet padding."""
        start = self.end - self.payload_len if self.proto != PROTO_UDP or self.fragment else self.l4 + 8
        return frame[start:start + self.payload_len]

    def describe(self) -> str:
        return f"{ip_text(self.src)}:{self.sport}>{ip_text(self.dst)}:{self.dport}"


def ethertype(frame: bytes) -> int:
    return _U16.unpack_from(frame, 12)[0]


def is_ipv4_l4(frame: bytes) -> bool:
    """True for an unfragmented IPv4 TCP or UDP frame."""
    if len(frame) < ETH_LEN + 28:
        return False
    kind, _, frag = _L2_L3_HEAD.unpack_from(frame)
    return kind == ETHERTYPE_IPV4 and frame[IP_PROTO] in (PROTO_TCP, PROTO_UDP) and not frag & IPV4_FRAGMENT_BITS


# The helpers below inline l4_offset: they run for most frames.

def tcp_seq_ack(frame: bytes) -> tuple[int, int]:
    return _SEQ_ACK.unpack_from(frame, IP + (frame[IP] & 0x0F) * 4 + 4)


def tcp_window(frame: bytes) -> int:
    return _U16.unpack_from(frame, IP + (frame[IP] & 0x0F) * 4 + 14)[0]


def tcp_flags(frame: bytes) -> int:
    return frame[l4_offset(frame) + 13]


def tcp_option(frame: bytes, at: int, end: int, kind: int, length: int) -> int | None:
    """Where the data of the TCP option ``kind`` of ``length`` bytes starts in the option list
    ``frame[at:end]``, or None; a malformed option list ends the search (RFC 9293 3.1)."""
    while at < end:
        found = frame[at]
        if found == 0:  # end of the option list
            return None
        if found == 1:  # no-operation
            at += 1
            continue
        if at + 1 >= end or frame[at + 1] < 2 or at + frame[at + 1] > end:
            return None
        if found == kind and frame[at + 1] == length:
            return at + 2
        at += frame[at + 1]
    return None


def tcp_mss_option(frame: bytes, view: FlowView) -> int | None:
    """The MSS option of a TCP segment (RFC 9293 3.2), or None."""
    at = tcp_option(frame, view.l4 + 20, view.end - view.payload_len, 2, 4)
    return None if at is None else _U16.unpack_from(frame, at)[0]


def tcp_payload(frame: bytes) -> bytes:
    l4 = IP + (frame[IP] & 0x0F) * 4
    return frame[l4 + (frame[l4 + 12] >> 4) * 4:]


def udp_payload(frame: bytes) -> bytes:
    return frame[IP + (frame[IP] & 0x0F) * 4 + 8:]


def next_sequence(seq: int, flags: int, payload_len: int) -> int:
    """The sequence number after a segment: its payload, plus one for SYN or FIN (RFC 793)."""
    return (seq + payload_len + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF


# -- building ----------------------------------------------------------------

def ethernet(dst: bytes, src: bytes, ethertype_value: int, payload: bytes) -> bytes:
    return _ETH.pack(dst, src, ethertype_value) + payload


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int = 64) -> bytes:
    header = bytearray(_IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, IPV4_DONT_FRAGMENT, ttl, proto, 0,
                                  src, dst))
    header[10:12] = _U16.pack(checksum(header))
    return bytes(header) + payload


def tcp_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                flags: int, payload: bytes = b"", window: int = 64240, mss: int | None = None) -> bytes:
    """Return a TCP header plus payload with a correct checksum for ``src``/``dst``."""
    options = b"\x02\x04" + _U16.pack(mss) if mss else b""
    offset = (20 + len(options)) // 4
    header = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       offset << 4, flags, window, 0, 0) + options
    segment = bytearray(header + payload)
    segment[16:18] = _U16.pack(transport_checksum(src, dst, PROTO_TCP, segment))
    return bytes(segment)


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    datagram = bytearray(_UDP.pack(sport, dport, 8 + len(payload), 0) + payload)
    datagram[6:8] = _U16.pack(transport_checksum(src, dst, PROTO_UDP, datagram))
    return bytes(datagram)


def tcp_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
              seq: int, ack: int, flags: int, payload: bytes = b"", ident: int = 0,
              mss: int | None = None, window: int = 64240) -> bytes:
    segment = tcp_segment(src, dst, sport, dport, seq, ack, flags, payload, window, mss)
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_TCP, segment, ident))


def tcp_reset_for(frame: bytes, eth_src: bytes) -> bytes:
    """Return the RST a stack sends for ``frame`` (RFC 793 "reset generation"), addresses swapped.

    The destination MAC is left zero: the sender resolves its next hop.
    """
    view = FlowView(frame)
    seq, ack = tcp_seq_ack(frame)
    if view.flags & ACK:
        reply_seq, reply_ack, flags = ack, 0, RST
    else:
        reply_seq, reply_ack, flags = 0, next_sequence(seq, view.flags, view.payload_len), RST | ACK
    return tcp_frame(ZERO_MAC, eth_src, view.dst, view.src, view.dport, view.sport, reply_seq, reply_ack, flags)


def udp_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
              payload: bytes, ident: int = 0) -> bytes:
    datagram = udp_datagram(src, dst, sport, dport, payload)
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_UDP, datagram, ident))


def vxlan_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
                vni: int, inner: bytes, ident: int = 0) -> bytes:
    """Wrap ``inner`` (a whole Ethernet frame) in VXLAN over UDP, as the SE-to-SE tunnel does."""
    return udp_frame(eth_dst, eth_src, src, dst, sport, dport, _VXLAN.pack(VXLAN_FLAGS_VNI_VALID, vni << 8) + inner,
                     ident)


def vxlan_inner(frame: bytes, view: FlowView) -> bytes | None:
    """The Ethernet frame inside a VXLAN datagram (``view`` is the outer frame's), or None if it cannot hold one."""
    start, end = view.l4 + 8 + VXLAN_HEADER, view.l4 + 8 + view.payload_len
    return frame[start:end] if end - start >= ETH_LEN else None


# -- rewriting ---------------------------------------------------------------

def rewrite_ethernet(frame: bytes, dst: bytes, src: bytes) -> bytes:
    """Return ``frame`` with new Ethernet addresses; everything after them stays byte-identical."""
    return dst + src + frame[12:]


class NatRewrite:
    """One direction of one NAT entry: new addresses and ports, checksum deltas computed once.

    Every packet of a connection in one direction has the same old and new
    address/port fields, so the checksum updates are two additions per frame.
    """

    __slots__ = ("addresses", "ports", "ip_delta", "l4_delta", "ttl_decrement")

    def __init__(self, old_src: bytes, old_sport: int, old_dst: bytes, old_dport: int,
                 src: bytes, sport: int, dst: bytes, dport: int, ttl_decrement: int = 1):
        self.addresses = src + dst
        self.ports = _PORTS.pack(sport, dport)
        self.ttl_decrement = ttl_decrement
        old_addresses = old_src + old_dst
        # Lowering the TTL by k lowers its 16-bit word by k * 0x100: the delta is ~(k << 8).
        ttl_delta = ~(ttl_decrement << 8) & 0xFFFF if ttl_decrement else 0
        self.ip_delta = checksum_delta(old_addresses, self.addresses) + ttl_delta
        self.l4_delta = checksum_delta(old_addresses + _PORTS.pack(old_sport, old_dport),
                                       self.addresses + self.ports)

    def apply(self, frame: bytes, eth_dst: bytes, eth_src: bytes) -> bytes:
        buf = bytearray(frame)
        buf[0:6] = eth_dst
        buf[6:12] = eth_src
        l4 = IP + (buf[IP] & 0x0F) * 4
        buf[IP_TTL] -= self.ttl_decrement
        buf[IP + 12:IP + 20] = self.addresses
        _U16.pack_into(buf, IP_CHECKSUM, apply_delta(_U16.unpack_from(buf, IP_CHECKSUM)[0], self.ip_delta))
        buf[l4:l4 + 4] = self.ports
        if buf[IP_PROTO] == PROTO_TCP:
            at = l4 + TCP_CHECKSUM
            _U16.pack_into(buf, at, apply_delta(_U16.unpack_from(buf, at)[0], self.l4_delta))
        else:
            at = l4 + UDP_CHECKSUM
            old = _U16.unpack_from(buf, at)[0]
            if old:  # zero: the sender did not use a UDP checksum
                _U16.pack_into(buf, at, udp_checksum_field(apply_delta(old, self.l4_delta)))
        return bytes(buf)


def rewrite_ipv4_l4(frame: bytes, eth_dst: bytes, eth_src: bytes, src: bytes, sport: int,
                    dst: bytes, dport: int, ttl_decrement: int = 1) -> bytes:
    """Return ``frame`` NATed to ``src:sport > dst:dport``: a one-off ``NatRewrite``."""
    view = FlowView(frame)
    rewrite = NatRewrite(view.src, view.sport, view.dst, view.dport, src, sport, dst, dport, ttl_decrement)
    return rewrite.apply(frame, eth_dst, eth_src)


def decrement_ttl(frame: bytes, eth_dst: bytes, eth_src: bytes) -> bytes:
    """Return ``frame`` routed one hop: new Ethernet addresses, TTL - 1, IP checksum updated."""
    buf = bytearray(frame)
    buf[0:6] = eth_dst
    buf[6:12] = eth_src
    buf[IP_TTL] -= 1
    _U16.pack_into(buf, IP_CHECKSUM, apply_delta(_U16.unpack_from(buf, IP_CHECKSUM)[0], TTL_DECREMENT_DELTA))
    return bytes(buf)
