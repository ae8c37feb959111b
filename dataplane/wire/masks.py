"""
Header fields by name, and masks of don't-care fields over a frame's bytes.

This module owns the field table the regression toolkit shares: ``layout``
walks a frame (Ethernet, ARP, IPv4, TCP, UDP, VXLAN and the Ethernet frame
inside it) and names every header field with its Wireshark display-filter
name (``eth.src``, ``ip.ttl``, ``tcp.seq``, ``arp.src.hw_mac``...) and its
bit range.  Fields inside a VXLAN tunnel get the prefix ``inner.``.

``Mask`` is PTF's ``Mask`` in those terms: a care-bit per bit of the
expected frame, so matching is two integer ANDs, not a dissection.  Unlike
PTF, masking a field also masks every checksum that covers it (the IPv4
header checksum covers ``ip.ttl``; the TCP checksum covers ``ip.src``
through the pseudo-header; the outer UDP checksum covers the whole inner
frame), because masking the TTL alone would still fail on the checksum.

``field_diff`` compares two frames field by field; the failure messages of
``dataplane.testing`` and the ``diff`` command both print its result.
"""

from __future__ import annotations

import difflib
import struct
from dataclasses import dataclass
from typing import Iterable

VXLAN_PORTS = (4789, 1550)  # IANA VXLAN, and the SE-to-SE tunnel's default port
MIN_FRAME = 60  # an Ethernet frame shorter than this is padded on the wire


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
_TCP = (("tcp.srcport", 0, 0, 16, "int"), ("tcp.dstport", 2, 0, 16, "int"), ("tcp.seq", 4, 0, 32, "int"),
        ("tcp.ack", 8, 0, 32, "int"), ("tcp.hdr_len", 12, 0, 4, "int"), ("tcp.flags", 12, 4, 12, "flags"),
        ("tcp.window_size_value", 14, 0, 16, "int"), ("tcp.checksum", 16, 0, 16, "hex"),
        ("tcp.urgent_pointer", 18, 0, 16, "int"))
_UDP = (("udp.srcport", 0, 0, 16, "int"), ("udp.dstport", 2, 0, 16, "int"), ("udp.length", 4, 0, 16, "int"),
        ("udp.checksum", 6, 0, 16, "hex"))
_VXLAN = (("vxlan.flags", 0, 0, 8, "hex"), ("vxlan.vni", 4, 0, 24, "int"))

#: Scapy and shorthand spellings users type, mapped to the Wireshark names above.
ALIASES: dict[str, tuple[str, ...]] = {
    "eth.addr": ("eth.src", "eth.dst"), "ip.addr": ("ip.src", "ip.dst"),
    "ip.ihl": ("ip.hdr_len",), "ip.tos": ("ip.dsfield",), "ip.chksum": ("ip.checksum",),
    "ip.frag": ("ip.frag_offset",),
    "tcp.port": ("tcp.srcport", "tcp.dstport"), "tcp.sport": ("tcp.srcport",), "tcp.dport": ("tcp.dstport",),
    "tcp.dataofs": ("tcp.hdr_len",), "tcp.window": ("tcp.window_size_value",), "tcp.chksum": ("tcp.checksum",),
    "tcp.urgptr": ("tcp.urgent_pointer",),
    "udp.port": ("udp.srcport", "udp.dstport"), "udp.sport": ("udp.srcport",), "udp.dport": ("udp.dstport",),
    "udp.len": ("udp.length",), "udp.chksum": ("udp.checksum",),
    "arp.op": ("arp.opcode",), "arp.hwsrc": ("arp.src.hw_mac",), "arp.psrc": ("arp.src.proto_ipv4",),
    "arp.hwdst": ("arp.dst.hw_mac",), "arp.pdst": ("arp.dst.proto_ipv4",), "arp.hwtype": ("arp.hw.type",),
    "arp.ptype": ("arp.proto.type",), "arp.hwlen": ("arp.hw.size",), "arp.plen": ("arp.proto.size",),
}
_VARIABLE = ("ip.options", "tcp.options", "tcp.payload", "udp.payload", "ip.payload", "eth.padding",
             "eth.payload")
FIELD_NAMES: frozenset[str] = frozenset(
    [f[0] for table in (_ETH, _ARP, _IP, _TCP, _UDP, _VXLAN) for f in table] + list(_VARIABLE))


def _add(out: list[Field], table, base: int, prefix: str) -> None:
    for name, byte, bit, bits, kind in table:
        out.append(Field(prefix + name, (base + byte) * 8 + bit, bits, kind))


def _blob(out: list[Field], name: str, start: int, stop: int) -> None:
    if stop > start:
        out.append(Field(name, start * 8, (stop - start) * 8, "bytes"))


def layout(frame: bytes, base: int = 0, prefix: str = "", end: int | None = None) -> Layout:
    """Name every header field of ``frame`` (from byte ``base``) with its bit range."""
    end = len(frame) if end is None else end
    fields: list[Field] = []
    coverage: dict[str, list[tuple[int, int]]] = {}
    result = Layout(fields, coverage)
    if end - base < 14:
        _blob(fields, prefix + "eth.payload", base, end)
        return result
    _add(fields, _ETH, base, prefix)
    ethertype = struct.unpack_from("!H", frame, base + 12)[0]
    ip = base + 14
    if ethertype == 0x0806 and end - ip >= 28:
        _add(fields, _ARP, ip, prefix)
        _blob(fields, prefix + "eth.padding", ip + 28, end)
        return result
    if ethertype != 0x0800 or end - ip < 20 or frame[ip] >> 4 != 4:
        _blob(fields, prefix + "eth.payload", ip, end)
        return result
    _add(fields, _IP, ip, prefix)
    ihl = max(20, (frame[ip] & 0x0F) * 4)
    total = struct.unpack_from("!H", frame, ip + 2)[0]
    ip_end = min(end, ip + total) if total >= ihl else end
    _blob(fields, prefix + "ip.options", ip + 20, min(ip + ihl, ip_end))
    coverage[prefix + "ip.checksum"] = [(ip * 8, (ip + ihl) * 8)]
    l4 = ip + ihl
    proto = frame[ip + 9]
    fragment = struct.unpack_from("!H", frame, ip + 6)[0] & 0x1FFF
    # Pseudo-header: source, destination, protocol and the length derived from ip.len.
    pseudo = [((ip + 12) * 8, (ip + 20) * 8), ((ip + 9) * 8, (ip + 10) * 8), ((ip + 2) * 8, (ip + 4) * 8)]
    if proto == 6 and not fragment and ip_end - l4 >= 20:
        _add(fields, _TCP, l4, prefix)
        offset = max(20, (frame[l4 + 12] >> 4) * 4)
        _blob(fields, prefix + "tcp.options", l4 + 20, min(l4 + offset, ip_end))
        _blob(fields, prefix + "tcp.payload", l4 + offset, ip_end)
        coverage[prefix + "tcp.checksum"] = [(l4 * 8, ip_end * 8)] + pseudo
    elif proto == 17 and not fragment and ip_end - l4 >= 8:
        _add(fields, _UDP, l4, prefix)
        coverage[prefix + "udp.checksum"] = [(l4 * 8, ip_end * 8)] + pseudo
        dport = struct.unpack_from("!H", frame, l4 + 2)[0]
        if dport in VXLAN_PORTS and not prefix and ip_end - l4 >= 16 + 14:
            _add(fields, _VXLAN, l4 + 8, prefix)
            inner = layout(frame, l4 + 16, "inner.", ip_end)
            fields.extend(inner.fields)
            coverage.update(inner.coverage)
        else:
            _blob(fields, prefix + "udp.payload", l4 + 8, ip_end)
    else:
        _blob(fields, prefix + "ip.payload", l4, ip_end)
    _blob(fields, prefix + "eth.padding", ip_end, end)
    return result


def resolve(names: Iterable[str]) -> set[str]:
    """Map user spellings to field names; raise ValueError naming an unknown one."""
    out: set[str] = set()
    for name in names:
        inner = name.startswith("inner.")
        bare = name[6:] if inner else name
        targets = ALIASES.get(bare, (bare,))
        for target in targets:
            if target not in FIELD_NAMES:
                known = sorted(FIELD_NAMES | set(ALIASES))
                close = difflib.get_close_matches(bare, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; known fields: {', '.join(known)}"
                raise ValueError(f"unknown field {name!r}{hint}")
            out.add("inner." + target if inner else target)
    return out


def _selected(field_name: str, names: set[str]) -> bool:
    # A bare name applies to every occurrence (outer and tunnelled), as a display filter does.
    return field_name in names or (field_name.startswith("inner.") and field_name[6:] in names)


class Mask:
    """Which bits of an expected frame must match (PTF ``Mask``, by field name)."""

    def __init__(self, expected, ignore: Iterable[str] = (), ignore_extra_bytes: bool = False):
        self.expected = bytes(expected)
        self.ignore_extra_bytes = ignore_extra_bytes
        self.layout = layout(self.expected)
        self._bits = len(self.expected) * 8
        self._care = (1 << self._bits) - 1
        self.ignore(*ignore)

    def ignore(self, *names: str) -> "Mask":
        """Mark fields don't-care by name; the checksums covering them follow."""
        wanted = resolve(names)
        for field in self.layout.fields:
            if _selected(field.name, wanted):
                self.ignore_bits(field.bit_off, field.bits)
        return self

    def ignore_bits(self, bit_off: int, bits: int) -> "Mask":
        """Mark ``bits`` bits from ``bit_off`` don't-care (PTF ``set_do_not_care``)."""
        self._clear(bit_off, bits)
        changed = True
        while changed:  # a checksum masked here may be covered by an outer one
            changed = False
            by_name = self.layout.by_name()
            for name, ranges in self.layout.coverage.items():
                field = by_name[name]
                if self._cares(field) and any(self._masked_within(a, b) for a, b in ranges):
                    self._clear(field.bit_off, field.bits)
                    changed = True
        return self

    def _clear(self, bit_off: int, bits: int) -> None:
        bits = max(0, min(bits, self._bits - bit_off))
        if bits:
            self._care &= ~(((1 << bits) - 1) << (self._bits - bit_off - bits))

    def _range_bits(self, start: int, stop: int) -> int:
        stop = min(stop, self._bits)
        return ((1 << (stop - start)) - 1) << (self._bits - stop) if stop > start else 0

    def _cares(self, field: Field) -> bool:
        return bool(self._care & self._range_bits(field.bit_off, field.end))

    def _masked_within(self, start: int, stop: int) -> bool:
        span = self._range_bits(start, stop)
        return (self._care & span) != span

    @property
    def ignored(self) -> list[str]:
        """Names of the fields wholly don't-care, in frame order (checksums included)."""
        return [f.name for f in self.layout.fields if not self._cares(f)]

    def matches(self, frame: bytes) -> bool:
        exp, n = self.expected, len(self.expected)
        if len(frame) != n:
            # PTF's rule: a short expected frame matches its padded self; else lengths must agree.
            if not (len(frame) > n and (self.ignore_extra_bytes or len(frame) <= MIN_FRAME)):
                return False
            frame = frame[:n]
        care = self._care
        return int.from_bytes(frame, "big") & care == int.from_bytes(exp, "big") & care

    def differences(self, frame: bytes) -> list["FieldDiff"]:
        return field_diff(self.expected, frame, set(self.ignored), ignore_extra_bytes=self.ignore_extra_bytes)


# -- field-level differences ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class FieldDiff:
    name: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.name}: expected {self.expected}, got {self.got}"


_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "AE")


def format_value(field: Field, value) -> str:
    if field.kind == "mac":
        return value.hex(":")
    if field.kind == "ip":
        return ".".join(str(b) for b in value)
    if field.kind == "hex":
        return f"0x{value:0{(field.bits + 3) // 4}x}"
    if field.kind == "flags":
        if field.name.endswith("tcp.flags"):
            names = [n for i, n in enumerate(_TCP_FLAGS) if value >> i & 1]
        else:
            names = [n for i, n in ((1, "DF"), (0, "MF")) if value >> i & 1]
        return f"0x{value:0{(field.bits + 3) // 4}x} ({', '.join(names) or 'none'})"
    if field.kind == "bytes":
        return _bytes_text(value)
    return str(value)


def _bytes_text(value: bytes) -> str:
    if len(value) <= 16:
        return value.hex() or "(none)"
    return f"{len(value)} bytes {value[:12]!r}..."


def _bytes_diff(name: str, a: bytes, b: bytes) -> FieldDiff:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if len(a) <= 16 and len(b) <= 16:
        return FieldDiff(name, a.hex() or "(none)", b.hex() or "(none)")
    where = f" (first difference at byte {at})"
    return FieldDiff(name, f"{len(a)} bytes {a[at:at + 12]!r}", f"{len(b)} bytes {b[at:at + 12]!r}{where}")


def field_diff(expected: bytes, got: bytes, ignore: set[str] | Iterable[str] = (),
               ignore_extra_bytes: bool = False) -> list[FieldDiff]:
    """Return the fields (by name) whose values differ, skipping ``ignore`` (resolved names)."""
    ignore = set(ignore)
    a, b = layout(expected).by_name(), layout(got).by_name()
    out: list[FieldDiff] = []
    for name, field in a.items():
        if _selected(name, ignore):
            continue
        other = b.get(name)
        if other is None:
            out.append(FieldDiff(name, format_value(field, field.value(expected)), "(absent)"))
            continue
        va, vb = field.value(expected), other.value(got)
        if va == vb:
            continue
        if field.kind == "bytes":
            if name.endswith("eth.padding") and (ignore_extra_bytes or len(expected) < MIN_FRAME):
                continue
            out.append(_bytes_diff(name, va, vb))
        else:
            out.append(FieldDiff(name, format_value(field, va), format_value(other, vb)))
    for name, field in b.items():
        if name not in a and not _selected(name, ignore):
            if name.endswith("eth.padding") and (ignore_extra_bytes or len(expected) < MIN_FRAME):
                continue
            out.append(FieldDiff(name, "(absent)", format_value(field, field.value(got))))
    return out
