"""
SE-to-SE data-plane heartbeats: frames of their own, and the misses that make an SE report a peer.

As the product does it (docs/design.md, B14): the primary of a virtual
service sends a heartbeat to every other SE of the VS (members, draining
SEs, the standby) every ``dp_hb_frequency``, and each answers.  The primary
counts, per peer, the intervals that ended without the answer; a peer counts
the intervals that ended without a heartbeat from the primary.  After
``dp_hb_timeout_count`` misses in a row the SE reports the silent one to the
controller (``Runtime.control.suspect``), which declares it failed.

Wire format: an Ethernet frame of its own EtherType, 0x88B5 (IEEE 802
"local experimental EtherType 1"), unicast from SE to SE on the frontend;
all integers big-endian::

    offset size field
    0      4    magic b"DPHB"
    4      1    version, 1
    5      1    type: 1 heartbeat (primary to peer), 2 answer
    6      2    VNI of the virtual service
    8      4    sequence number (the primary's, increasing; an answer echoes it)

Wireshark shows it as data of EtherType 0x88b5; the frame comment says what
it is.  With ``dp_hb_in_capture = false`` the frames still cross the segment
but are left out of the capture.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clock import seconds
from ..l2 import Nic
from ..scenario import SeGroup
from ..wire.frames import ethernet
from .context import Runtime, ServedService

ETHERTYPE_HEARTBEAT = 0x88B5
MAGIC = b"DPHB"
VERSION = 1
HEARTBEAT, ANSWER = 1, 2
_MESSAGE = struct.Struct("!4sBBHI")


def encode(kind: int, vni: int, sequence: int) -> bytes:
    return _MESSAGE.pack(MAGIC, VERSION, kind, vni & 0xFFFF, sequence & 0xFFFFFFFF)


def decode(payload: bytes) -> tuple[int, int, int] | None:
    """(type, VNI, sequence), or None for anything that is not a heartbeat message."""
    if len(payload) < _MESSAGE.size:
        return None
    magic, version, kind, vni, sequence = _MESSAGE.unpack_from(payload)
    if magic != MAGIC or version != VERSION or kind not in (HEARTBEAT, ANSWER):
        return None
    return kind, vni, sequence


class HeartbeatSe(Protocol):
    """What the heartbeat agent needs of its Service Engine."""

    name: str
    alive: bool
    runtime: Runtime
    frontend: Nic
    services: list[ServedService]

    def peer(self, name: str) -> Any: ...


@dataclass(slots=True)
class _Watch:
    """One silent-or-not SE this one watches."""

    misses: int = 0
    answered: bool = True  # the last heartbeat sent to it was answered (a primary's view)
    reported: bool = False


@dataclass(slots=True)
class _Link:
    """This SE's heartbeat state in one virtual service: whom it watches, its sequence as primary."""

    watching: dict[str, _Watch] = field(default_factory=dict)
    sequence: int = 0
    heard_primary: bool = False


class HeartbeatAgent:
    def __init__(self, se: HeartbeatSe, group: SeGroup):
        self.se = se
        self.sim = se.runtime.clock
        self.interval_ns = seconds(group.dp_hb_frequency)
        self.limit = group.dp_hb_timeout_count
        self.captured = group.dp_hb_in_capture
        #: By the VNI of the virtual service.
        self.links: dict[int, _Link] = {}
        self.running = False

    def start(self) -> None:
        if not self.running:
            self.running = True
            self.sim.every(self.interval_ns, self._tick)

    def _tick(self) -> None:
        se = self.se
        if not se.alive:
            return
        for vs in se.services:
            link = self.links.get(vs.vni)
            if link is None:
                link = self.links[vs.vni] = _Link()
            peers = vs.peers
            if se.name not in peers or len(peers) < 2:
                link.watching.clear()
            elif vs.primary == se.name:
                self._tick_as_primary(vs, link, [name for name in peers if name != se.name])
            else:
                self._tick_as_peer(vs, link)

    def _tick_as_primary(self, vs: ServedService, link: _Link, peers: list[str]) -> None:
        for name in list(link.watching):
            if name not in peers:
                del link.watching[name]
        link.sequence += 1
        for name in peers:
            watch = link.watching.setdefault(name, _Watch())
            self._count(name, watch, heard=watch.answered)
            if name not in vs.peers:  # just declared failed: no more heartbeats for it
                continue
            watch.answered = False
            self._send(vs, name, HEARTBEAT, link.sequence, f"heartbeat {link.sequence} to {name}")

    def _tick_as_peer(self, vs: ServedService, link: _Link) -> None:
        primary = vs.primary
        if primary is None:
            return
        if primary not in link.watching:  # a new primary: start counting from its first heartbeat
            link.watching = {primary: _Watch()}
            link.heard_primary = False
            return
        self._count(primary, link.watching[primary], heard=link.heard_primary)
        link.heard_primary = False

    def _count(self, name: str, watch: _Watch, heard: bool) -> None:
        if heard:
            watch.misses, watch.reported = 0, False
            return
        watch.misses += 1
        if watch.misses >= self.limit and not watch.reported:
            watch.reported = True
            control = self.se.runtime.control
            if control is not None:
                control.suspect(name, self.se.name, watch.misses)

    def _send(self, vs: ServedService, name: str, kind: int, sequence: int, what: str) -> None:
        peer = self.se.peer(name)
        frame = ethernet(peer.frontend.mac, self.se.frontend.mac, ETHERTYPE_HEARTBEAT, encode(kind, vs.vni, sequence))
        of = f" ({vs.name})" if vs.tag else ""
        self.se.frontend.send(frame, f"{self.se.name} {what}{of}", captured=self.captured)

    def receive(self, frame: bytes, sender: str) -> None:
        """A heartbeat frame from SE ``sender`` reached this SE."""
        message = decode(frame[14:])
        vs = None if message is None else next((v for v in self.se.services if v.vni == message[1]), None)
        if vs is None:
            self.se.runtime.counters.drop("heartbeat_malformed" if message is None else "heartbeat_unknown_vni")
            return
        kind, _, sequence = message
        link = self.links.get(vs.vni)
        if link is None:
            link = self.links[vs.vni] = _Link()
        if kind == HEARTBEAT:
            if sender == vs.primary:
                link.heard_primary = True
            self._send(vs, sender, ANSWER, sequence, f"heartbeat answer {sequence} to {sender}")
        else:
            watch = link.watching.get(sender)
            if watch is not None and sequence == link.sequence:
                watch.answered = True
