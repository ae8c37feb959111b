"""
Per-SE health monitoring of the pool servers (docs/design.md, B11).

Every SE that serves the VS probes every pool server from its own backend
address, every ``send_interval``, each SE on its own phase, so SEs disagree
for a while after a server fails or recovers.  A server goes down after
``failed_checks`` consecutive failures and up after ``successful_checks``
consecutive successes; each change is a ``server.down`` / ``server.up``
event naming the SE.  Probes are real frames in the capture:

- ``tcp``: SYN; a SYN-ACK within ``receive_timeout`` is a success (the probe
  then resets the half-open connection, as a half-open TCP monitor does);
- ``http``: handshake, the configured request, and a status code in
  ``http_response_codes``; the probe then resets the connection;
- ``icmp``: echo request and reply (ICMPv6 echo for an IPv6 server).

Probe ports come from the ports above the SE's NAT range
(``ephemeral_portrange_end``), so a probe's answer can never be mistaken
for a client connection's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..clock import Timer, seconds
from ..l2 import Nic
from ..scenario import HealthMonitor as MonitorSpec
from ..wire import dual, frames
from ..wire.frames import ACK, PSH, RST, SYN, ZERO_MAC
from .context import PoolServer, Runtime
from .nat import PortRing
from .server_selection import ServerSelector



class MonitoringSe(Protocol):
    """What a health monitor needs of its Service Engine."""

    name: str
    runtime: Runtime
    backend: Nic
    alive: bool

    def next_ident(self) -> int: ...

    def send_ip(self, nic: Nic, next_hop: bytes, frame: bytes, comment: str) -> None: ...


@dataclass(eq=False)
class Probe:
    server: PoolServer
    port: int
    isn: int
    timer: Timer | None = None
    established: bool = False


class HealthMonitor:
    """One SE's monitor of one pool: it tells ``selector`` which servers are up.

    ``ports`` is the SE's ring of probe ports, shared by the monitors of all its pools so that no two
    probes of one SE use a port at once; ``stream`` names the random stream of probe phases and ISNs.
    """

    def __init__(self, se: MonitoringSe, selector: ServerSelector, spec: MonitorSpec, servers: Sequence[PoolServer],
                 seed: int, ports: PortRing, stream: str = "monitor", vs: str | None = None):
        self.se = se
        self.vs = vs
        self.selector = selector
        self.sim = se.runtime.clock
        self.spec = spec
        self.servers = servers
        self.rng = random.Random(f"{seed}:{se.name}:{stream}")
        self.successes: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.pending: dict[int, Probe] = {}
        #: Ports of probes already decided, to the server that may still be answering on them
        #: (the rest of an HTTP response after the status line): not client traffic.
        self.finished: dict[int, bytes] = {}
        self.ports = ports
        self._icmp_sequence = 0
        self.running = False
        self.generation = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self.spec.type == "none" or self.running:
            return
        self.running = True
        self.generation += 1
        interval = seconds(self.spec.send_interval)
        # Each SE starts on its own phase: that is why SEs disagree for a while (docs/design.md, B11).
        phase = self.rng.randrange(interval // 2 + 1)
        for number, server in enumerate(self.servers):
            self.sim.after(phase + number * seconds(0.001), self._tick, server, self.generation)

    def stop(self) -> None:
        self.running = False
        for probe in self.pending.values():
            if probe.timer:
                probe.timer.cancel()
        self.pending.clear()

    def _tick(self, server: PoolServer, generation: int) -> None:
        if not self.running or generation != self.generation or not self.se.alive:
            return
        self._probe(server)
        self.sim.after(seconds(self.spec.send_interval), self._tick, server, generation)

    # -- probing ---------------------------------------------------------------

    def _probe(self, server: PoolServer) -> None:
        port = self.ports.take()
        self.finished.pop(port, None)
        if self.spec.type == "icmp":
            self._icmp_sequence = (self._icmp_sequence + 1) & 0xFFFF
            probe = Probe(server, port, self._icmp_sequence)
            frame = dual.echo_frame(ZERO_MAC, self.se.backend.mac, self._source(server), server.ip, False, port,
                                    self._icmp_sequence, b"dataplane health", self.se.next_ident())
            self._send(server, frame, f"echo request seq {self._icmp_sequence}")
        else:
            probe = Probe(server, port, self.rng.getrandbits(32))
            self._send_tcp(probe, probe.isn, 0, SYN, b"", "syn")
        probe.timer = self.sim.after(seconds(self.spec.receive_timeout), self._timeout, probe)
        self.pending[port] = probe

    def _source(self, server: PoolServer) -> bytes:
        """The SE's backend address of ``server``'s family (an IPv6 server is probed over IPv6)."""
        return self.se.backend.ip if len(server.ip) == 4 else self.se.backend.ip6

    def _send(self, server: PoolServer, frame: bytes, what: str) -> None:
        self.se.send_ip(self.se.backend, server.ip, frame,
                        f"{self.se.name} health monitor ({self.spec.type}) {what} to {server.endpoint}")

    def _send_tcp(self, probe: Probe, seq: int, ack: int, flags: int, payload: bytes, what: str) -> None:
        se, server = self.se, probe.server
        frame = dual.tcp(ZERO_MAC, se.backend.mac, self._source(server), server.ip, probe.port, server.port, seq, ack,
                         flags, payload, se.next_ident(), dual.mss_for(server.ip) if flags & SYN else None)
        self._send(server, frame, what)

    def handle(self, frame: bytes, view: frames.FlowView) -> bool:
        """Consume a backend frame that answers one of our probes; return False for anything else."""
        echo = dual.parse_echo(frame, view)
        if echo is not None:
            probe = self.pending.get(echo[1])
            if not echo[0] and probe is not None and probe.isn == echo[2]:  # a reply to our request
                self._result(probe, True, "echo reply")
            return probe is not None
        if view.fragment or view.proto != frames.PROTO_TCP:
            return False
        probe = self.pending.get(view.dport)
        if probe is None or view.src != probe.server.ip:
            return self.finished.get(view.dport) == view.src
        seq, ack = dual.seq_ack(frame, view)
        if view.flags & RST:
            self._result(probe, False, "connection refused")
        elif view.flags & SYN and self.spec.type == "tcp":
            self._send_tcp(probe, ack, 0, RST, b"", "reset after syn-ack")
            self._result(probe, True, "syn-ack")
        elif view.flags & SYN:
            request = (self.spec.http_request + "\r\n\r\n").encode()
            self._send_tcp(probe, ack, seq + 1, ACK, b"", "ack")
            self._send_tcp(probe, ack, seq + 1, PSH | ACK, request, f"request {self.spec.http_request!r}")
            probe.established = True
        elif view.payload_len and probe.established:
            code = _status_code(view.payload(frame))
            _, rst_seq = dual.seq_ack(frame, view)
            self._send_tcp(probe, rst_seq, 0, RST, b"", "reset after response")
            ok = code is not None and any(_code_matches(code, want) for want in self.spec.http_response_codes)
            self._result(probe, ok, f"status {code}")
        return True

    def _timeout(self, probe: Probe) -> None:
        if self.pending.get(probe.port) is probe:
            self._result(probe, False, f"no answer in {self.spec.receive_timeout:g} s")

    # -- state -----------------------------------------------------------------

    def _result(self, probe: Probe, ok: bool, detail: str) -> None:
        self.pending.pop(probe.port, None)
        self.finished[probe.port] = probe.server.ip
        if probe.timer:
            probe.timer.cancel()
        name = probe.server.name
        selector = self.selector
        if ok:
            self.failures[name] = 0
            self.successes[name] = self.successes.get(name, 0) + 1
            if not selector.up[name] and self.successes[name] >= self.spec.successful_checks:
                selector.set_up(probe.server, True)
                self._log("server.up", probe.server, detail)
        else:
            self.successes[name] = 0
            self.failures[name] = self.failures.get(name, 0) + 1
            if selector.up[name] and self.failures[name] >= self.spec.failed_checks:
                selector.set_up(probe.server, False)
                self._log("server.down", probe.server, detail)

    def _log(self, kind: str, server: PoolServer, detail: str) -> None:
        about = {"vs": self.vs} if self.vs else {}
        self.se.runtime.log(kind, se=self.se.name, **about, server=server.endpoint, reason=detail)


def _status_code(payload: bytes) -> int | None:
    if not payload.startswith(b"HTTP/"):
        return None
    parts = payload.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _code_matches(code: int, want: str) -> bool:
    if want.endswith("xx"):
        return code // 100 == int(want[0])
    return code == int(want)

