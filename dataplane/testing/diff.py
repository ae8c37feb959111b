"""
Semantic diff of two captures: ``dataplane diff A B [--ignore FIELDS]``.

This module owns capture-to-capture comparison.  Frames are aligned per
interface (segment) by order, so a frame added on the backend does not
shift every frontend comparison, and each pair is compared field by field
with the field table of ``dataplane.masks`` (Wireshark names), plus two
pseudo-fields: ``frame.comment`` (the decision comment) and ``frame.time``
(virtual time since the capture's first frame).  Ignoring a field also
ignores the checksums that cover it, as masks do.

Both files are read in lock step, keeping only frames not yet paired, so
memory follows the skew between the captures, not their length.  The
golden-capture check of the pytest plugin uses the same comparison.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Iterable

from ..wire.capture_reader import Record, open_capture
from ..wire.masks import FieldDiff, Mask, field_diff, resolve

PSEUDO_FIELDS = ("frame.comment", "frame.time")


@dataclass(slots=True)
class FrameDifference:
    interface: str
    position: int  # 1-based index among this interface's frames
    number_a: int
    number_b: int
    fields: list[FieldDiff]
    comment_a: str
    comment_b: str

    def format(self) -> str:
        head = f"{self.interface} frame {self.position} (#{self.number_a} in A, #{self.number_b} in B)"
        lines = [f"{head}: {_pair(self.fields[0])}"]
        lines += [f"    {_pair(d)}" for d in self.fields[1:]]
        if not any(d.name == "frame.comment" for d in self.fields):
            lines.append(f"    comment: {self.comment_a}")
        return "\n".join(lines)


def _pair(d: FieldDiff) -> str:
    return f"{d.name}: {d.expected} != {d.got}"


@dataclass
class DiffReport:
    differences: list[FrameDifference] = field(default_factory=list)  # the first ``limit``
    differing: Counter = field(default_factory=Counter)  # interface -> differing frames
    frames_a: Counter = field(default_factory=Counter)
    frames_b: Counter = field(default_factory=Counter)
    ignored: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return not self.differing and self.frames_a == self.frames_b

    def format(self) -> str:
        lines = [d.format() for d in self.differences]
        shown = len(self.differences)
        total = sum(self.differing.values())
        if total > shown:
            lines.append(f"... {total - shown} more differing frames not shown (--limit)")
        for iface in sorted(set(self.frames_a) | set(self.frames_b)):
            a, b = self.frames_a[iface], self.frames_b[iface]
            if a != b:
                more, count = ("A", a - b) if a > b else ("B", b - a)
                lines.append(f"{iface}: {more} has {count} more frame{'s' if count != 1 else ''} "
                             f"({a} in A, {b} in B); the extra frames start at frame {min(a, b) + 1}")
        ignoring = f", ignoring {', '.join(self.ignored)}" if self.ignored else ""
        if self.same:
            lines.append(f"same: {sum(self.frames_a.values())} frames on "
                         f"{len(self.frames_a)} interfaces{ignoring}")
        else:
            per = ", ".join(f"{iface} {self.differing[iface]} of {min(self.frames_a[iface], self.frames_b[iface])}"
                            for iface in sorted(self.differing))
            lines.append(f"different: {per or 'frame counts differ'}{ignoring}")
        return "\n".join(lines)


def _interface(record: Record) -> str:
    return record.interface_name or f"interface {record.interface}"


def diff_captures(a: str | os.PathLike, b: str | os.PathLike, ignore: Iterable[str] = (),
                  limit: int = 10) -> DiffReport:
    """Compare two capture files per interface; raise CaptureError if one is unreadable, ValueError on a bad field."""
    ignore = tuple(ignore)
    pseudo = {name for name in ignore if name in PSEUDO_FIELDS}
    header_names = [name for name in ignore if name not in PSEUDO_FIELDS]
    resolve(header_names)  # fail early on a typo
    report = DiffReport(ignored=ignore)
    pending_a: dict[str, deque[Record]] = defaultdict(deque)
    pending_b: dict[str, deque[Record]] = defaultdict(deque)
    start = {}
    for ra, rb in zip_longest(open_capture(a), open_capture(b)):
        touched = set()
        for record, pending, counts, side in ((ra, pending_a, report.frames_a, "A"),
                                              (rb, pending_b, report.frames_b, "B")):
            if record is not None:
                iface = _interface(record)
                start.setdefault(side, record.time_ns)
                pending[iface].append(record)
                counts[iface] += 1
                touched.add(iface)
        for iface in touched:
            qa, qb = pending_a[iface], pending_b[iface]
            while qa and qb:
                position = report.frames_a[iface] - len(qa) + 1
                x, y = qa.popleft(), qb.popleft()
                diffs = _compare(x, y, header_names, pseudo, start["A"], start["B"])
                if diffs:
                    report.differing[iface] += 1
                    if len(report.differences) < limit:
                        report.differences.append(FrameDifference(iface, position, x.number, y.number, diffs,
                                                                  x.comment or "", y.comment or ""))
    return report


def _compare(x: Record, y: Record, names: list[str], pseudo: set[str], t0a: int, t0b: int) -> list[FieldDiff]:
    diffs: list[FieldDiff] = []
    if x.data != y.data:
        ignored: set[str] = set()
        if names:
            ignored = set(Mask(x.data, names).ignored) | set(Mask(y.data, names).ignored)
        diffs = field_diff(x.data, y.data, ignored)
        if not diffs and len(x.data) != len(y.data) and not ignored:
            diffs = [FieldDiff("frame.len", str(len(x.data)), str(len(y.data)))]
    if "frame.time" not in pseudo and x.time_ns - t0a != y.time_ns - t0b:
        diffs.append(FieldDiff("frame.time", f"{(x.time_ns - t0a) / 1e9:.9f} s", f"{(y.time_ns - t0b) / 1e9:.9f} s"))
    if "frame.comment" not in pseudo and (x.comment or "") != (y.comment or ""):
        diffs.append(FieldDiff("frame.comment", repr(x.comment or ""), repr(y.comment or "")))
    return diffs
