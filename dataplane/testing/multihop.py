"""
Tell the multi-hop artefact apart from real defects in ``dataplane check``'s findings.

One TCP segment seen on two hops of one capture (router -> primary, then
primary -> secondary, or once inside the SE-to-SE tunnel and once relayed
to the router) is a retransmission to Wireshark 4.0, whose TCP conversation
key ignores the interface and the MACs; a segment that is part of a larger
PDU then shows as "New fragment overlaps old data", an expert error.  This
module owns that diagnosis: a finding is *seen again on a later hop* when
its frame carries a TCP segment (the inner one, inside VXLAN) that an
earlier frame carried on another hop (interface and MAC pair, as in
``split``).  The diagnosis is then checked: the hops that hold those frames
are split into one file each (``split --by hop``) and each goes through the
gate again; ``dataplane check`` exits 0 only if every finding is of that
kind and those files are clean.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, replace

from ..wire.capture_reader import LINKTYPE_ETHERNET, CaptureError, CaptureInfo, open_capture
from ..wire.frames import Malformed, vxlan_inner
from ..wire.ipv6 import FlowView6
from ..wire.masks import VXLAN_PORTS
from .check import SEEN_AGAIN, Finding, check_capture
from .split import Directory, split_capture, survey

__all__ = ["SEEN_AGAIN", "PerHop", "explain", "tcp_segment_key"]
_ETH, _VXLAN = 14, 8


def tcp_segment_key(frame: bytes, depth: int = 0) -> bytes | None:
    """What makes two copies of one TCP segment the same: addresses, ports, numbers, flags, payload.

    TTL (hop limit), IP ID and checksums are left out: they may change from hop to hop.  Inside
    VXLAN the inner segment counts.
    """
    if frame[12:14] == b"\x86\xdd":
        return _ipv6_segment_key(frame, depth)
    if len(frame) < _ETH + 20 or frame[12:14] != b"\x08\x00" or frame[_ETH] >> 4 != 4:
        return None
    ihl = (frame[_ETH] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, _ETH + 2)[0]
    l4, end = _ETH + ihl, min(len(frame), _ETH + total)
    proto = frame[_ETH + 9]
    if proto == 6 and end - l4 >= 20:
        return frame[_ETH + 12:_ETH + 20] + frame[l4:l4 + 14] + frame[l4 + (frame[l4 + 12] >> 4) * 4:end]
    if proto == 17 and depth == 0 and end - l4 >= 8 + _VXLAN + _ETH:
        if struct.unpack_from("!H", frame, l4 + 2)[0] in VXLAN_PORTS:
            return tcp_segment_key(frame[l4 + 8 + _VXLAN:end], depth + 1)
    return None


def _ipv6_segment_key(frame: bytes, depth: int) -> bytes | None:
    try:
        view = FlowView6(frame)
    except Malformed:
        return None
    if view.fragment:
        return None
    if view.proto == 6:
        return view.src + view.dst + frame[view.l4:view.l4 + 14] + view.payload(frame)
    if view.proto == 17 and depth == 0 and view.dport in VXLAN_PORTS:
        inner = vxlan_inner(frame, view)
        return tcp_segment_key(inner, depth + 1) if inner is not None else None
    return None


@dataclass(frozen=True)
class PerHop:
    """The per-hop re-check: which hop files were gated, and what they found (mapped to the capture's frames)."""
    hops: list[str]
    findings: list[Finding]

    @property
    def clean(self) -> bool:
        return not self.findings


def explain(path: str | os.PathLike, findings: list[Finding]) -> tuple[list[Finding], PerHop | None]:
    """Label the findings that are the multi-hop artefact; re-check their hops one file each.

    Returns the findings (labelled ones carry ``seen_before``) and the per-hop check, which is
    None unless every finding is labelled.
    """
    numbers = {f.number for f in findings if f.number}
    if not numbers:
        return findings, None
    try:
        known = survey(path)
    except CaptureError:  # cut short: the check has already said so, and that is a finding of its own
        return findings, None
    keys, hops = _keys_and_hops(path, numbers, known.directory)
    earlier = _earlier_sightings(path, keys, hops, known.directory)
    labelled = [replace(f, seen_before=earlier[f.number]) if f.number in earlier else f for f in findings]
    if any(not f.seen_before for f in labelled):
        return labelled, None
    return labelled, _recheck(path, known, numbers | set(earlier.values()))


def _hop(record, section: int, directory: Directory):
    return (section, record.interface, directory.hop(record.data))


def _keys_and_hops(path, numbers: set[int], directory: Directory):
    keys, hops = {}, {}
    info = CaptureInfo()
    for record in open_capture(path, info):
        if record.number in numbers and record.linktype == LINKTYPE_ETHERNET and len(record.data) >= 14:
            keys[record.number] = tcp_segment_key(record.data)
            hops[record.number] = _hop(record, len(info.sections) - 1, directory)
    return keys, hops


def _earlier_sightings(path, keys: dict, hops: dict, directory: Directory) -> dict[int, int]:
    """finding's frame number -> the first earlier frame that carried its segment on another hop."""
    wanted: dict[bytes, list[int]] = {}
    for number, key in keys.items():
        if key is not None:
            wanted.setdefault(key, []).append(number)
    last = max(keys, default=0)
    found: dict[int, int] = {}
    info = CaptureInfo()
    for record in open_capture(path, info):
        if record.number >= last:
            break
        if record.linktype != LINKTYPE_ETHERNET or len(record.data) < 14:
            continue
        key = tcp_segment_key(record.data)
        if key is None or key not in wanted:
            continue
        hop = _hop(record, len(info.sections) - 1, directory)
        for number in wanted[key]:
            if record.number < number and hop != hops[number] and number not in found:
                found[number] = record.number
    return found


def _recheck(path, known, involved: set[int]) -> PerHop:
    """Gate each one-hop file that holds a labelled frame or its earlier sighting."""
    with tempfile.TemporaryDirectory(prefix="dataplane-check-") as folder:
        split = split_capture(path, "hop", folder, known=known)
        gated, findings = [], []
        for part in split.parts:
            if not any(number in involved for number in part.numbers):
                continue
            gated.append(part.description)
            for finding in check_capture(split.path(part), use_tshark=True):
                number = part.numbers[finding.number - 1] if finding.number else 0
                findings.append(replace(finding, number=number,
                                        message=f"{finding.message} (in the one-hop file {part.description})"))
        return PerHop(gated, sorted(findings, key=lambda f: f.number))
