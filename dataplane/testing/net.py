"""
Packet-test verbs over a live emulated network, in virtual time (PTF's model).

``DataplaneNet`` wraps a started ``Network``: it watches every frame that
crosses a segment (through ``Network.observers``), sends test frames from a
test port or from a node's NIC, and checks what was seen.  The verbs:

- ``send(where, frame)``: put a frame on the wire now;
- ``settle()``: run until no frame is in flight (the clock moves no further
  than the frames need); ``advance(seconds)`` and ``run(until=...)`` move
  the clock on purpose;
- ``expect(where, frame, mask=...)``: consume the first unconsumed frame seen
  at ``where`` that matches; on failure, explain with a field-level diff
  against the nearest frames of the same kind, each with its decision comment;
- ``expect_none(where)`` and ``expect_no_other()``: nothing (else) was seen,
  once nothing is in flight - there are no wall-clock timeouts;
- ``owner_of(flow)``: which SE the primary's flow table gives a flow to;
- the control-plane verbs and ``wait_for`` of ``ControlVerbs``.

``where`` is a segment name (``"frontend"``) or a NIC (``"gw.frontend"``,
or a node with one NIC: ``"server-1"``).  A NIC sees the frames on its
segment that it sent (eth.src is its MAC) or that are addressed to it
(eth.dst is its MAC, or broadcast/multicast).

What a failed check says is rendered by ``explain``.  The pytest fixture
lives in ``plugin``; this module has no pytest dependency so scripts can
use it too.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable

from ..clock import NS_PER_S
from ..clock import seconds as ns_from_seconds
from ..l2 import Nic, Segment
from ..nodes.management import SEGMENT as MANAGEMENT
from ..wire import frames
from ..wire.headers import ETH_SRC
from ..wire.ipv6 import ip_view
from ..wire.masks import Mask
from ..wire.validate import defect
from . import explain
from .control_verbs import ControlVerbs
from .explain import summarize
from .golden import assert_matches_golden
from .seen import Place, Seen

__all__ = ["DataplaneNet", "Mask", "Seen", "assert_matches_golden", "start_network", "summarize"]


class _TestPortNode:
    """The node behind test ports: it sends what the test asks and ignores what it receives."""

    kind = "test"

    def __init__(self) -> None:
        self.name = "test"
        self.nics: dict[str, Nic] = {}

    def receive(self, nic: Nic, frame: bytes) -> None:
        pass


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return bytes(frame)
    try:
        return bytes(frame)
    except TypeError:
        raise TypeError(f"a frame must be bytes or a Scapy packet, not {type(frame).__name__}") from None


Ignore = Callable[[Seen], bool] | str

#: Frames a network's record keeps by default; a flood past it forgets the oldest (consumed ones first).
MAX_SEEN = 100_000


class DataplaneNet(ControlVerbs):
    """A started network with packet-test verbs.  Build it with ``start_network``."""

    def __init__(self, network, capture_buffer: io.BytesIO | None = None, horizon: float | None = None,
                 ignore: Iterable[Ignore] = (), max_seen: int = MAX_SEEN):
        self.network = network
        self.sim = network.sim
        self.capture_buffer = capture_buffer
        #: Longest stretch of virtual time one ``settle()`` covers when frames never stop (generated traffic).
        self.horizon_ns = ns_from_seconds(horizon if horizon is not None else network.scenario.duration)
        self.seen: list[Seen] = []
        #: The record of seen frames keeps at most this many; ``forgotten`` counts the unconsumed ones it lost.
        self.max_seen = max_seen
        self.forgotten = 0
        self.verdicts: list[str] = []
        self._captured_count = 0
        self._ignore = [self._ignore_rule(rule) for rule in ignore]
        self._test_node = _TestPortNode()
        self._events_taken: set[int] = set()
        #: Where the pytest plugin will keep this network's capture (set by the fixture).
        self.artefact = None
        network.observers.append(self._observe)

    # -- observing -------------------------------------------------------------

    def _observe(self, segment: str, interface: int, time_ns: int, frame: bytes, comment: str) -> None:
        number = None
        if interface >= 0:
            self._captured_count += 1
            number = self._captured_count
        dropped = "[DROPPED" in comment
        index = self.seen[-1].index + 1 if self.seen else 0
        self.seen.append(Seen(index, number, segment, time_ns, frame, comment, dropped))
        if len(self.seen) > self.max_seen:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Keep the record bounded under a flood: drop a tenth of it, frames already consumed first."""
        excess = len(self.seen) - self.max_seen + max(1, self.max_seen // 10)
        gone = {id(s) for s in [s for s in self.seen if s.consumed][:excess]}
        if len(gone) < excess:
            unchecked = [s for s in self.seen if not s.consumed][:excess - len(gone)]
            self.forgotten += len(unchecked)
            gone.update(id(s) for s in unchecked)
        self.seen = [s for s in self.seen if id(s) not in gone]

    @staticmethod
    def _ignore_rule(rule: Ignore) -> Callable[[Seen], bool]:
        if callable(rule):
            return rule
        if rule == "arp":
            return lambda s: frames.ethertype(s.frame) == frames.ETHERTYPE_ARP
        if isinstance(rule, str):
            return lambda s: rule in s.comment
        raise TypeError(f"ignore rules are 'arp', a comment substring or a callable, not {rule!r}")

    def place(self, where: str) -> Place:
        """Resolve ``where``: a segment, ``node.nic``, or a node that has exactly one NIC."""
        segments = self.network.segments
        if where in segments:
            return Place(where, segments[where], None)
        node_name, _, nic_name = where.partition(".")
        node = self.network.nodes.get(node_name)
        if node is not None:
            if not nic_name and len(node.nics) == 1:
                nic_name = next(iter(node.nics))
            if nic_name in node.nics:
                return Place(f"{node_name}.{nic_name}", node.nics[nic_name].segment, node.nics[nic_name])
        raise ValueError(f"unknown place {where!r}: use a segment ({', '.join(segments)}) or node.nic "
                         f"(e.g. gw.frontend, se-1.backend, server-1)")

    def seen_at(self, where: str, include_consumed: bool = False) -> list[Seen]:
        place = self.place(where)
        return [s for s in self.seen if place.covers(s) and (include_consumed or not s.consumed)]

    # -- addresses ---------------------------------------------------------------

    def mac(self, node: str, nic: str | None = None) -> str:
        return frames.mac_text(self.place(f"{node}.{nic}" if nic else self._default_nic(node)).nic.mac)

    def ip(self, node: str, nic: str | None = None) -> str:
        """The NIC's IPv4 address (``ip6`` gives its IPv6 one)."""
        return self._address(node, nic, "ip")

    def ip6(self, node: str, nic: str | None = None) -> str:
        return self._address(node, nic, "ip6")

    def _address(self, node: str, nic: str | None, family: str) -> str:
        place = self.place(f"{node}.{nic}" if nic else self._default_nic(node))
        address = getattr(place.nic, family)
        if address is None:
            raise ValueError(f"{place.text} has no {'IPv6' if family == 'ip6' else 'IPv4'} address")
        return frames.ip_text(address)

    def _default_nic(self, node: str) -> str:
        found = self.network.nodes.get(node)
        if found is not None and "frontend" in found.nics:
            return f"{node}.frontend"
        return node

    @property
    def primary(self) -> str | None:
        """The primary of the first virtual service (``primary_of`` names another)."""
        return self.network.vs.primary

    @property
    def vip(self) -> str:
        """The IPv4 VIP of the first virtual service (``vip_of`` names another)."""
        return self.vip_of(self.network.vs.name)

    @property
    def vip6(self) -> str:
        """The IPv6 VIP of the first virtual service (``vip6_of`` names another)."""
        return self.vip6_of(self.network.vs.name)

    def primary_of(self, vs: str) -> str | None:
        return self.network.service(vs).primary

    def vip_of(self, vs: str) -> str:
        return self._text(self.network.service(vs).vip, vs, "vip")

    def vip6_of(self, vs: str) -> str:
        return self._text(self.network.service(vs).vip6, vs, "vip6")

    @staticmethod
    def _text(address: bytes | None, vs: str, key: str) -> str:
        if address is None:
            raise ValueError(f"virtual service {vs} has no {key}")
        return frames.ip_text(address)

    # -- sending and running ---------------------------------------------------

    def send(self, where: str, frame, comment: str | None = None) -> None:
        """Send ``frame`` now from a test port on a segment, or from a node's NIC.

        The frame is recorded (and captured) as it crosses the segment, already
        consumed: ``expect_no_other`` does not count what the test sent.
        """
        data = _as_bytes(frame)
        place = self.place(where)
        nic = place.nic or self._test_port(place.segment, data[ETH_SRC].ljust(6, b"\x00"))
        # A test's frame may carry any checksum: from now on the SEs verify them, as a real SE's NIC does.
        self.network.runtime.verify_checksums = True
        before = len(self.seen)
        problem = defect(data)
        if comment is None:
            comment = f"test sends {summarize(data)} from {nic.label}"
        nic.send(data, comment + (f" [malformed: {problem}]" if problem else ""))
        # What the test itself sent is not something the network did: expect_no_other skips it.
        for s in self.seen[before:]:
            s.consumed = s.by_test = True

    def _test_port(self, segment: Segment, mac: bytes) -> Nic:
        name = f"{segment.name}-{mac.hex()}"
        nic = self._test_node.nics.get(name)
        if nic is None:
            nic = Nic(self._test_node, name, mac, b"\x00" * 4, segment, static=False)  # learnt, like any host's
            nic.allowed_ips = None  # a test port may send anything, even where port security is on
            self._test_node.nics[name] = nic
        return nic

    @property
    def now(self) -> float:
        """The current virtual time in seconds (read-only: ``settle``, ``advance`` and ``run`` move it)."""
        return self.sim.now / NS_PER_S

    def settle(self) -> None:
        """Run until no frame is in flight.

        A frame is *in flight* from the moment it is put on a segment (by the test
        or by any node) until it has been delivered to every NIC it reaches, or
        dropped; a node's processing delay before it sends keeps its frame in
        flight too.  So settling delivers every frame already sent and every frame
        those cause without waiting on a timer: answers, forwards, NAT rewrites,
        relays, ARP requests and replies and the frames that waited on them.
        Timers due before the last of those frames run in their turn (a health
        probe, say); the clock never moves past the last frame event for a
        timer's sake, so a retransmission or a drain that is still due stays due.
        At most ``horizon`` seconds pass, in case frames never stop (generated traffic).
        """
        self.sim.settle(limit_ns=self.sim.now + self.horizon_ns)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward on purpose, running every event due until then."""
        if not seconds >= 0:
            raise ValueError(f"advance needs a time >= 0, got {seconds}")
        self.sim.run(until_ns=self.sim.now + ns_from_seconds(seconds))

    def run(self, until: float | None = None) -> None:
        """Run to ``until`` (absolute virtual seconds), every event due until then; without ``until``, settle."""
        if until is None:
            self.settle()
            return
        bound = ns_from_seconds(until)
        if bound < self.sim.now:
            raise ValueError(f"cannot run back to {until} s: the clock is at {self.now} s")
        self.sim.run(until_ns=bound)

    def discard(self) -> int:
        """Mark everything seen so far as consumed (e.g. the primary's gratuitous ARP); return how many."""
        fresh = [s for s in self.seen if not s.consumed]
        for s in fresh:
            s.consumed = s.discarded = True
        return len(fresh)

    # -- checking ----------------------------------------------------------------

    def expect(self, where: str, frame, mask: Mask | Iterable[str] | None = None, *,
               dropped: bool = False) -> Seen:
        """Consume and return the first unconsumed frame seen at ``where`` that matches.

        ``frame`` is bytes, a Scapy packet or a ``Mask``; ``mask`` names don't-care
        fields (``["ip.ttl", "tcp.seq"]``) or is a ``Mask``.  If nothing matches
        yet, it settles (``settle()``) and looks again, so "not seen" means "never
        sent" without running timers beyond the frames in flight.
        ``dropped=True`` matches a frame that port security dropped instead.
        """
        if isinstance(frame, Mask):
            matcher = frame
        elif isinstance(mask, Mask):
            matcher = mask
        else:
            matcher = Mask(_as_bytes(frame), mask or ())
        place = self.place(where)
        found = self._find(place, matcher, dropped)
        if found is None:
            self.settle()
            found = self._find(place, matcher, dropped)
        if found is None:
            message = explain.missing(place, matcher, dropped, self.seen, self.sim.now, not self.sim.in_flight(),
                                      self.artefact)
            self.verdicts.append(f"FAILED expect at {place.text}")
            raise AssertionError(message)
        found.consumed = True
        self.verdicts.append(f"ok expect at {place.text}: frame #{found.number}")
        return found

    def _find(self, place: Place, matcher: Mask, dropped: bool) -> Seen | None:
        for s in self.seen:
            if not s.consumed and s.dropped == dropped and place.covers(s) and matcher.matches(s.frame):
                return s
        return None

    def expect_none(self, where: str, frame=None, mask: Mask | Iterable[str] | None = None) -> None:
        """Settle; fail if an unconsumed frame (matching ``frame``, if given) was seen at ``where``."""
        self.settle()
        place = self.place(where)
        matcher = None if frame is None else (mask if isinstance(mask, Mask) else Mask(_as_bytes(frame), mask or ()))
        unwanted = [s for s in self.seen if not s.consumed and place.covers(s) and not self._ignored(s)
                    and (matcher is None or matcher.matches(s.frame))]
        if unwanted:
            self.verdicts.append(f"FAILED expect_none at {place.text}")
            raise AssertionError(explain.unwanted_at(place, matcher, unwanted, self.artefact))
        self.verdicts.append(f"ok expect_none at {place.text}")

    def expect_no_other(self, ignore: Iterable[Ignore] = ()) -> None:
        """Settle; fail if any frame seen on a data segment was not consumed by an ``expect``.

        The management segment's frames (one per control-plane event) are left out: ``events`` and
        ``wait_for`` check those, and ``expect("controller", ...)`` can still take one.
        """
        self.settle()
        rules = self._ignore + [self._ignore_rule(r) for r in ignore]
        unwanted = [s for s in self.seen if not s.consumed and s.segment != MANAGEMENT
                    and not any(rule(s) for rule in rules)]
        if self.forgotten:
            self.verdicts.append("FAILED expect_no_other")
            raise AssertionError(f"{self.forgotten} frames were forgotten before any expect looked at them: the "
                                 f"record keeps {self.max_seen} frames (dataplane_net(..., max_seen=N) raises it)")
        if unwanted:
            self.verdicts.append("FAILED expect_no_other")
            raise AssertionError(explain.unmatched(unwanted, self.artefact))
        self.verdicts.append("ok expect_no_other")

    def _ignored(self, s: Seen) -> bool:
        return any(rule(s) for rule in self._ignore)

    # -- flows -------------------------------------------------------------------

    def owner_of(self, flow) -> str | None:
        """Return the SE that owns ``flow`` in its virtual service's flow table, or None.

        ``flow`` is ``(src, sport, dst, dport[, proto])`` with proto a number or
        "tcp"/"udp" (default: the VS protocol), or a client-to-VIP frame; the
        destination says which virtual service.  It settles first, so it answers
        right after ``send``.
        """
        from .. import flowhash

        self.settle()
        if isinstance(flow, tuple):
            src, sport, dst, dport, *rest = flow
            vs = self._service_at(frames.ip_bytes(dst))
            proto = rest[0] if rest else vs.proto
            proto = {"tcp": frames.PROTO_TCP, "udp": frames.PROTO_UDP}.get(proto, proto)
            key = flowhash.flow_key(frames.ip_bytes(src), frames.ip_bytes(dst), int(proto), int(sport), int(dport))
        else:
            data = _as_bytes(flow)
            try:
                view = ip_view(data)
            except frames.Malformed:
                view = None
            if view is None or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
                raise ValueError("owner_of needs a TCP/UDP frame (IPv4 or IPv6) or a (src, sport, dst, dport) tuple")
            vs = self._service_at(view.dst)
            key = vs.flow_key(view)
        entry = vs.flow_table.get(key)
        return None if entry is None else self.network.se_names[entry[0]]

    def _service_at(self, vip: bytes):
        for vs in self.network.services:
            if vip in vs.vips:
                return vs
        vips = ", ".join(f"{frames.ip_text(address)} ({vs.name})" for vs in self.network.services
                         for address in vs.vips)
        raise ValueError(f"{frames.ip_text(vip)} is no VIP of this network (VIPs: {vips})")

    # -- artefacts ---------------------------------------------------------------

    def capture_bytes(self) -> bytes:
        """The pcapng capture so far (complete blocks only)."""
        if self.capture_buffer is None:
            raise RuntimeError("this network was built without a capture")
        self.network.capture.writer.flush()
        return self.capture_buffer.getvalue()


def start_network(scenario, traffic: bool = False, horizon: float | None = None,
                  ignore: Iterable[Ignore] = (), capture: bool = True, max_seen: int = MAX_SEEN) -> DataplaneNet:
    """Build ``scenario`` (a dict, a TOML path or a parsed Scenario), start it at t=0 and wrap it.

    Starting places the VS: the primary's gratuitous ARP is the first frame seen
    on the frontend.  ``traffic=True`` also schedules the scenario's generated
    connections and its timeline is left to ``run``.
    """
    from .. import scenario as scenario_mod
    from ..emulation import build

    if isinstance(scenario, dict):
        scenario = scenario_mod.parse(scenario, "<dict>")
    elif not hasattr(scenario, "virtual_service"):
        scenario = scenario_mod.load(scenario)
    buffer = io.BytesIO() if capture else None
    network = build(scenario, capture_file=buffer, application="dataplane pytest plugin")
    net = DataplaneNet(network, buffer, horizon, ignore, max_seen)
    network.start(traffic=traffic)
    return net
