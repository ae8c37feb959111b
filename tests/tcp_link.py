"""
Two TcpEndpoints back to back through a fake network on the real Simulator (for tests/test_tcp_endpoint.py).

``Link`` carries every segment after a latency; a test's ``fate`` function
may drop, delay or duplicate any segment.  It also checks, independently of
the endpoints, the flow-control promise: no data segment ever ends beyond
the right edge (acknowledgement + window) its sender had been told, except
a one-byte zero-window probe.  ``App`` is an endpoint's owner: it writes
bytes as send space allows, records what arrives and may hold it unconsumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from dataplane.clock import Simulator
from dataplane.nodes.tcp_endpoint import TcpEndpoint
from dataplane.wire import frames
from dataplane.wire.headers import ACK, RST, SYN
from dataplane.wire.pcapng import PcapngWriter

MS = 1_000_000
MASK = 0xFFFFFFFF


def later(base: int, wire: int) -> int:
    """``wire`` (32 bits) as an unbounded number within 2**31 of ``base``: the test's own sequence arithmetic."""
    delta = (wire - base) & MASK
    return base + (delta - (1 << 32) if delta >= 1 << 31 else delta)


@dataclass
class Segment:
    time: int
    src: str
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None
    delivered: bool = True

    @property
    def length(self) -> int:
        return len(self.payload)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


@dataclass
class App:
    """The owner of one endpoint."""

    name: str
    link: "Link"
    outbox: bytes = b""
    close_when_sent: bool = False
    auto_consume: bool = True
    consume_delay: int = 0  # an owner that forwards each chunk this long after it arrived
    received: bytearray = field(default_factory=bytearray)
    events: list = field(default_factory=list)
    closed_reason: str | None = None
    sent: int = 0
    endpoint: TcpEndpoint | None = None

    def make(self, isn: int, **options) -> TcpEndpoint:
        sim = self.link.sim
        self.endpoint = TcpEndpoint(sim, isn, transmit=lambda *fields: self.link.transmit(self.name, *fields),
                                    on_established=self._established,
                                    on_data=self._data, on_fin=self._fin, on_closed=self._closed,
                                    on_writable=self.pump, **options)
        return self.endpoint

    def write(self, data: bytes, close: bool = False) -> None:
        self.outbox += data
        self.close_when_sent = close
        self.pump()

    def pump(self) -> None:
        ep = self.endpoint
        while self.sent < len(self.outbox) and ep.send_space():
            self.sent += ep.send(self.outbox[self.sent:self.sent + ep.send_space()])
        if self.close_when_sent and self.sent == len(self.outbox) and ep.state.value in (
                "syn-sent", "syn-received", "established", "close-wait"):
            self.close_when_sent = False
            ep.close()

    def _established(self) -> None:
        self.events.append(("established", self.link.sim.now))
        self.pump()  # a passive end may close only now

    def _data(self, data: bytes) -> None:
        assert isinstance(data, bytes) and data
        self.received += data
        self.events.append(("data", self.link.sim.now, len(data)))
        if self.auto_consume and self.consume_delay:
            self.link.sim.after(self.consume_delay, self.endpoint.consume, len(data))
        elif self.auto_consume:
            self.endpoint.consume(len(data))

    def _fin(self) -> None:
        self.events.append(("fin", self.link.sim.now))

    def _closed(self, reason: str) -> None:
        assert self.closed_reason is None, "on_closed fired twice"
        self.closed_reason = reason
        self.events.append(("closed", self.link.sim.now, reason))

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event[0] == kind)


class Link:
    """A client ``a`` and a server ``b``: ``a`` opens, ``b`` accepts the first SYN that reaches it."""

    def __init__(self, latency: int = 5 * MS, isn_a: int = 1000, isn_b: int = 900_000,
                 fate: Callable[[Segment, int], list[int] | None] | None = None, a: dict | None = None,
                 b: dict | None = None):
        self.sim = Simulator()
        self.latency = latency
        self.fate = fate  # (segment, its index among its sender's segments) -> delays, [] drops; None: default
        self.segments: list[Segment] = []
        self.sent_by = {"a": 0, "b": 0}
        self.apps = {"a": App("a", self), "b": App("b", self)}
        self.a, self.b = self.apps["a"], self.apps["b"]
        self.a.make(isn_a, **(a or {}))
        self.b.make(isn_b, **(b or {}))
        # What each side was told by the other: the highest right edge (ack + window), in its own unbounded space.
        self.edge = {"a": None, "b": None}
        self.position = {"a": isn_a, "b": isn_b}  # the last unbounded sequence number each side sent
        self.probes = {"a": 0, "b": 0}
        self.violations: list[str] = []

    @property
    def ends(self) -> tuple[TcpEndpoint, TcpEndpoint]:
        return self.a.endpoint, self.b.endpoint

    def transmit(self, src: str, seq: int, ack: int, flags: int, window: int, payload: bytes,
                 mss: int | None) -> None:
        assert 0 <= seq <= MASK and 0 <= ack <= MASK and 0 <= window <= 0xFFFF
        assert isinstance(payload, bytes)
        segment = Segment(self.sim.now, src, seq, ack, flags, window, payload, mss)
        self._check_window(segment)
        index = self.sent_by[src]
        self.sent_by[src] += 1
        self.segments.append(segment)
        delays = self.fate(segment, index) if self.fate is not None else None
        if delays is None:
            delays = [self.latency]
        segment.delivered = bool(delays)
        for delay in delays:
            self.sim.post(delay, self._deliver, (segment,))

    def _check_window(self, segment: Segment) -> None:
        src = segment.src
        start = later(self.position[src], segment.seq)
        if not segment.has(RST):
            self.position[src] = start
        edge = self.edge[src]
        if not segment.length or edge is None:
            return
        end = start + segment.length
        if end <= edge:
            return
        if segment.length == 1 and end == edge + 1:
            self.probes[src] += 1  # a zero-window probe may poke one byte past the edge (RFC 1122 4.2.2.17)
            return
        self.violations.append(f"{src} sent {start}..{end} beyond the edge {edge} at {segment.time}")

    def _deliver(self, segment: Segment) -> None:
        dst = "b" if segment.src == "a" else "a"
        endpoint = self.apps[dst].endpoint
        if segment.has(ACK) and not segment.has(RST):
            base = self.position[dst]
            edge = later(base, segment.ack) + segment.window
            if self.edge[dst] is None or edge > self.edge[dst]:
                self.edge[dst] = edge
        if dst == "b" and endpoint.state.value == "initial":
            if segment.flags & (SYN | ACK | RST) == SYN:
                endpoint.accept(segment.seq, segment.mss)
            return
        endpoint.receive(segment.seq, segment.ack, segment.flags, segment.window, segment.payload, segment.mss)

    # -- helpers for tests ---------------------------------------------------------------------------------

    def run(self, seconds: float = 600.0) -> None:
        self.sim.run(until_ns=self.sim.now + round(seconds * 1e9))

    def from_(self, src: str, flags: int = 0, data: bool | None = None) -> list[Segment]:
        """The segments ``src`` sent, optionally only those with all of ``flags`` and with (or without) data."""
        return [s for s in self.segments if s.src == src and s.flags & flags == flags
                and (data is None or bool(s.payload) == data)]

    def data_segments(self, src: str) -> list[Segment]:
        return self.from_(src, data=True)




ADDRESSES = {"a": (bytes([198, 51, 100, 7]), 40001, "02:00:c6:33:64:07"),
             "b": (bytes([10, 20, 0, 101]), 47001, "02:00:0a:14:00:65")}


def write_capture(link: Link, path) -> None:
    """Every segment as a frame at the moment it was sent (a capture at both senders), dropped ones marked."""
    with PcapngWriter(str(path)) as writer:
        writer.add_interface("wire", "two TcpEndpoints back to back")
        for number, segment in enumerate(link.segments):
            src, sport, src_mac = ADDRESSES[segment.src]
            dst, dport, dst_mac = ADDRESSES["b" if segment.src == "a" else "a"]
            tcp = frames.tcp_segment(src, dst, sport, dport, segment.seq, segment.ack, segment.flags,
                                     segment.payload, window=segment.window, mss=segment.mss)
            frame = frames.ethernet(frames.mac_bytes(dst_mac), frames.mac_bytes(src_mac), frames.ETHERTYPE_IPV4,
                                    frames.ipv4(src, dst, frames.PROTO_TCP, tcp, number))
            fate = "" if segment.delivered else " [DROPPED by the test]"
            writer.write_commented(0, segment.time, frame, f"endpoint {segment.src}{fate}")
