"""
Read, build and rewrite Ethernet/IPv6/TCP/UDP frames as bytes (RFC 8200): the IPv6 sibling of ``frames``.

This module owns the IPv6 byte layout on the forwarding path, in the same
style as ``frames``: ``struct`` at the offsets named in ``headers``,
incremental checksum updates, no Scapy.  ICMPv6 lives in ``icmpv6``,
Neighbor Discovery in ``nd``.

Parsing: ``FlowView6`` has the field names of ``frames.FlowView`` (``src``
and ``dst`` are 16 bytes, ``ttl`` is the hop limit, ``proto`` the
upper-layer protocol after the extension headers, ``ihl`` the IPv6 header
plus its extension headers), so code that reads a view works for both
families; ``ip_view`` picks the class by EtherType.  It raises ``Malformed``
with a reason, as ``FlowView`` does.  The rules, where RFC 8200 leaves a
choice:

- Extension headers walked: Hop-by-Hop Options (0, only right after the
  IPv6 header), Routing (43), Destination Options (60) and Fragment (44);
  at most ``MAX_EXTENSION_HEADERS`` of them, each inside the payload length,
  so a hostile chain costs at most that many steps.  Any other next-header
  value (AH, ESP, No Next Header, ...) ends the walk as the upper-layer
  protocol, without ports.
- A Routing header with Segments Left other than 0 is ``Malformed``: no
  node here is a segment endpoint, and RFC 8200 section 4.4 has a node
  discard such a packet whose routing type it does not process.
- A Fragment header makes the frame a fragment (``fragment`` True, no
  ports, ``proto`` from the Fragment header, ``frag_at`` where it is, for
  reassembly with ``fragment_fields``) -- the first fragment too, exactly as
  ``FlowView`` treats IPv4 fragments, so every fragment of one datagram is
  steered alike.  An atomic fragment (offset 0, M clear) is a whole packet
  (RFC 6946) and is parsed through.
- Payload length 0 with a Hop-by-Hop header is a jumbogram (RFC 2675): not
  supported, ``Malformed``.  A UDP checksum of zero is ``Malformed``: over
  IPv6 it is mandatory (RFC 8200 section 8.1), and tshark calls it an error.
  ICMPv6 needs its 8-byte header.

Building: ``ipv6``, ``tcp6_frame``, ``udp6_frame`` and ``tcp6_reset_for``
compute checksums over the IPv6 pseudo-header (``checksum.transport_checksum``
takes either family).  ``frames.vxlan_frame`` carries an IPv6 frame as it
carries any Ethernet frame.  Rewriting: ``NatRewrite6`` (IPv6 has no header
checksum, so only the TCP/UDP checksum gets a delta; the hop limit is not in
the pseudo-header) and ``decrement_hop_limit``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import zlib

from .checksum import apply_delta, checksum_delta, udp_checksum_field
from .frames import FlowView, Malformed, ethernet, next_sequence, tcp_segment, udp_datagram
from .headers import (ACK, ETH_LEN, ETHERTYPE_IPV6, ETHERTYPE_IPV6_BYTES, EXT_DESTINATION, EXT_FRAGMENT,
                      EXT_HOP_BY_HOP, EXT_ROUTING, IPV6_ADDRESSES, IPV6_FRAGMENT_HEADER, IPV6_FRAGMENT_OFFSET_MASK,
                      IPV6_HEADER, IPV6_HOP_LIMIT, IPV6_L4, IPV6_MORE_FRAGMENTS, IPV6_NEXT_HEADER, PROTO_ICMPV6,
                      PROTO_TCP, PROTO_UDP, RST, TCP_CHECKSUM, UDP_CHECKSUM, ZERO_MAC)

__all__ = ["MAX_EXTENSION_HEADERS", "FlowView6", "NatRewrite6", "bad_checksum6", "decrement_hop_limit",
           "fragment_fields",
           "ip_view", "ipv6", "ipv6_bytes", "ipv6_frame", "ipv6_text", "is_multicast", "link_local", "mac_for_ipv6",
           "rewrite_ipv6_l4", "seq_ack_of", "tcp6_frame", "tcp6_reset_for", "udp6_frame", "window_of"]

#: The longest extension-header chain the parser walks; real traffic carries one or two.
MAX_EXTENSION_HEADERS = 8
_WALKED = frozenset((EXT_HOP_BY_HOP, EXT_ROUTING, EXT_DESTINATION, EXT_FRAGMENT))

_IPV6 = struct.Struct("!IHBB16s16s")  # version/class/flow label, payload length, next header, hop limit, addresses
_IPV6_HEAD = struct.Struct("!HIHBB16s16s")  # from byte 12: ethertype, then the IPv6 header
_TCP_HEAD = struct.Struct("!HHI4xBB")  # ports, sequence number, data offset, flags
_UDP_HEAD = struct.Struct("!HHHH")  # ports, length, checksum
_FRAGMENT = struct.Struct("!BxHI")  # next header, offset/flags, identification
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_SEQ_ACK = struct.Struct("!II")


# -- addresses ---------------------------------------------------------------

def ipv6_bytes(text: str) -> bytes:
    """The 16 bytes of an IPv6 address written as text; ValueError names a bad one."""
    return ipaddress.IPv6Address(str(text)).packed


def ipv6_text(raw: bytes) -> str:
    """An IPv6 address as Wireshark prints it (RFC 5952, IPv4-mapped addresses in dotted form)."""
    return socket.inet_ntop(socket.AF_INET6, raw)


def is_multicast(address: bytes) -> bool:
    return address[0] == 0xFF


def mac_for_ipv6(address: bytes, nic_index: int = 0) -> bytes:
    """The locally administered MAC of an IPv6-only NIC: ``06:<nic>:<CRC-32 of the address>``.

    IPv4's ``02:<nic>:<address>`` cannot spell 16 bytes, and any 4 of them repeat across
    networks (``2001:db8:98::5`` and ``2001:db8:99::5``), so the address is hashed; the ``06``
    tells these MACs from IPv4-derived ones, and ``split`` maps them back through the capture's
    names.  The builder refuses the (unlikely) collision on a segment.  A dual-stack NIC keeps
    its IPv4-derived MAC.
    """
    return bytes((0x06, nic_index)) + zlib.crc32(address).to_bytes(4, "big")


def link_local(mac: bytes) -> bytes:
    """The fe80::/64 address a NIC forms from its MAC (modified EUI-64, RFC 4291 appendix A)."""
    return b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


# -- parsing -----------------------------------------------------------------

class FlowView6:
    """The fields of one IPv6 frame that forwarding decisions read, parsed once and bounds-checked.

    Field names as in ``FlowView``; the rules are in the module docstring.
    ``frag_at`` is the frame offset of the Fragment header, or 0.
    """

    __slots__ = ("ihl", "l4", "end", "proto", "src", "dst", "ttl", "sport", "dport", "seq", "flags",
                 "payload_len", "fragment", "frag_at")
    version = 6

    def __init__(self, frame: bytes):
        size = len(frame)
        if size < IPV6_L4:
            raise Malformed("ipv6_truncated", f"{size}-byte frame is shorter than Ethernet and IPv6 headers")
        kind, first_word, plen, proto, self.ttl, self.src, self.dst = _IPV6_HEAD.unpack_from(frame, 12)
        if kind != ETHERTYPE_IPV6 or first_word >> 28 != 6:
            raise Malformed("ipv6_version", f"not IPv6 (ethertype 0x{kind:04x}, version {first_word >> 28})")
        if plen == 0 and proto == EXT_HOP_BY_HOP:
            raise Malformed("ipv6_jumbogram", "ipv6 payload length 0 with hop-by-hop options: jumbograms "
                                              "are not supported")
        end = IPV6_L4 + plen
        if end > size:
            raise Malformed("ipv6_payload_length", f"ipv6 payload length {plen} > frame ({size - IPV6_L4} bytes "
                                                   f"after the IPv6 header)")
        self.end, self.fragment, self.frag_at = end, False, 0
        l4 = IPV6_L4
        if proto in _WALKED:
            l4, proto = self._walk(frame, proto, end)
        self.proto, self.l4, self.ihl = proto, l4, l4 - ETH_LEN
        self._upper_layer(frame, proto, end - l4)

    def _walk(self, frame: bytes, header: int, end: int) -> tuple[int, int]:
        """Walk the extension headers from ``header``; return where the upper layer starts, and its protocol."""
        at = IPV6_L4
        for _ in range(MAX_EXTENSION_HEADERS):
            if at + 8 > end:
                raise Malformed("ipv6_extension_truncated", f"extension header {header} cut short at byte "
                                                            f"{at - IPV6_L4} of the ipv6 payload")
            following = frame[at]
            if header == EXT_FRAGMENT:
                field = _U16.unpack_from(frame, at + 2)[0]
                self.frag_at = at
                at += IPV6_FRAGMENT_HEADER
                if field & (IPV6_FRAGMENT_OFFSET_MASK | IPV6_MORE_FRAGMENTS):
                    self.fragment = True
                    return at, following
            else:
                if header == EXT_HOP_BY_HOP and at != IPV6_L4:
                    raise Malformed("ipv6_hop_by_hop_not_first", "hop-by-hop options header after another "
                                                                 "extension header")
                length = (frame[at + 1] + 1) * 8
                if at + length > end:
                    raise Malformed("ipv6_extension_length", f"extension header {header} of {length} bytes runs "
                                                             f"past the ipv6 payload")
                if header == EXT_ROUTING and frame[at + 3]:
                    raise Malformed("ipv6_routing_header", f"routing header type {frame[at + 2]} with "
                                                           f"{frame[at + 3]} segments left: not for this node")
                at += length
            header = following
            if header not in _WALKED:
                return at, header
        raise Malformed("ipv6_extension_chain", f"more than {MAX_EXTENSION_HEADERS} ipv6 extension headers")

    def _upper_layer(self, frame: bytes, proto: int, size: int) -> None:
        l4 = self.l4
        if self.fragment or proto not in (PROTO_TCP, PROTO_UDP):
            if proto == PROTO_ICMPV6 and not self.fragment and size < 8:
                raise Malformed("icmpv6_truncated", f"icmpv6 header cut short ({size} bytes)")
            self.sport = self.dport = self.seq = self.flags = 0
            self.payload_len = size
        elif proto == PROTO_TCP:
            if size < 20:
                raise Malformed("tcp_truncated", f"tcp header cut short ({size} bytes)")
            self.sport, self.dport, self.seq, offset, self.flags = _TCP_HEAD.unpack_from(frame, l4)
            header = (offset >> 4) * 4
            if header < 20 or header > size:
                raise Malformed("tcp_header_length", f"tcp header length {header} does not fit the "
                                                     f"{size}-byte segment")
            self.payload_len = size - header
        else:
            if size < 8:
                raise Malformed("udp_truncated", f"udp header cut short ({size} bytes)")
            self.sport, self.dport, length, checksum_field = _UDP_HEAD.unpack_from(frame, l4)
            if length < 8 or length > size:
                raise Malformed("udp_length", f"udp length {length} does not fit the {size}-byte payload")
            if not checksum_field:
                raise Malformed("udp_zero_checksum", "udp checksum 0 over ipv6 (it is mandatory, RFC 8200)")
            self.seq = self.flags = 0
            self.payload_len = length - 8

    def payload(self, frame: bytes) -> bytes:
        """The transport payload (for a fragment or another protocol: what follows the extension headers)."""
        start = self.end - self.payload_len if self.proto != PROTO_UDP or self.fragment else self.l4 + 8
        return frame[start:start + self.payload_len]

    def describe(self) -> str:
        return f"[{ipv6_text(self.src)}]:{self.sport}>[{ipv6_text(self.dst)}]:{self.dport}"



def ip_view(frame: bytes) -> FlowView | FlowView6:
    """Parse an IPv4 or IPv6 frame (by EtherType) into its view; ``Malformed`` as the view raises it."""
    if frame[12:14] == ETHERTYPE_IPV6_BYTES:
        return FlowView6(frame)
    return FlowView(frame)


def fragment_fields(frame: bytes, view: FlowView6) -> tuple[int, int, bool, int] | None:
    """(identification, offset in bytes, more fragments, next header) of the Fragment header, or None."""
    if not view.frag_at:
        return None
    following, field, ident = _FRAGMENT.unpack_from(frame, view.frag_at)
    return ident, field & IPV6_FRAGMENT_OFFSET_MASK, bool(field & IPV6_MORE_FRAGMENTS), following


def bad_checksum6(frame: bytes, view: FlowView6) -> str | None:
    """"tcp" or "udp" when the transport checksum of the parsed IPv6 ``frame`` is wrong, else None.

    As ``checksum.bad_checksum`` for IPv4: one bignum modulo over the pseudo-header and the segment (RFC 1071;
    an odd segment is summed as if padded with a zero byte).  A fragment or another protocol is not judged; a
    zero UDP checksum never gets here (``FlowView6`` calls it malformed).
    """
    proto = view.proto
    if view.fragment or proto not in (PROTO_TCP, PROTO_UDP):
        return None
    length = view.end - view.l4
    value = int.from_bytes(frame[IPV6_ADDRESSES], "big") + length + proto + \
        (int.from_bytes(frame[view.l4:view.end], "big") << (8 * (length & 1)))
    if value % 0xFFFF:
        return "tcp" if proto == PROTO_TCP else "udp"
    return None


def seq_ack_of(frame: bytes, view: FlowView | FlowView6) -> tuple[int, int]:
    """The TCP sequence and acknowledgement numbers of a parsed TCP frame of either family."""
    return _SEQ_ACK.unpack_from(frame, view.l4 + 4)


def window_of(frame: bytes, view: FlowView | FlowView6) -> int:
    return _U16.unpack_from(frame, view.l4 + 14)[0]


# -- building ----------------------------------------------------------------

def ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, hop_limit: int = 64, flow_label: int = 0,
         traffic_class: int = 0) -> bytes:
    """An IPv6 header and its payload (at most 65535 bytes: no jumbograms)."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"ipv6 payload of {len(payload)} bytes needs a jumbogram, which is not supported")
    first_word = 0x60000000 | (traffic_class & 0xFF) << 20 | flow_label & 0xFFFFF
    return _IPV6.pack(first_word, len(payload), next_header, hop_limit, src, dst) + payload


def ipv6_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, next_header: int, payload: bytes,
               hop_limit: int = 64, flow_label: int = 0) -> bytes:
    return ethernet(eth_dst, eth_src, ETHERTYPE_IPV6, ipv6(src, dst, next_header, payload, hop_limit, flow_label))


def tcp6_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
               seq: int, ack: int, flags: int, payload: bytes = b"", mss: int | None = None,
               hop_limit: int = 64, flow_label: int = 0, window: int = 64240) -> bytes:
    """A TCP segment over IPv6, its checksum over the IPv6 pseudo-header (``headers.TCP_MSS6`` for a SYN's MSS)."""
    segment = tcp_segment(src, dst, sport, dport, seq, ack, flags, payload, window=window, mss=mss)
    return ipv6_frame(eth_dst, eth_src, src, dst, PROTO_TCP, segment, hop_limit, flow_label)


def udp6_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, sport: int, dport: int,
               payload: bytes, hop_limit: int = 64, flow_label: int = 0) -> bytes:
    """A UDP datagram over IPv6; its checksum is never 0 (a computed zero is sent as 0xffff)."""
    datagram = udp_datagram(src, dst, sport, dport, payload)
    return ipv6_frame(eth_dst, eth_src, src, dst, PROTO_UDP, datagram, hop_limit, flow_label)


def tcp6_reset_for(frame: bytes, eth_src: bytes) -> bytes:
    """The RST a stack sends for an IPv6 TCP ``frame`` (RFC 793 "reset generation"), addresses swapped.

    The destination MAC is left zero: the sender resolves its next hop.
    """
    view = FlowView6(frame)
    if view.proto != PROTO_TCP or view.fragment:
        raise ValueError(f"no reset for a frame that carries no tcp header ({view.describe()})")
    seq, ack = seq_ack_of(frame, view)
    if view.flags & ACK:
        reply_seq, reply_ack, flags = ack, 0, RST
    else:
        reply_seq, reply_ack, flags = 0, next_sequence(seq, view.flags, view.payload_len), RST | ACK
    return tcp6_frame(ZERO_MAC, eth_src, view.dst, view.src, view.dport, view.sport, reply_seq, reply_ack, flags)


# -- rewriting ---------------------------------------------------------------

class NatRewrite6:
    """One direction of one IPv6 NAT entry: new addresses and ports, the TCP/UDP checksum delta computed once.

    ``apply`` takes any unfragmented TCP or UDP frame ``FlowView6`` accepts;
    one without extension headers (every frame the emulator builds) costs no
    parse.  The caller makes sure the hop limit is above ``hop_decrement``.
    """

    __slots__ = ("addresses", "ports", "l4_delta", "hop_decrement")

    def __init__(self, old_src: bytes, old_sport: int, old_dst: bytes, old_dport: int,
                 src: bytes, sport: int, dst: bytes, dport: int, hop_decrement: int = 1):
        self.addresses = src + dst
        self.ports = _PORTS.pack(sport, dport)
        self.hop_decrement = hop_decrement
        self.l4_delta = checksum_delta(old_src + old_dst + _PORTS.pack(old_sport, old_dport),
                                       self.addresses + self.ports)

    def apply(self, frame: bytes, eth_dst: bytes, eth_src: bytes) -> bytes:
        buf = bytearray(frame)
        buf[0:6] = eth_dst
        buf[6:12] = eth_src
        buf[IPV6_HOP_LIMIT] -= self.hop_decrement
        buf[IPV6_ADDRESSES] = self.addresses
        proto, l4 = buf[IPV6_NEXT_HEADER], IPV6_L4
        if proto not in (PROTO_TCP, PROTO_UDP):
            view = FlowView6(frame)
            if view.fragment or view.proto not in (PROTO_TCP, PROTO_UDP):
                raise ValueError(f"ipv6 nat rewrites unfragmented tcp and udp only ({view.describe()})")
            proto, l4 = view.proto, view.l4
        buf[l4:l4 + 4] = self.ports
        at = l4 + (TCP_CHECKSUM if proto == PROTO_TCP else UDP_CHECKSUM)
        updated = apply_delta(_U16.unpack_from(buf, at)[0], self.l4_delta)
        _U16.pack_into(buf, at, updated if proto == PROTO_TCP else udp_checksum_field(updated))
        return bytes(buf)


def rewrite_ipv6_l4(frame: bytes, eth_dst: bytes, eth_src: bytes, src: bytes, sport: int,
                    dst: bytes, dport: int, hop_decrement: int = 1) -> bytes:
    """Return ``frame`` NATed to ``src:sport > dst:dport``: a one-off ``NatRewrite6``."""
    view = FlowView6(frame)
    rewrite = NatRewrite6(view.src, view.sport, view.dst, view.dport, src, sport, dst, dport, hop_decrement)
    return rewrite.apply(frame, eth_dst, eth_src)


def decrement_hop_limit(frame: bytes, eth_dst: bytes, eth_src: bytes) -> bytes:
    """Return ``frame`` routed one hop: new Ethernet addresses, hop limit - 1 (no header checksum to update).

    The caller checks first: a hop limit of 1 or 0 is not forwarded (the emulated router and SEs drop it,
    as they drop an IPv4 TTL of 1; ``icmpv6.time_exceeded`` can build the answer a router may send).
    """
    buf = bytearray(frame)
    buf[0:6] = eth_dst
    buf[6:12] = eth_src
    buf[IPV6_HOP_LIMIT] -= 1
    return bytes(buf)


assert _IPV6.size == IPV6_HEADER
