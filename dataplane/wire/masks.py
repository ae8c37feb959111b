"""
Masks of don't-care fields over a frame's bytes, and field-by-field differences.

Fields are named as ``fields.layout`` names them: Wireshark display-filter
names (``eth.src``, ``ip.ttl``, ``ipv6.hlim``, ``tcp.seq``,
``icmpv6.nd.na.flag.o``...), with ``inner.`` inside a VXLAN tunnel.

``Mask`` is PTF's ``Mask`` in those terms: a care-bit per bit of the
expected frame, so matching is two integer ANDs, not a dissection.  Unlike
PTF, masking a field also masks every checksum that covers it (the IPv4
header checksum covers ``ip.ttl``; the TCP checksum covers ``ip.src`` and
``ipv6.src`` through the pseudo-header; the outer UDP checksum covers the
whole inner frame), because masking the TTL alone would still fail on the
checksum.  IPv6 has no header checksum, so masking ``ipv6.hlim`` masks
nothing else.

``field_diff`` compares two frames field by field; the failure messages of
``dataplane.testing`` and the ``diff`` command both print its result.
"""

from __future__ import annotations

import difflib
import socket
from dataclasses import dataclass
from typing import Iterable

from .fields import ALIASES, FIELD_NAMES, VXLAN_PORTS, Field, Layout, layout

__all__ = ["ALIASES", "FIELD_NAMES", "MIN_FRAME", "VXLAN_PORTS", "Field", "FieldDiff", "Layout", "Mask",
           "field_diff", "format_value", "layout", "resolve"]

MIN_FRAME = 60  # an Ethernet frame shorter than this is padded on the wire

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
        return socket.inet_ntop(socket.AF_INET6 if len(value) == 16 else socket.AF_INET, value)
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
    """Return the fields (by name) whose values differ, skipping ``ignore`` (resolved names).

    A name that occurs more than once (ND options) is compared occurrence by
    occurrence; the second and later are reported as ``name[2]``...
    """
    ignore = set(ignore)
    a, b = _occurrences(expected), _occurrences(got)
    padding_optional = ignore_extra_bytes or len(expected) < MIN_FRAME
    out: list[FieldDiff] = []
    for label, field in a.items():
        if _selected(field.name, ignore):
            continue
        other = b.get(label)
        if other is None:
            out.append(FieldDiff(label, format_value(field, field.value(expected)), "(absent)"))
            continue
        va, vb = field.value(expected), other.value(got)
        if va == vb:
            continue
        if field.kind == "bytes":
            if field.name.endswith("eth.padding") and padding_optional:
                continue
            out.append(_bytes_diff(label, va, vb))
        else:
            out.append(FieldDiff(label, format_value(field, va), format_value(other, vb)))
    for label, field in b.items():
        if label not in a and not _selected(field.name, ignore):
            if field.name.endswith("eth.padding") and padding_optional:
                continue
            out.append(FieldDiff(label, "(absent)", format_value(field, field.value(got))))
    return out


def _occurrences(frame: bytes) -> dict[str, Field]:
    """The frame's fields by label: the name, then ``name[2]``, ``name[3]``... for repeats."""
    seen: dict[str, int] = {}
    out: dict[str, Field] = {}
    for field in layout(frame).fields:
        count = seen[field.name] = seen.get(field.name, 0) + 1
        out[field.name if count == 1 else f"{field.name}[{count}]"] = field
    return out
