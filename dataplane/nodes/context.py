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
from dataclasses import dataclass
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

    @classmethod
    def decide(cls, cloud: str, tunnel_mode: str, client_next_hop: bytes) -> "PathPolicy":
        neutron = cloud == "openstack-neutron"
        via_primary = neutron if tunnel_mode == "auto" else tunnel_mode == "disable-dsr"
        return cls(neutron, neutron, via_primary, client_next_hop)


class EventLog:
    """The control-plane events of a run, in order, each stamped with its virtual time."""

    def __init__(self, clock: Simulator, sink: Callable[[dict], None] | None = None):
        self.clock = clock
        self.sink = sink
        self.events: list[dict] = []

    def log(self, kind: str, **fields: Any) -> dict:
        event = {"t": round(self.clock.now / NS_PER_S, 9), "type": kind, **fields}
        self.events.append(event)
        if self.sink:
            self.sink(event)
        return event


class Counters:
    """What the run counts: drops by reason, resets by SE, flows by outcome, by SE and by phase."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.resets_by_se: Counter[str] = Counter()
        self.flows_total = 0
        self.flow_outcomes: Counter[str] = Counter()
        #: The phase new flows are counted under; the controller names a new one at every change of membership.
        self.phase = "initial placement"
        self.flows_by_phase: dict[str, Counter[str]] = {}

    def drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] += count

    def reset(self, se: str, count: int = 1) -> None:
        self.resets_by_se[se] += count

    def flow_opened(self) -> None:
        self.flows_total += 1

    def flow_closed(self, outcome: str) -> None:
        self.flow_outcomes[outcome] += 1

    def flow_owned(self, se: str) -> None:
        self.flows_by_phase.setdefault(self.phase, Counter())[se] += 1


class Registry:
    """Every node by name; Service Engines also by number (flow tables store owners as numbers)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}
        self.se_names: list[str] = []
        self.se_index: dict[str, int] = {}
        self.se_by_frontend_ip: dict[bytes, str] = {}

    def add(self, node: Any) -> None:
        self.nodes[node.name] = node

    def remove(self, name: str) -> None:
        self.nodes.pop(name, None)

    def add_se(self, se: Any) -> None:
        self.add(se)
        self.se_by_frontend_ip[se.frontend.ip] = se.name
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
        #: Notes a sender leaves for the router to repeat in its comment (replay: "recorded frame N"), by frame.
        self.notes: dict[bytes, str] = {}
        #: Frames from outside may carry wrong checksums (replay --keep-checksums): SEs then verify each at entry.
        self.verify_checksums = False

    def log(self, kind: str, **fields: Any) -> dict:
        return self.events.log(kind, **fields)


# -- what nodes expect of the layers above -----------------------------------------

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
    vip: bytes
    port: int
    proto: int
    hash_key: bytes
    vni: int
    flow_table: Any
    flows_by_se: Counter[str]

    @property
    def primary(self) -> str | None: ...

    @property
    def serving(self) -> list[str]: ...

    def carries(self, name: str) -> bool: ...

    def flow_key(self, view: Any) -> bytes: ...

    def choose(self, key: bytes) -> tuple[str, int]: ...
