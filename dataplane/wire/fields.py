"""
Header fields by name: the field table the regression toolkit shares.

``layout`` walks a frame (Ethernet, ARP, IPv4, IPv6 and its extension
headers, TCP, UDP, ICMPv6 with Neighbor Discovery, VXLAN and the Ethernet
frame inside it) and names every header field with its Wireshark
display-filter name (``eth.src``, ``ip.ttl``, ``ipv6.hlim``, ``tcp.seq``,
``icmpv6.nd.na.flag.o``...) and its bit range.  Fields inside a VXLAN
tunnel get the prefix ``inner.``.  Each checksum field comes with the bit
ranges it covers, pseudo-header fields included (IPv6 has no header
checksum: its addresses, payload length and upper-layer next header are
covered by the TCP, UDP and ICMPv6 checksums), so that ``masks.Mask`` can
mask the checksums over a masked field.

Parts the table keeps opaque, as byte blobs: IPv4 and TCP options, the
IPv6 Hop-by-Hop, Routing and Destination Options headers (Wireshark's
protocol names ``ipv6.hopopts``, ``ipv6.routing``, ``ipv6.dstopts``; the
Fragment header is named field by field, ``ipv6.fraghdr.*``), payloads, an
ICMPv6 echo's data and an ICMPv6 error's quoted packet (``icmpv6.data``),
and ND options other than link-layer addresses (``icmpv6.opt``).  The names
``ip.payload``, ``ipv6.payload``, ``ip.options`` and ``eth.payload`` are
ours: Wireshark has no field for those bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .ipv6 import MAX_EXTENSION_HEADERS  # walked as FlowView6 walks them; the rest is named ipv6.payload

VXLAN_PORTS = (4789, 1550)  # IANA VXLAN, and the SE-to-SE tunnel's default port


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    bit_off: int  # from the first bit of the frame
    bits: int
    kind: str  # mac | ip | int | hex | flags | bytes

    @property
    def end(self) -> int:
        return self.bit_off + self.bits

    def value(self, frame: bytes) -> int | bytes:
        start, stop = self.bit_off // 8, (self.end + 7) // 8
        raw = frame[start:stop]
        if self.kind in ("mac", "ip", "bytes"):
            return bytes(raw)
        number = int.from_bytes(raw, "big")
        return (number >> (stop * 8 - self.end)) & ((1 << self.bits) - 1)


@dataclass(slots=True)
class Layout:
    fields: list[Field]
    #: checksum field name -> the bit ranges it covers (header, payload, pseudo-header fields)
    coverage: dict[str, list[tuple[int, int]]]

    def by_name(self) -> dict[str, Field]:
        """Each name's field (for a name that occurs more than once, such as an ND option's, the last)."""
        return {f.name: f for f in self.fields}


# name, byte offset in its header, bit offset in that byte, bits, kind
_ETH = (("eth.dst", 0, 0, 48, "mac"), ("eth.src", 6, 0, 48, "mac"), ("eth.type", 12, 0, 16, "hex"))
_ARP = (("arp.hw.type", 0, 0, 16, "int"), ("arp.proto.type", 2, 0, 16, "hex"), ("arp.hw.size", 4, 0, 8, "int"),
        ("arp.proto.size", 5, 0, 8, "int"), ("arp.opcode", 6, 0, 16, "int"),
        ("arp.src.hw_mac", 8, 0, 48, "mac"), ("arp.src.proto_ipv4", 14, 0, 32, "ip"),
        ("arp.dst.hw_mac", 18, 0, 48, "mac"), ("arp.dst.proto_ipv4", 24, 0, 32, "ip"))
_IP = (("ip.version", 0, 0, 4, "int"), ("ip.hdr_len", 0, 4, 4, "int"), ("ip.dsfield", 1, 0, 8, "hex"),
       ("ip.len", 2, 0, 16, "int"), ("ip.id", 4, 0, 16, "hex"), ("ip.flags", 6, 0, 3, "flags"),
       ("ip.frag_offset", 6, 3, 13, "int"), ("ip.ttl", 8, 0, 8, "int"), ("ip.proto", 9, 0, 8, "int"),
       ("ip.checksum", 10, 0, 16, "hex"), ("ip.src", 12, 0, 32, "ip"), ("ip.dst", 16, 0, 32, "ip"))
_IPV6 = (("ipv6.version", 0, 0, 4, "int"), ("ipv6.tclass", 0, 4, 8, "hex"), ("ipv6.flow", 1, 4, 20, "hex"),
         ("ipv6.plen", 4, 0, 16, "int"), ("ipv6.nxt", 6, 0, 8, "int"), ("ipv6.hlim", 7, 0, 8, "int"),
         ("ipv6.src", 8, 0, 128, "ip"), ("ipv6.dst", 24, 0, 128, "ip"))
_FRAGHDR = (("ipv6.fraghdr.nxt", 0, 0, 8, "int"), ("ipv6.fraghdr.reserved_octet", 1, 0, 8, "hex"),
            ("ipv6.fraghdr.offset", 2, 0, 13, "int"), ("ipv6.fraghdr.reserved_bits", 3, 5, 2, "int"),
            ("ipv6.fraghdr.more", 3, 7, 1, "int"), ("ipv6.fraghdr.ident", 4, 0, 32, "hex"))
_EXTENSION_BLOBS = {0: "ipv6.hopopts", 43: "ipv6.routing", 60: "ipv6.dstopts"}
_TCP = (("tcp.srcport", 0, 0, 16, "int"), ("tcp.dstport", 2, 0, 16, "int"), ("tcp.seq", 4, 0, 32, "int"),
        ("tcp.ack", 8, 0, 32, "int"), ("tcp.hdr_len", 12, 0, 4, "int"), ("tcp.flags", 12, 4, 12, "flags"),
        ("tcp.window_size_value", 14, 0, 16, "int"), ("tcp.checksum", 16, 0, 16, "hex"),
        ("tcp.urgent_pointer", 18, 0, 16, "int"))
_UDP = (("udp.srcport", 0, 0, 16, "int"), ("udp.dstport", 2, 0, 16, "int"), ("udp.length", 4, 0, 16, "int"),
        ("udp.checksum", 6, 0, 16, "hex"))
_VXLAN = (("vxlan.flags", 0, 0, 8, "hex"), ("vxlan.vni", 4, 0, 24, "int"))
_ICMPV6 = (("icmpv6.type", 0, 0, 8, "int"), ("icmpv6.code", 1, 0, 8, "int"), ("icmpv6.checksum", 2, 0, 16, "hex"))
# ICMPv6 by message type: the fields of the first 8 or 24 bytes, and where the rest (options or data) starts.
_ICMPV6_BODIES = {
    1: ((("icmpv6.reserved", 4, 0, 32, "hex"),), 8, False),
    2: ((("icmpv6.mtu", 4, 0, 32, "int"),), 8, False),
    3: ((("icmpv6.reserved", 4, 0, 32, "hex"),), 8, False),
    4: ((("icmpv6.pointer", 4, 0, 32, "int"),), 8, False),
    128: ((("icmpv6.echo.identifier", 4, 0, 16, "hex"), ("icmpv6.echo.sequence_number", 6, 0, 16, "int")), 8,
          False),
    129: ((("icmpv6.echo.identifier", 4, 0, 16, "hex"), ("icmpv6.echo.sequence_number", 6, 0, 16, "int")), 8,
          False),
    135: ((("icmpv6.reserved", 4, 0, 32, "hex"), ("icmpv6.nd.ns.target_address", 8, 0, 128, "ip")), 24, True),
    136: ((("icmpv6.nd.na.flag.r", 4, 0, 1, "int"), ("icmpv6.nd.na.flag.s", 4, 1, 1, "int"),
           ("icmpv6.nd.na.flag.o", 4, 2, 1, "int"), ("icmpv6.nd.na.flag.rsv", 4, 3, 29, "hex"),
           ("icmpv6.nd.na.target_address", 8, 0, 128, "ip")), 24, True),
}
_ND_OPTION = (("icmpv6.opt.type", 0, 0, 8, "int"), ("icmpv6.opt.length", 1, 0, 8, "int"))
_LINK_ADDRESS_OPTIONS = {1: "icmpv6.opt.src_linkaddr", 2: "icmpv6.opt.target_linkaddr"}

#: Scapy and shorthand spellings users type, mapped to the Wireshark names above.
ALIASES: dict[str, tuple[str, ...]] = {
    "eth.addr": ("eth.src", "eth.dst"), "ip.addr": ("ip.src", "ip.dst"),
    "ip.ihl": ("ip.hdr_len",), "ip.tos": ("ip.dsfield",), "ip.chksum": ("ip.checksum",),
    "ip.frag": ("ip.frag_offset",),
    "ipv6.addr": ("ipv6.src", "ipv6.dst"), "ipv6.tc": ("ipv6.tclass",), "ipv6.fl": ("ipv6.flow",),
    "ipv6.nh": ("ipv6.nxt",),
    "tcp.port": ("tcp.srcport", "tcp.dstport"), "tcp.sport": ("tcp.srcport",), "tcp.dport": ("tcp.dstport",),
    "tcp.dataofs": ("tcp.hdr_len",), "tcp.window": ("tcp.window_size_value",), "tcp.chksum": ("tcp.checksum",),
    "tcp.urgptr": ("tcp.urgent_pointer",),
    "udp.port": ("udp.srcport", "udp.dstport"), "udp.sport": ("udp.srcport",), "udp.dport": ("udp.dstport",),
    "udp.len": ("udp.length",), "udp.chksum": ("udp.checksum",),
    "icmpv6.cksum": ("icmpv6.checksum",),
    "icmpv6.nd.na.flag": ("icmpv6.nd.na.flag.r", "icmpv6.nd.na.flag.s", "icmpv6.nd.na.flag.o",
                          "icmpv6.nd.na.flag.rsv"),
    "icmpv6.opt.linkaddr": ("icmpv6.opt.src_linkaddr", "icmpv6.opt.target_linkaddr"),
    "arp.op": ("arp.opcode",), "arp.hwsrc": ("arp.src.hw_mac",), "arp.psrc": ("arp.src.proto_ipv4",),
    "arp.hwdst": ("arp.dst.hw_mac",), "arp.pdst": ("arp.dst.proto_ipv4",), "arp.hwtype": ("arp.hw.type",),
    "arp.ptype": ("arp.proto.type",), "arp.hwlen": ("arp.hw.size",), "arp.plen": ("arp.proto.size",),
}
_VARIABLE = ("ip.options", "tcp.options", "tcp.payload", "udp.payload", "ip.payload", "eth.padding",
             "eth.payload", "ipv6.payload", "icmpv6.data", "icmpv6.opt", *_EXTENSION_BLOBS.values(),
             *_LINK_ADDRESS_OPTIONS.values())
FIELD_NAMES: frozenset[str] = frozenset(
    [f[0] for table in (_ETH, _ARP, _IP, _IPV6, _FRAGHDR, _TCP, _UDP, _VXLAN, _ICMPV6, _ND_OPTION) for f in table]
    + [f[0] for body, _, _ in _ICMPV6_BODIES.values() for f in body] + list(_VARIABLE))


def _add(out: list[Field], table, base: int, prefix: str) -> None:
    for name, byte, bit, bits, kind in table:
        out.append(Field(prefix + name, (base + byte) * 8 + bit, bits, kind))


def _blob(out: list[Field], name: str, start: int, stop: int) -> None:
    if stop > start:
        out.append(Field(name, start * 8, (stop - start) * 8, "bytes"))


def _bytes(start: int, stop: int) -> tuple[int, int]:
    return start * 8, stop * 8


def layout(frame: bytes, base: int = 0, prefix: str = "", end: int | None = None) -> Layout:
    """Name every header field of ``frame`` (from byte ``base``) with its bit range."""
    end = len(frame) if end is None else end
    result = Layout([], {})
    fields = result.fields
    if end - base < 14:
        _blob(fields, prefix + "eth.payload", base, end)
        return result
    _add(fields, _ETH, base, prefix)
    ethertype = struct.unpack_from("!H", frame, base + 12)[0]
    ip = base + 14
    if ethertype == 0x0806 and end - ip >= 28:
        _add(fields, _ARP, ip, prefix)
        _blob(fields, prefix + "eth.padding", ip + 28, end)
    elif ethertype == 0x0800 and end - ip >= 20 and frame[ip] >> 4 == 4:
        _blob(fields, prefix + "eth.padding", _ipv4(frame, result, ip, end, prefix), end)
    elif ethertype == 0x86DD and end - ip >= 40 and frame[ip] >> 4 == 6:
        _blob(fields, prefix + "eth.padding", _ipv6(frame, result, ip, end, prefix), end)
    else:
        _blob(fields, prefix + "eth.payload", ip, end)
    return result


def _ipv4(frame: bytes, result: Layout, ip: int, end: int, prefix: str) -> int:
    """Name the IPv4 header and what it carries; return where the IPv4 packet ends."""
    fields = result.fields
    _add(fields, _IP, ip, prefix)
    ihl = max(20, (frame[ip] & 0x0F) * 4)
    total = struct.unpack_from("!H", frame, ip + 2)[0]
    ip_end = min(end, ip + total) if total >= ihl else end
    _blob(fields, prefix + "ip.options", ip + 20, min(ip + ihl, ip_end))
    result.coverage[prefix + "ip.checksum"] = [_bytes(ip, ip + ihl)]
    l4, proto = ip + ihl, frame[ip + 9]
    fragment = struct.unpack_from("!H", frame, ip + 6)[0] & 0x1FFF
    # Pseudo-header: source, destination, protocol and the length derived from ip.len.
    pseudo = [_bytes(ip + 12, ip + 20), _bytes(ip + 9, ip + 10), _bytes(ip + 2, ip + 4)]
    if fragment or not _transport(frame, result, l4, ip_end, proto, pseudo, prefix, 4):
        _blob(fields, prefix + "ip.payload", l4, ip_end)
    return ip_end


def _ipv6(frame: bytes, result: Layout, ip: int, end: int, prefix: str) -> int:
    """Name the IPv6 header, its extension headers and what they carry; return where the IPv6 packet ends."""
    fields = result.fields
    _add(fields, _IPV6, ip, prefix)
    ip_end = min(end, ip + 40 + struct.unpack_from("!H", frame, ip + 4)[0])
    # Pseudo-header: both addresses, the length derived from ipv6.plen (and the extension headers' lengths),
    # and the next-header byte that names the upper layer.
    pseudo = [_bytes(ip + 4, ip + 6), _bytes(ip + 8, ip + 40)]
    at, header, next_byte = ip + 40, frame[ip + 6], ip + 6
    for _ in range(MAX_EXTENSION_HEADERS):
        if header not in (0, 43, 44, 60) or at + 8 > ip_end:
            break
        length = 8 if header == 44 else (frame[at + 1] + 1) * 8
        if at + length > ip_end:
            break
        if header == 44:
            _add(fields, _FRAGHDR, at, prefix)
            if struct.unpack_from("!H", frame, at + 2)[0] & 0xFFF9:  # a real fragment: no transport header here
                _blob(fields, prefix + "ipv6.payload", at + 8, ip_end)
                return ip_end
        else:
            _blob(fields, prefix + _EXTENSION_BLOBS[header], at, at + length)
        # A routing header holds the final destination the pseudo-header uses; the others their lengths.
        pseudo.append(_bytes(at, at + length) if header == 43 else _bytes(at, at + 2))
        header, next_byte, at = frame[at], at, at + length
    pseudo.append(_bytes(next_byte, next_byte + 1))
    if not _transport(frame, result, at, ip_end, header, pseudo, prefix, 6):
        _blob(fields, prefix + "ipv6.payload", at, ip_end)
    return ip_end


def _transport(frame: bytes, result: Layout, l4: int, ip_end: int, proto: int, pseudo, prefix: str,
               version: int) -> bool:
    """Name a TCP, UDP or (over IPv6) ICMPv6 header at ``l4``; False if there is none to name."""
    fields, coverage = result.fields, result.coverage
    if proto == 6 and ip_end - l4 >= 20:
        _add(fields, _TCP, l4, prefix)
        offset = max(20, (frame[l4 + 12] >> 4) * 4)
        _blob(fields, prefix + "tcp.options", l4 + 20, min(l4 + offset, ip_end))
        _blob(fields, prefix + "tcp.payload", l4 + offset, ip_end)
        coverage[prefix + "tcp.checksum"] = [_bytes(l4, ip_end)] + pseudo
    elif proto == 17 and ip_end - l4 >= 8:
        _add(fields, _UDP, l4, prefix)
        coverage[prefix + "udp.checksum"] = [_bytes(l4, ip_end)] + pseudo
        dport = struct.unpack_from("!H", frame, l4 + 2)[0]
        if dport in VXLAN_PORTS and not prefix and ip_end - l4 >= 16 + 14:
            _add(fields, _VXLAN, l4 + 8, prefix)
            inner = layout(frame, l4 + 16, "inner.", ip_end)
            fields.extend(inner.fields)
            coverage.update(inner.coverage)
        else:
            _blob(fields, prefix + "udp.payload", l4 + 8, ip_end)
    elif proto == 58 and version == 6 and ip_end - l4 >= 4:
        _icmpv6(frame, result, l4, ip_end, prefix)
        coverage[prefix + "icmpv6.checksum"] = [_bytes(l4, ip_end)] + pseudo
    else:
        return False
    return True


def _icmpv6(frame: bytes, result: Layout, l4: int, ip_end: int, prefix: str) -> None:
    fields = result.fields
    _add(fields, _ICMPV6, l4, prefix)
    body, size, options = _ICMPV6_BODIES.get(frame[l4], ((), 4, False))
    if ip_end - l4 < size:
        body, size, options = (), 4, False
    _add(fields, body, l4, prefix)
    at = l4 + size
    while options and at + 2 <= ip_end:  # each option is at least 8 bytes: bounded by the message length
        units = frame[at + 1]
        if not units or at + units * 8 > ip_end:
            break
        _add(fields, _ND_OPTION, at, prefix)
        name = _LINK_ADDRESS_OPTIONS.get(frame[at])
        if name and units == 1:
            fields.append(Field(prefix + name, (at + 2) * 8, 48, "mac"))
        else:
            _blob(fields, prefix + "icmpv6.opt", at + 2, at + units * 8)
        at += units * 8
    _blob(fields, prefix + "icmpv6.data", at, ip_end)
