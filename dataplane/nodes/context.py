"""
What the nodes and the controller share while a network runs.

The builder (``dataplane.emulation``) makes one ``Runtime`` and hands it to
every node and to the controller; nothing at run time reaches back into the
builder.  It holds the clock, the event log, the counters (drops, resets,
flows), the registry of nodes and Service Engines, the path policy the
cloud type decides, and the notes a sender leaves for the router.

The Protocols at the end say what a node expects of the objects the layers
above hand it (the virtual service it serves, a pool server), so this layer
never imports those layers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from ..clock import NS_PER_S, Simulator
from ..l2 import Nic


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """How frames travel between SEs and back to clients, decided once per cloud type (docs/design.md, B7).

    - ``port_security``: segments drop frames whose source address the sending port may not use (Neutron);
    - ``forward_in_tunnel``: the primary reaches secondaries inside the SE-to-SE tunnel, because
      port security would drop a client's packet forwarded from the primary's port;
    - ``return_via_primary``: secondaries send responses back through the primary;
    - ``client_next_hop``: the address SEs send client-bound frames to (the gateway router).
    """

    port_security: bool
    forward_in_tunnel: bool
    return_via_primary: bool
    client_next_hop: bytes
    #: The router's IPv6 address on the frontend, where IPv6 client-bound frames go (None: no IPv6).
    client_next_hop6: bytes | None = None

    @classmethod
    def decide(cls, cloud: str, tunnel_mode: str, client_next_hop: bytes,
               client_next_hop6: bytes | None = None) -> "PathPolicy":
        neutron = cloud == "openstack-neutron"
        via_primary = neutron if tunnel_mode == "auto" else tunnel_mode == "disable-dsr"
        return cls(neutron, neutron, via_primary, client_next_hop, client_next_hop6)

    def next_hop(self, client_side_address: bytes) -> bytes | None:
        """Where a frame to a client goes, by the family of the client-side address (the VIP or the client)."""
        return self.client_next_hop if len(client_side_address) == 4 else self.client_next_hop6


class EventLog:
    """The control-plane events of a run, in order, each stamped with its virtual time."""

    def __init__(self, clock: Simulator, sink: Callable[[dict], None] | None = None):
        self.clock = clock
        self.events: list[dict] = []
        #: Called with each event as it is logged (events.jsonl's writer, the controller's syslog), in order.
        self.listeners: list[Callable[[dict], None]] = [sink] if sink else []

    def log(self, kind: str, **fields: Any) -> dict:
        event = {"t": round(self.clock.now / NS_PER_S, 9), "type": kind, **fields}
        self.events.append(event)
        for listener in self.listeners:
            listener(event)
        return event


@dataclass(slots=True)
class Phase:
    """A stretch of the run between two changes of a VS's SEs, and the new flows each SE took in it."""

    start_ns: int
    after: str
    flows: Counter[str]


@dataclass(slots=True)
class Survival:
    """The connections of a VS open when its SEs changed, and how each of them ended."""

    at_ns: int
    after: str
    open: int
    ended: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict:
        return {"at": round(self.at_ns / NS_PER_S, 9), "after": self.after, "open": self.open,
                **{outcome: self.ended.get(outcome, 0) for outcome in ("completed", "reset", "failed")},
                "still_open": self.open - sum(self.ended.values())}


@dataclass(slots=True)
class VsCounters:
    """What the run counts for one virtual service."""

    flows_total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    drops: Counter[str] = field(default_factory=Counter)
    phases: list[Phase] = field(default_factory=lambda: [Phase(0, "initial placement", Counter())])
    survival: list[Survival] = field(default_factory=list)
    #: Open connections (by id) still being followed, to the indices of the survival rows they count in.
    following: dict[int, list[int]] = field(default_factory=dict)


class Counters:
    """What the run counts: drops by reason, resets by SE, flows by outcome, by SE and by phase; per VS too."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        #: Connections each SE reset (a RST to the client, and to the server when it had one), by why.
        self.resets: dict[str, Counter[str]] = {}
        self.flows_total = 0
        self.flow_outcomes: Counter[str] = Counter()
        #: Why flows failed or were reset, as the clients saw it.
        self.flow_reasons: dict[str, Counter[str]] = {}
        #: The controller starts a new phase at every change of membership (``new_phase``).
        self.phases: list[Phase] = [Phase(0, "initial placement", Counter())]
        self.services: dict[str, VsCounters] = {}

    def vs(self, name: str) -> VsCounters:
        found = self.services.get(name)
        if found is None:
            found = self.services[name] = VsCounters()
        return found

    def drop(self, reason: str, count: int = 1, vs: str | None = None) -> None:
        self.drops[reason] += count
        if vs is not None:
            self.vs(vs).drops[reason] += count

    def reset(self, se: str, why: str, count: int = 1) -> None:
        if count:
            self.resets.setdefault(se, Counter())[why] += count

    def new_phase(self, now_ns: int, after: str, vs: str, open_connections: list[int]) -> None:
        """A VS's SEs changed: a new phase for it (and for the run), and its open connections are followed."""
        for phases in (self.phases, self.vs(vs).phases):
            last = phases[-1]
            if last.start_ns == now_ns and not last.flows:  # two changes at one instant: one phase, both named
                last.after = after if last.start_ns == 0 and last.after == "initial placement" else \
                    f"{last.after}; {after}"
            else:
                phases.append(Phase(now_ns, after, Counter()))
        counters = self.vs(vs)
        row = len(counters.survival)
        counters.survival.append(Survival(now_ns, after, len(open_connections)))
        for conn in open_connections:
            counters.following.setdefault(conn, []).append(row)

    def flow_opened(self, vs: str) -> None:
        self.flows_total += 1
        self.vs(vs).flows_total += 1

    def flow_closed(self, vs: str, outcome: str, reason: str = "", conn: int | None = None) -> None:
        counters = self.vs(vs)
        for outcomes, reasons in ((self.flow_outcomes, self.flow_reasons), (counters.outcomes, counters.reasons)):
            outcomes[outcome] += 1
            if reason:
                reasons.setdefault(outcome, Counter())[reason] += 1
        for row in counters.following.pop(conn, ()):
            counters.survival[row].ended[outcome] += 1

    def flow_owned(self, se: str, vs: str) -> None:
        self.phases[-1].flows[se] += 1
        self.vs(vs).phases[-1].flows[se] += 1

    def phase_summary(self, end_ns: int, vs: str | None = None) -> list[dict]:
        """The phases as summary.json gives them: from, until (seconds), what began them, new flows per SE."""
        phases = self.phases if vs is None else self.vs(vs).phases
        ends = [phase.start_ns for phase in phases[1:]] + [end_ns]
        return [{"from": round(p.start_ns / NS_PER_S, 9), "until": round(until / NS_PER_S, 9), "after": p.after,
                 "flows": dict(sorted(p.flows.items()))} for p, until in zip(phases, ends)]


class Registry:
    """Every node by name; Service Engines also by number (flow tables store owners as numbers)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}
        self.se_names: list[str] = []
        self.se_index: dict[str, int] = {}
        self.se_by_frontend_ip: dict[bytes, str] = {}
        self.se_by_frontend_mac: dict[bytes, str] = {}

    def add(self, node: Any) -> None:
        self.nodes[node.name] = node

    def remove(self, name: str) -> None:
        self.nodes.pop(name, None)

    def add_se(self, se: Any) -> None:
        self.add(se)
        self.se_by_frontend_ip[se.frontend.ip] = se.name
        self.se_by_frontend_mac[se.frontend.mac] = se.name
        self.se_index[se.name] = len(self.se_names)
        self.se_names.append(se.name)

    def se(self, name: str) -> Any:
        return self.nodes[name]

    def service_engines(self) -> Iterator[Any]:
        return (self.nodes[name] for name in self.se_names)


class Runtime:
    """The clock, event log, counters, registry and path policy one running network shares."""

    def __init__(self, clock: Simulator, paths: PathPolicy, on_event: Callable[[dict], None] | None = None):
        self.clock = clock
        self.paths = paths
        self.events = EventLog(clock, on_event)
        self.counters = Counters()
        self.registry = Registry()
        #: Notes a sender on the uncaptured access link leaves for the router to repeat in its comment (why a
        #: client retransmits or aborts, replay's "recorded frame N"), by IP packet; the router takes them.
        self.notes: dict[bytes, str] = {}
        #: Where data-plane reports go (the controller sets itself here when it starts).
        self.control: ControlPlane | None = None
        #: Frames from outside may carry wrong checksums (replay --keep-checksums): SEs then verify each at entry.
        self.verify_checksums = False

    def log(self, kind: str, **fields: Any) -> dict:
        return self.events.log(kind, **fields)

    def note(self, frame: bytes, text: str) -> None:
        """Ask the router to repeat ``text`` when it routes ``frame`` (keyed by the IP packet: MACs change)."""
        if len(self.notes) >= MAX_NOTES:  # a frame that never reached the router: forget the oldest note
            del self.notes[next(iter(self.notes))]
        self.notes[frame[14:]] = text


# -- what nodes expect of the layers above -----------------------------------------

MAX_NOTES = 10_000


class ControlPlane(Protocol):
    """What an SE may tell the controller."""

    def suspect(self, name: str, reporter: str, misses: int) -> None:
        """``reporter`` missed ``misses`` heartbeats in a row from SE ``name``."""

class PoolServer(Protocol):
    """A pool member as a Service Engine sees it."""

    name: str
    ip: bytes
    port: int
    endpoint: str
    nic: Nic


class ServedService(Protocol):
    """A virtual service as the nodes see it (``dataplane.control.virtual_service`` implements it)."""

    name: str
    index: int  # its place in the scenario (0: the first)
    spec: Any  # the scenario's VirtualService: its pool and traffic
    vip: bytes | None  # None: an IPv6-only VS
    vip6: bytes | None  # None: an IPv4-only VS
    vips: tuple[bytes, ...]
    port: int
    listens: bytearray  # 1 at each port the VS listens on
    proto: int
    tag: str  # "vs-b, " in comments when the scenario has several VSs, else ""
    hash_key: bytes
    vni: int
    flow_table: Any
    flows_by_se: Counter[str]
    ipv6_flows_by_se: Counter[str]
    recovering_until: int

    @property
    def primary(self) -> str | None: ...

    @property
    def serving(self) -> list[str]: ...

    @property
    def peers(self) -> list[str]: ...

    def carries(self, name: str) -> bool: ...

    def flow_table_note(self, name: str) -> str | None: ...

    def flow_key(self, view: Any) -> bytes: ...

    def choose(self, key: bytes) -> tuple[str, int]: ...
