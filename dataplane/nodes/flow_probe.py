"""
Flow probes: a new primary asks the other SEs who owns a mid-flow packet (docs/design.md, B14).

After an unplanned primary change the new primary's flow table is empty.
For a TCP packet that is not a SYN and misses the table (and, while the new
primary recovers, any UDP packet that misses it), it holds the packet, asks
every other SE of the VS, and forwards the held packets to the SE that
claims the flow; if none does within ``se_flow_probe_timer`` (with
``se_flow_probe_retries`` retries), a TCP flow is reset and a UDP flow is
load-balanced to a remaining SE as a new one, as the product does.

Wire format (UDP, SE frontend address to SE frontend address, destination
port ``se_tunnel_udp_port + 1``, 1551 by default; all integers big-endian)::

    offset size field
    0      4    magic b"DPFP"
    4      1    version, 1
    5      1    type: 1 request, 2 claim ("mine"), 3 not mine
    6      2    probe id (per primary, increasing)
    8      40   flow key, the layout of dataplane.flowhash.flow_key (native/flowhash.h)

Wireshark shows it as UDP data; the frame comments say what each one means.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from ..clock import Timer, seconds
from ..scenario import SeGroup
from ..wire import frames
from .context import Runtime, ServedService

MAGIC = b"DPFP"
VERSION = 1
REQUEST, CLAIM, NOT_MINE = 1, 2, 3
_HEADER = struct.Struct("!4sBBH")
KIND_NAMES = {REQUEST: "request", CLAIM: "claim", NOT_MINE: "not mine"}


def encode(kind: int, probe_id: int, flow_key: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind, probe_id & 0xFFFF) + flow_key


def decode(payload: bytes) -> tuple[int, int, bytes] | None:
    """Return (type, probe id, flow key), or None for anything that is not a probe message."""
    if len(payload) < _HEADER.size + 40:
        return None
    magic, version, kind, probe_id = _HEADER.unpack_from(payload)
    if magic != MAGIC or version != VERSION or kind not in KIND_NAMES:
        return None
    return kind, probe_id, payload[_HEADER.size:_HEADER.size + 40]


# Where the flow key (native/flowhash.h) holds the fields a probe answer needs: the family (4 or 6), the
# protocol, the ports, then two 16-byte address fields (an IPv4 address in the first 4 bytes of each).
_KEY_FAMILY, _KEY_PROTO, _KEY_SPORT, _KEY_DPORT = 0, 1, slice(2, 4), slice(4, 6)


def flow_of(flow_key: bytes) -> tuple[bytes, int, bytes, int, int]:
    """(client address, client port, VIP, VIP port, protocol) of a client-to-VIP flow key of either family."""
    size = 16 if flow_key[_KEY_FAMILY] == 6 else 4
    return (flow_key[8:8 + size], int.from_bytes(flow_key[_KEY_SPORT], "big"), flow_key[24:24 + size],
            int.from_bytes(flow_key[_KEY_DPORT], "big"), flow_key[_KEY_PROTO])


class ProbingSe(Protocol):
    """What the prober needs of its Service Engine."""

    name: str
    runtime: Runtime

    def send_probe_message(self, peer: str, kind: int, probe_id: int, key: bytes, comment: str) -> None: ...

    def adopt_flow(self, vs: ServedService, key: bytes, owner: str, held: list) -> None: ...

    def unclaimed(self, vs: ServedService, key: bytes, held: list, why: str) -> None: ...


@dataclass(eq=False)
class PendingProbe:
    vs: ServedService
    probe_id: int
    key: bytes
    held: list[tuple[bytes, frames.FlowView]]
    asked: set[str]
    answers: set[str] = field(default_factory=set)
    attempt: int = 1
    timer: Timer | None = None


class FlowProber:
    """The primary's side: hold, ask, then forward or reset."""

    def __init__(self, se: ProbingSe, group: SeGroup):
        self.se = se
        self.sim = se.runtime.clock
        self.port = group.se_tunnel_udp_port + 1
        self.timer_ns = seconds(group.se_flow_probe_timer)
        self.retries = group.se_flow_probe_retries
        self.pending: dict[bytes, PendingProbe] = {}
        self._next_id = 0

    def hold(self, vs: ServedService, key: bytes, frame: bytes, view: frames.FlowView) -> None:
        probe = self.pending.get(key)
        if probe is not None:
            probe.held.append((frame, view))
            return
        peers = [name for name in vs.serving if name != self.se.name]
        if not peers:
            self.se.unclaimed(vs, key, [(frame, view)], "no other SE to ask")
            return
        self._next_id += 1
        probe = PendingProbe(vs, self._next_id, key, [(frame, view)], set(peers))
        self.pending[key] = probe
        self._ask(probe)

    def _ask(self, probe: PendingProbe) -> None:
        view = probe.held[0][1]
        for name in sorted(probe.asked - probe.answers):
            self.se.send_probe_message(name, REQUEST, probe.probe_id, probe.key,
                                       f"flow probe {probe.probe_id} (attempt {probe.attempt}): "
                                       f"who owns {view.describe()}?")
        probe.timer = self.sim.after(self.timer_ns, self._expired, probe)

    def _expired(self, probe: PendingProbe) -> None:
        if self.pending.get(probe.key) is not probe:
            return
        if probe.attempt <= self.retries:
            probe.attempt += 1
            self._ask(probe)
        else:
            self._unclaimed(probe, f"no answer after {probe.attempt} attempts")

    def answer(self, sender: str, kind: int, probe_id: int, key: bytes) -> None:
        probe = self.pending.get(key)
        if probe is None or probe.probe_id != probe_id:
            return
        probe.answers.add(sender)
        if kind == CLAIM:
            self._finish(probe)
            self.se.runtime.log("flow_probe.claimed", se=self.se.name, vs=probe.vs.name, owner=sender,
                                flow=probe.held[0][1].describe())
            self.se.adopt_flow(probe.vs, key, sender, probe.held)
        elif probe.answers >= probe.asked:
            self._unclaimed(probe, "every SE answered not mine")

    def _unclaimed(self, probe: PendingProbe, why: str) -> None:
        self._finish(probe)
        view = probe.held[-1][1]
        self.se.runtime.log("flow_probe.unclaimed", se=self.se.name, vs=probe.vs.name, flow=view.describe(), reason=why)
        self.se.unclaimed(probe.vs, probe.key, probe.held, f"flow probe {probe.probe_id} unclaimed: {why}")

    def _finish(self, probe: PendingProbe) -> None:
        if probe.timer:
            probe.timer.cancel()
        del self.pending[probe.key]
