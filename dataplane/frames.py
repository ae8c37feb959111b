"""
Read, build and rewrite Ethernet/IPv4/TCP/UDP frames as bytes.

This module owns the byte layout of every frame on the forwarding path.
Frames travel as ``bytes``; headers are read with ``struct.unpack_from`` at
fixed offsets and rewritten in a ``bytearray`` with incremental checksum
updates (RFC 1624), because a Scapy object per hop would make the emulator
about a hundred times slower (see DESIGN §2).  Scapy builds the rare frames
(ARP, gratuitous ARP) where readability beats speed.

Offsets assume an untagged Ethernet II header (14 bytes) and read the IPv4
header length from the IHL field, so options are tolerated.
"""

from __future__ import annotations

import struct
from socket import inet_ntoa as _inet_ntoa

ETH_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
PROTO_TCP = 6
PROTO_UDP = 17
BROADCAST = b"\xff" * 6

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

VXLAN_FLAGS_VNI_VALID = 0x08
TCP_MSS = 1460

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_VXLAN = struct.Struct("!B3xI")
_IP_FIELDS = struct.Struct("!BxH5xB2x4s4s")  # version/IHL, total length, protocol, source, destination
_L2_L3_HEAD = struct.Struct("!12xHB5xH")  # ethertype, version/IHL, flags/fragment offset


# -- checksums ---------------------------------------------------------------

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


def _transport_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    value = checksum(pseudo + segment)
    if proto == PROTO_UDP and value == 0:
        return 0xFFFF  # RFC 768: a computed zero is sent as all ones
    return value


# -- addresses ---------------------------------------------------------------

def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_bytes(text: str) -> bytes:
    return bytes(int(part) for part in str(text).split("."))


def ip_text(raw: bytes) -> str:
    return _inet_ntoa(raw)


# -- parsing -----------------------------------------------------------------

class FlowView:
    """The fields of one IPv4 TCP/UDP frame that forwarding decisions read."""

    __slots__ = ("ihl", "proto", "src", "dst", "sport", "dport", "flags", "payload_len")

    def __init__(self, frame: bytes):
        ver_ihl, total_len, self.proto, self.src, self.dst = _IP_FIELDS.unpack_from(frame, ETH_LEN)
        ihl = (ver_ihl & 0x0F) * 4
        self.ihl = ihl
        l4 = ETH_LEN + ihl
        self.sport, self.dport = _PORTS.unpack_from(frame, l4)
        if self.proto == PROTO_TCP:
            self.flags = frame[l4 + 13]
            self.payload_len = total_len - ihl - (frame[l4 + 12] >> 4) * 4
        else:
            self.flags = 0
            self.payload_len = total_len - ihl - 8

    def describe(self) -> str:
        return f"{ip_text(self.src)}:{self.sport}>{ip_text(self.dst)}:{self.dport}"


def ethertype(frame: bytes) -> int:
    return _U16.unpack_from(frame, 12)[0]


def is_ipv4_l4(frame: bytes) -> bool:
    """True for an unfragmented IPv4 TCP or UDP frame."""
    if len(frame) < ETH_LEN + 28:
        return False
    kind, _, frag = _L2_L3_HEAD.unpack_from(frame)
    return kind == ETHERTYPE_IPV4 and frame[23] in (PROTO_TCP, PROTO_UDP) and not frag & 0x3FFF


def tcp_seq_ack(frame: bytes) -> tuple[int, int]:
    l4 = ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4
    return struct.unpack_from("!II", frame, l4 + 4)


def tcp_window(frame: bytes) -> int:
    return _U16.unpack_from(frame, ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4 + 14)[0]


def tcp_payload(frame: bytes) -> bytes:
    l4 = ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4
    return frame[l4 + (frame[l4 + 12] >> 4) * 4:]


def udp_payload(frame: bytes) -> bytes:
    return frame[ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4 + 8:]


# -- building ----------------------------------------------------------------

def ethernet(dst: bytes, src: bytes, ethertype_value: int, payload: bytes) -> bytes:
    return _ETH.pack(dst, src, ethertype_value) + payload


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int = 64) -> bytes:
    header = bytearray(_IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst))
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
    segment[16:18] = _U16.pack(_transport_checksum(src, dst, PROTO_TCP, segment))
    return bytes(segment)


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    datagram = bytearray(_UDP.pack(sport, dport, 8 + len(payload), 0) + payload)
    datagram[6:8] = _U16.pack(_transport_checksum(src, dst, PROTO_UDP, datagram))
    return bytes(datagram)


def tcp_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
              seq: int, ack: int, flags: int, payload: bytes = b"", ident: int = 0,
              mss: int | None = None) -> bytes:
    segment = tcp_segment(src, dst, sport, dport, seq, ack, flags, payload, mss=mss)
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
        reply_seq, reply_ack, flags = 0, seq + view.payload_len + (1 if view.flags & (SYN | FIN) else 0), RST | ACK
    return tcp_frame(b"\x00" * 6, eth_src, view.dst, view.src, view.dport, view.sport, reply_seq, reply_ack, flags)


def udp_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
              payload: bytes, ident: int = 0) -> bytes:
    datagram = udp_datagram(src, dst, sport, dport, payload)
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_UDP, datagram, ident))


def vxlan_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
                vni: int, inner: bytes, ident: int = 0) -> bytes:
    """Wrap ``inner`` (a whole Ethernet frame) in VXLAN over UDP, as the SE-to-SE tunnel does."""
    return udp_frame(eth_dst, eth_src, src, dst, sport, dport, _VXLAN.pack(VXLAN_FLAGS_VNI_VALID, vni << 8) + inner, ident)


def vxlan_inner(frame: bytes) -> bytes:
    return udp_payload(frame)[8:]


# -- rewriting ---------------------------------------------------------------

def rewrite_ethernet(frame: bytes, dst: bytes, src: bytes) -> bytes:
    """Return ``frame`` with new Ethernet addresses; everything after them stays byte-identical."""
    return dst + src + frame[12:]


#: One's-complement checksum delta of decrementing the TTL by one: the TTL/protocol word
#: drops by 0x0100, and ~w + (w - 0x0100) == 0xFEFF for every w (RFC 1624).
TTL_DECREMENT_DELTA = 0xFEFF


def checksum_delta(old: bytes, new: bytes) -> int:
    """Return the unfolded delta that turns a checksum over ``old`` into one over ``new``."""
    return (~ones_complement_sum(old) & 0xFFFF) + ones_complement_sum(new)


def apply_delta(old_checksum: int, delta: int) -> int:
    total = (~old_checksum & 0xFFFF) + delta
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


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
        ip = ETH_LEN
        l4 = ip + (buf[ip] & 0x0F) * 4
        buf[ip + 8] -= self.ttl_decrement
        buf[ip + 12:ip + 20] = self.addresses
        _U16.pack_into(buf, ip + 10, apply_delta(_U16.unpack_from(buf, ip + 10)[0], self.ip_delta))
        buf[l4:l4 + 4] = self.ports
        if buf[ip + 9] == PROTO_TCP:
            _U16.pack_into(buf, l4 + 16, apply_delta(_U16.unpack_from(buf, l4 + 16)[0], self.l4_delta))
        else:
            old = _U16.unpack_from(buf, l4 + 6)[0]
            if old:  # zero: the sender did not use a UDP checksum
                _U16.pack_into(buf, l4 + 6, apply_delta(old, self.l4_delta) or 0xFFFF)
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
    ip = ETH_LEN
    buf[ip + 8] -= 1
    _U16.pack_into(buf, ip + 10, apply_delta(_U16.unpack_from(buf, ip + 10)[0], TTL_DECREMENT_DELTA))
    return bytes(buf)


# -- ARP (Scapy: rare frames, built for readability) --------------------------

def arp_frame(op: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes,
              eth_dst: bytes | None = None) -> bytes:
    """Return an ARP request (op 1) or reply (op 2) built with Scapy."""
    from scapy.layers.l2 import ARP, Ether

    if eth_dst is None:
        eth_dst = BROADCAST if op == 1 else target_mac
    frame = Ether(dst=mac_text(eth_dst), src=mac_text(sender_mac)) / ARP(
        op=op, hwsrc=mac_text(sender_mac), psrc=ip_text(sender_ip),
        hwdst=mac_text(target_mac), pdst=ip_text(target_ip))
    return bytes(frame)


def gratuitous_arp(mac: bytes, ip: bytes) -> bytes:
    """Return a gratuitous ARP request announcing ``ip`` at ``mac`` (RFC 5227 announcement)."""
    return arp_frame(1, mac, ip, b"\x00" * 6, ip, eth_dst=BROADCAST)


_ARP = struct.Struct("!HHBBH6s4s6s4s")


def parse_arp(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """Return (op, sender_mac, sender_ip, target_mac, target_ip), or None if not IPv4-over-Ethernet ARP."""
    if len(frame) < ETH_LEN + _ARP.size:
        return None
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = _ARP.unpack_from(frame, ETH_LEN)
    if htype != 1 or ptype != ETHERTYPE_IPV4 or hlen != 6 or plen != 4:
        return None
    return op, smac, sip, tmac, tip


# -- ICMP echo (health monitor) -------------------------------------------------

PROTO_ICMP = 1
_ICMP_ECHO = struct.Struct("!BBHHH")


def icmp_echo_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, reply: bool, ident: int,
                    sequence: int, data: bytes, ip_ident: int = 0) -> bytes:
    """Return an ICMP echo request (or reply) frame."""
    message = bytearray(_ICMP_ECHO.pack(0 if reply else 8, 0, 0, ident, sequence) + data)
    message[2:4] = _U16.pack(checksum(message))
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV4, ipv4(src, dst, PROTO_ICMP, bytes(message), ip_ident))


def parse_icmp_echo(frame: bytes) -> tuple[int, int, int, bytes] | None:
    """Return (type, identifier, sequence, data) of an ICMP echo frame, else None."""
    if len(frame) < ETH_LEN + 28 or _U16.unpack_from(frame, 12)[0] != ETHERTYPE_IPV4 or frame[23] != PROTO_ICMP:
        return None
    offset = ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4
    kind, _, _, ident, sequence = _ICMP_ECHO.unpack_from(frame, offset)
    if kind not in (0, 8):
        return None
    return kind, ident, sequence, frame[offset + 8:]
