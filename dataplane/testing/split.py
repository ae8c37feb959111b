"""
Split a capture into one file per hop, per NIC or per SE: ``dataplane split``.

This module owns who-is-who in a capture and the split itself.  A *hop* is
one interface (segment) and one pair of MAC addresses, in either direction,
as Wireshark's Ethernet conversations count them (a broadcast or multicast
destination is an end of its own): a file that holds one hop shows each TCP
segment once, so Wireshark's TCP analysis of it is sound (README, "Reading
a capture in Wireshark").  A *NIC* file holds what one NIC sent and
received on its segment plus every broadcast and multicast there, as
tcpdump on that interface would show.  An *SE* file holds all of one
Service Engine's NICs, like the product's per-SE packet capture.

Who is who comes from the capture alone: its name-resolution blocks name
the addresses (``emulation.network.write_names``: an SE's frontend address
is named ``se-1``, its other NICs ``se-1-backend``), and every emulated MAC
spells its NIC's IPv4 address (``02:<nic index>:<ipv4>``,
``nodes.host.mac_for``), or for an IPv6-only NIC carries a CRC-32 of its
IPv6 address (``06:<nic index>:<crc>``).  A MAC that spells no named address is labelled
with its own text.  The files keep the frames' bytes, timestamps (ns) and
comments, the section comment, the interfaces' names and descriptions, and
every name; they do not keep interface statistics (they would count frames
the file does not hold).

The capture is read twice, streaming: a survey (names, interfaces, the NICs
on each segment) and the split.  Files are written under temporary names
and renamed at the end, so a failed split leaves no partial file behind.
"""

from __future__ import annotations

import os
import zlib
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from .. import __version__
from ..files import temp_output_path
from ..wire.capture_reader import LINKTYPE_ETHERNET, CaptureInfo, Record, open_capture
from ..wire.frames import mac_text
from ..wire.ipv6 import ipv6_bytes
from ..wire.pcapng import PcapngWriter

BY = ("hop", "nic", "se")
#: More files than this would exhaust file descriptors; a capture with that many hops is not the emulator's.
MAX_FILES = 500
BROADCAST = b"\xff" * 6

Iface = tuple[int, int]  # (section index, interface id in that section)


class SplitError(Exception):
    """The capture cannot be split as asked (one line, naming the file)."""


@dataclass
class Part:
    """One output file: what it holds and the input's frame numbers in it, in order."""
    filename: str
    description: str
    numbers: array = field(default_factory=lambda: array("L"))

    @property
    def frames(self) -> int:
        return len(self.numbers)


@dataclass
class Split:
    """What ``split_capture`` wrote: the files in order, and frames that fit in none, by reason."""
    out_dir: Path
    by: str
    parts: list[Part]
    unsplit: dict[str, int]

    def path(self, part: Part) -> Path:
        return self.out_dir / part.filename

    def format(self) -> str:
        lines = [f"{self.path(p)}: {p.description} ({p.frames} frame{'s' if p.frames != 1 else ''})"
                 for p in self.parts]
        lines += [f"in no file: {count} frame{'s' if count != 1 else ''} {reason}"
                  for reason, count in sorted(self.unsplit.items())]
        return "\n".join(lines)


# -- who is who --------------------------------------------------------------------------------------------

class Directory:
    """Labels for MACs and the nodes that own them, from the capture's name-resolution blocks."""

    def __init__(self, names: dict[str, list[str]]):
        self.by_ip = {address: labels[0] for address, labels in names.items() if labels}
        #: An IPv6-only NIC's MAC carries a CRC-32 of its address (``wire.ipv6.mac_for_ipv6``).
        self.by_crc6 = {zlib.crc32(ipv6_bytes(address)).to_bytes(4, "big"): name
                        for address, name in self.by_ip.items() if ":" in address}
        known = set(self.by_ip.values())
        #: NIC name -> node: "se-1-backend" belongs to "se-1" because "se-1" is itself a name.
        self.node_of_name = {name: owner(name, known) for name in known}
        nics_per_node: dict[str, int] = {}
        for node in self.node_of_name.values():
            nics_per_node[node] = nics_per_node.get(node, 0) + 1
        #: write_names names a second NIC ("<se>-backend") for SEs only.
        self.service_engines = sorted((n for n, count in nics_per_node.items() if count > 1), key=natural)
        self._cache: dict[bytes, tuple[str, str | None]] = {}

    def nic(self, mac: bytes) -> tuple[str, str | None]:
        """(a label for the NIC, the node that owns it or None) for a unicast MAC."""
        found = self._cache.get(mac)
        if found is None:
            if mac[0] == 0x02:
                name = self.by_ip.get(".".join(map(str, mac[2:6])))
            else:
                name = self.by_crc6.get(mac[2:6]) if mac[0] == 0x06 else None
            found = (name, self.node_of_name[name]) if name else (mac_text(mac), None)
            self._cache[mac] = found
        return found

    def label(self, mac: bytes) -> str:
        """The node's name for a NIC ("se-1" for se-1's backend NIC too: a file name says the segment)."""
        if mac[0] & 1:
            return "broadcast" if mac == BROADCAST else f"multicast {mac_text(mac)}"
        name, node = self.nic(mac)
        return node or name

    def hop(self, frame: bytes) -> tuple[bytes, bytes]:
        """The hop's two ends, in a fixed order whichever way the frame goes."""
        dst, src = frame[0:6], frame[6:12]
        return (src, dst) if src <= dst else (dst, src)


def owner(name: str, known: set[str]) -> str:
    """The longest other name that ``name`` extends with "-<nic>", else ``name`` itself."""
    cut = name.rfind("-")
    while cut > 0:
        if name[:cut] in known:
            return name[:cut]
        cut = name.rfind("-", 0, cut)
    return name


def natural(text: str) -> list:
    """Sort key that puts se-2 before se-10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


# -- the survey --------------------------------------------------------------------------------------------

@dataclass
class Survey:
    """Pass 1: the capture's metadata, who is who, and the unicast NICs seen on each interface."""
    info: CaptureInfo
    directory: Directory
    nics_on: dict[Iface, dict[bytes, None]]  # insertion-ordered sets

    def iface_name(self, iface: Iface) -> str:
        section, index = iface
        return self.info.sections[section].interfaces[index].name or f"interface-{index}"


def survey(path) -> Survey:
    info = CaptureInfo()
    nics_on: dict[Iface, dict[bytes, None]] = {}
    for record in open_capture(path, info):
        if record.linktype == LINKTYPE_ETHERNET and len(record.data) >= 14:
            on = nics_on.setdefault((len(info.sections) - 1, record.interface), {})
            for mac in (record.data[6:12], record.data[0:6]):
                if not mac[0] & 1:
                    on[mac] = None
    return Survey(info, Directory(info.names), nics_on)


# -- which files a frame goes to -----------------------------------------------------------------------------

Key = tuple
Router = Callable[[bytes, Iface], list[tuple[Key, str, str]]]  # -> [(key, description, filename)]


def router_for(by: str, known: Survey) -> Router:
    directory = known.directory
    if by == "hop":
        def hop(frame: bytes, iface: Iface):
            name = known.iface_name(iface)
            first, second = directory.label(frame[6:12]), directory.label(frame[0:6])
            if not frame[0] & 1 and natural(second) < natural(first):  # one name per hop, whichever way
                first, second = second, first
            return [((iface, directory.hop(frame)), f"{name}: {first} <-> {second}",
                     f"{_safe(name)}_{_safe(first)}--{_safe(second)}.pcapng")]
        return hop

    if by == "nic":
        def nic(frame: bytes, iface: Iface):
            macs = list(known.nics_on[iface]) if frame[0] & 1 else _unicast_ends(frame)
            name = known.iface_name(iface)
            routes = []
            for mac in macs:
                label, node = directory.nic(mac)
                filename = f"{_safe(node)}.{_safe(name)}.pcapng" if node else f"{_safe(name)}_{_safe(label)}.pcapng"
                routes.append(((iface, mac), f"{name}: {node or label}'s NIC ({mac_text(mac)})", filename))
            return routes
        return nic

    ses = set(directory.service_engines)

    def se(frame: bytes, iface: Iface):
        macs = known.nics_on[iface] if frame[0] & 1 else _unicast_ends(frame)
        owners = {directory.nic(mac)[1] for mac in macs} & ses
        return [(("se", node), f"{node}: all its NICs", f"{_safe(node)}.pcapng")
                for node in sorted(owners, key=natural)]
    return se


def _unicast_ends(frame: bytes) -> list[bytes]:
    src, dst = frame[6:12], frame[0:6]
    return [src] if src == dst else [src, dst]


def _why_not(record: Record) -> str | None:
    if record.linktype != LINKTYPE_ETHERNET:
        return f"not Ethernet (linktype {record.linktype})"
    if len(record.data) < 14:
        return "shorter than an Ethernet header"
    return None


# -- the split ---------------------------------------------------------------------------------------------

def split_capture(path: str | os.PathLike, by: str, out_dir: str | os.PathLike,
                  known: Survey | None = None) -> Split:
    """Write one pcapng per hop, NIC or SE of ``path`` into ``out_dir``; return what was written.

    Raises CaptureError for a file that is not a capture or is cut short, SplitError when
    it would take more than ``MAX_FILES`` files.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}, not {by!r}")
    known = known or survey(path)
    route = router_for(by, known)
    _refuse_too_many(path, by, known)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writers = _Writers(out, known, comment=f"dataplane split --by {by} of {os.path.basename(os.fspath(path))}")
    unsplit: dict[str, int] = {}
    try:
        scratch = CaptureInfo()  # tells which section each record is in
        for record in open_capture(path, scratch):
            reason = _why_not(record)
            iface = (len(scratch.sections) - 1, record.interface)
            routes = route(record.data, iface) if reason is None else ()
            if reason is None and not routes:
                reason = "that reach no SE" if by == "se" else "that reach no NIC"
            if reason:
                unsplit[reason] = unsplit.get(reason, 0) + 1
                continue
            for key, description, filename in routes:
                writers.write(key, description, filename, iface, record)
        writers.finish()
    finally:
        writers.discard()
    return Split(out, by, writers.parts(), unsplit)


def _refuse_too_many(path, by: str, known: Survey) -> None:
    if by == "hop":
        count = sum(len(nics) * (len(nics) - 1) // 2 for nics in known.nics_on.values())
    elif by == "nic":
        count = sum(len(nics) for nics in known.nics_on.values())
    else:
        count = len(known.directory.service_engines)
    if count > MAX_FILES:  # an upper bound for hops; exact for NICs and SEs
        raise SplitError(f"{os.fspath(path)}: splitting by {by} could take up to {count} files "
                         f"(at most {MAX_FILES}); this does not look like one of the emulator's captures")


class _Writers:
    """The open output files, created as their first frame comes; renamed into place only by ``finish``."""

    def __init__(self, out: Path, known: Survey, comment: str):
        self.out = out
        self.known = known
        self.comment = comment
        self.open: dict[Key, tuple[Part, PcapngWriter, dict[Iface, int], Path, BinaryIO]] = {}
        self.taken: set[str] = set()

    def write(self, key: Key, description: str, filename: str, iface: Iface, record: Record) -> None:
        entry = self.open.get(key)
        if entry is None:
            entry = self._create(key, description, filename)
        part, writer, ids, _, _ = entry
        out_id = ids.get(iface)
        if out_id is None:
            interface = self.known.info.sections[iface[0]].interfaces[iface[1]]
            out_id = ids[iface] = writer.add_interface(interface.name or f"interface-{iface[1]}",
                                                       interface.description or "", interface.linktype,
                                                       interface.snaplen)
        writer.write_frame(out_id, record.time_ns, record.data, record.comment)
        part.numbers.append(record.number)

    def _create(self, key: Key, description: str, filename: str):
        stem, _, ext = filename.rpartition(".")
        count = 1
        while filename in self.taken:  # two keys whose labels read the same
            count += 1
            filename = f"{stem}-{count}.{ext}"
        self.taken.add(filename)
        temp = temp_output_path(self.out, filename)
        handle = open(temp, "wb", buffering=1 << 16)  # small buffers: up to MAX_FILES are open at once
        section = self.known.info.sections[0]
        comment = "\n".join(filter(None, [section.comment, f"{self.comment}: {description}"]))
        writer = PcapngWriter(handle, application=f"dataplane {__version__}", comment=comment)
        names = self.known.info.names
        if names:
            writer.add_names(names)
        entry = self.open[key] = (Part(filename, description), writer, {}, temp, handle)
        return entry

    def finish(self) -> None:
        for _, writer, _, _, handle in self.open.values():
            writer.close()
            handle.close()
        for part, _, _, temp, _ in self.open.values():
            os.replace(temp, self.out / part.filename)

    def discard(self) -> None:
        """Remove what ``finish`` did not rename (all of it, after an error)."""
        for _, _, _, temp, handle in self.open.values():
            handle.close()
            if temp.exists():
                temp.unlink()

    def parts(self) -> list[Part]:
        return sorted((part for part, *_ in self.open.values()), key=lambda part: natural(part.filename))
