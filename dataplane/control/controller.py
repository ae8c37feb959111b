"""
The controller: the SEs' life cycles, their creation and failures, and the scenario's timeline.

It owns the scenario's ``[[events]]`` timeline (``dispatch``), SE creation
with retries and access modes (docs/design.md, B13), failure detection and
what it means for each virtual service (B14): an SE is declared failed when
a peer reports ``dp_hb_timeout_count`` missed data-plane heartbeats
(``suspect``), or when it misses ``controller_heartbeat_miss_limit`` of the
controller's own heartbeats (the only ones that reach an SE with no peer).
The work on the virtual service itself (placement, scale out and in,
migrate, failover, HA modes) is ``VsControl``'s; the CPU model and
autoscale are ``autoscale``'s.  Every step is logged under the event names
of docs/design.md ("Outputs"); an action that cannot be carried out is
refused with a ``<action>.refused`` event that says why, and the run goes on.

It reaches the data plane only through the runtime context (clock, log,
registry) and the ``SeFactory`` the builder hands it for creating SEs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Protocol, Sequence

from ..clock import NS_PER_S, URGENT, seconds
from ..errors import Refused
from ..nodes.client import Client
from ..nodes.context import Runtime
from ..scenario import Event, SeGroup, SeSpec
from ..wire import frames
from .autoscale import CpuMonitor
from .se_state import SeLifecycle, SeState
from .virtual_service import VirtualService
from .vs_control import VsControl

IDLE_SWEEP_INTERVAL = 10.0
#: A steering entry idle this long is dropped; a later packet of the flow finds its owner by flow probe.
FLOW_TABLE_IDLE = 300.0


class SeFactory(Protocol):
    """How the controller gets a new SE onto the networks (the builder implements it)."""

    def create_se(self, name: str, host: str) -> Any: ...

    def has_room_for_se(self, pending: int = 0) -> bool: ...


class Controller:
    def __init__(self, runtime: Runtime, services: Sequence[VirtualService], group: SeGroup,
                 service_engines: Sequence[SeSpec], timeline: Sequence[Event], servers: Sequence[Any],
                 factory: SeFactory, duration: float):
        self.runtime = runtime
        self.sim = runtime.clock
        self.registry = runtime.registry
        self.services = list(services)
        self.group = group
        self.initial_ses = tuple(service_engines)
        self.timeline = tuple(timeline)
        self.servers = list(servers)
        self.factory = factory
        self.lifecycle = SeLifecycle()
        self.refusals: list[dict] = []
        self.failed_hosts: set[str] = set()
        self.creating: dict[str, dict] = {}
        #: Each virtual service's controller, by name, in scenario order.
        self.vs_controls = {vs.name: VsControl(vs, self) for vs in self.services}
        self.cpu = CpuMonitor(self, duration)
        self.expired: Counter[str] = Counter()
        self._controller_misses: Counter[str] = Counter()
        #: True: ``start`` leaves the timeline to a later ``schedule_timeline`` (replay aligns it to its first packet).
        self.timeline_deferred = False

    def log(self, kind: str, **fields: Any) -> None:
        self.runtime.log(kind, **fields)

    def se(self, name: str) -> Any:
        return self.registry.se(name)

    @property
    def several(self) -> bool:
        return len(self.services) > 1

    def carried(self, name: str) -> list[VirtualService]:
        """The virtual services SE ``name`` has a part in (member, joining, draining, standby)."""
        return [vs for vs in self.services if vs.role(name) is not None]

    def describe(self, name: str, vs: VirtualService | None = None) -> str:
        """What ``name`` is now: its part in ``vs`` (or in each VS it carries), else its own state."""
        parts = [(each, each.role(name)) for each in ([vs] if vs is not None else self.services)]
        parts = [(each, role) for each, role in parts if role is not None]
        if parts:
            if len(self.services) == 1 or vs is not None:
                return parts[0][1].value
            return ", ".join(f"{role.value} ({each.name})" for each, role in parts)
        state = self.lifecycle.get(name)
        return state.value if state else "unknown"

    def is_free(self, name: str, vs: VirtualService) -> bool:
        """Connected, believed alive, not in ``vs`` and carrying fewer than ``max_vs_per_se`` VSs."""
        return (self.lifecycle.get(name) is SeState.READY and vs.role(name) is None
                and len(self.carried(name)) < self.group.max_vs_per_se)

    def spare_se(self, exclude: set[str], vs: VirtualService) -> str | None:
        """A connected SE with room for ``vs`` (CPU under ``max_cpu_usage``, counting every VS it carries)."""
        for name in sorted(self.lifecycle.named(SeState.READY)):
            if name not in exclude and self.is_free(name, vs) and self.cpu.utilisation(name) < self.group.max_cpu_usage:
                return name
        return None

    def no_room(self, exclude: set[str], vs: VirtualService) -> str:
        """Why no connected SE outside ``exclude`` has room for ``vs`` (a scale out's refusal says it)."""
        reasons = []
        for name in sorted(self.lifecycle.named(SeState.READY)):
            if name in exclude or vs.role(name) is not None:
                continue
            carried = [each.name for each in self.carried(name)]
            if len(carried) >= self.group.max_vs_per_se:
                reasons.append(f"{name} carries {len(carried)} VSs (max_vs_per_se = {self.group.max_vs_per_se})")
            else:
                cpu = self.cpu.utilisation(name)
                reasons.append(f"{name} is at {cpu:.0f} % CPU (max_cpu_usage = {self.group.max_cpu_usage:g} %)"
                               + (f" with {', '.join(carried)}" if carried else ""))
        return "; ".join(reasons) if reasons else "no other connected SE"

    def new_phase(self, label: str, vs: VirtualService) -> None:
        # The generated clients' connections open now (replay's recorded flows are followed by replay).
        following = [id(conn) for node in self.registry.nodes.values() if isinstance(node, Client)
                     for conn in node.connections.values() if conn.target is vs]
        self.runtime.counters.new_phase(self.sim.now, f"{vs.name}: {label}" if self.several else label, vs.name,
                                        following)

    # -- start -----------------------------------------------------------------

    def start(self) -> None:
        self.runtime.control = self
        for spec in self.initial_ses:
            self.lifecycle.add(spec.name, SeState.READY)
        for se in self.registry.service_engines():
            se.heartbeat.start()
        for vs in self.services:
            control = self.vs_controls[vs.name]
            others = [s.name for s in self.initial_ses if s.name not in vs.placement]
            control.place(standby=others[0] if others and control.legacy else None)
        if not self.timeline_deferred:
            self.schedule_timeline(0)
        self.cpu.start()
        self.sim.every(seconds(IDLE_SWEEP_INTERVAL), self._expire_idle)
        self.sim.every(seconds(self.group.controller_heartbeat_interval), self._controller_heartbeat)

    def schedule_timeline(self, origin_ns: int) -> None:
        """Schedule the ``[[events]]``, each ``at`` seconds after ``origin_ns`` (replay: its first packet)."""
        for event in self.timeline:
            self.sim.at(origin_ns + seconds(event.at), self.dispatch, event, priority=URGENT)

    def _expire_idle(self) -> None:
        """Keep state bounded on long runs: idle flow-table and NAT entries go."""
        for vs in self.services:
            self.expired["flow_table"] += vs.flow_table.expire(self.sim.now - seconds(FLOW_TABLE_IDLE))
        for se in self.registry.service_engines():
            if se.alive:
                self.expired["nat"] += se.expire_idle()

    def dispatch(self, event) -> None:
        """Carry out one ``[[events]]`` action now; a refusal is logged as ``<action>.refused``."""
        handler: Callable = getattr(self, f"do_{event.action}")
        try:
            handler(event)
        except Refused as refusal:
            self.refuse(event.action, str(refusal), event.vs)

    def refuse(self, action: str, reason: str, vs: str | None = None) -> None:
        about = {"vs": vs} if vs else {}
        self.log(f"{action}.refused", **about, reason=reason)
        self.refusals.append({"t": round(self.sim.now / NS_PER_S, 9), "action": action, **about, "reason": reason})

    # -- the VS's operations ---------------------------------------------------------

    def do_scale_out(self, event) -> None:
        self.vs_controls[event.vs].scale_out(event.se, "administrator")

    def do_scale_in(self, event) -> None:
        self.vs_controls[event.vs].scale_in(event.se)

    def do_migrate(self, event) -> None:
        self.vs_controls[event.vs].migrate(event.from_se, None if event.to_new_se else event.to_se)

    def ensure_minimum(self) -> None:
        """Every VS below its HA mode's minimum tries to scale out (a new SE, a recovered one)."""
        for control in self.vs_controls.values():
            control.ensure_minimum()

    # -- SE creation (docs/design.md, B13) -------------------------------------------------

    def do_create_se(self, event) -> None:
        if not self.factory.has_room_for_se(len(self.creating)):
            raise Refused("no free address left on the frontend or backend network for a new SE")
        self._create(event.name, tried=set(), retry=False, then=None, failed=None, host=event.host)

    def can_create(self) -> str | None:
        """None if the controller may create an SE now, else why it may not."""
        if self.group.access != "write":
            return (f"access {self.group.access}: the controller may not create an SE; "
                    "an administrator must create one first (create_se)")
        if not self.factory.has_room_for_se(len(self.creating)):
            return "no free address left on the frontend or backend network for a new SE"
        return None

    def new_se(self, why: str, then: Callable[[str], None], failed: Callable[[str, str], None]) -> str:
        """Create an SE (write access) and call ``then(name)`` once it is connected; returns its name."""
        name = self._next_se_name()
        self._create(name, tried=set(), retry=True, then=lambda: then(name), failed=lambda r: failed(name, r))
        return name

    def _next_se_name(self) -> str:
        taken = set(self.lifecycle.states) | set(self.registry.nodes) | {e.name for e in self.timeline if e.name}
        number = 1
        while f"se-{number}" in taken:
            number += 1
        return f"se-{number}"

    def _create(self, name: str, tried: set[str], retry: bool, then, failed, host: str | None = None) -> None:
        if host is None:
            host = self._pick_host(tried)
            if host is None:
                if failed:
                    failed("no host left to create an SE on")
                return
        tried.add(host)
        if self.lifecycle.get(name) is None:
            self.lifecycle.add(name, SeState.CREATING)
        self.log("se.create.started", se=name, host=host, attempt=len(tried))
        job = {"host": host, "tried": tried, "retry": retry, "then": then, "failed": failed}
        self.creating[name] = job
        if host in self.failed_hosts:
            self.sim.after(seconds(1.0), self._creation_failed, name, f"host {host} is down", priority=URGENT)
        else:
            job["timer"] = self.sim.after(seconds(self.group.se_create_delay), self._created, name, priority=URGENT)

    def _pick_host(self, tried: set[str]) -> str | None:
        load = Counter(se.host for se in self.registry.service_engines())
        choices = [h for h in self.group.hosts if h not in tried and h not in self.failed_hosts]
        return min(choices, key=lambda h: (load[h], self.group.hosts.index(h))) if choices else None

    def _created(self, name: str) -> None:
        job = self.creating.pop(name)
        se = self.factory.create_se(name, job["host"])
        self.lifecycle.apply(name, "created")
        se.heartbeat.start()
        self.log("se.create.completed", se=name, host=job["host"])
        if job["then"]:
            job["then"]()
        else:
            self.ensure_minimum()  # an administrator's SE: a VS that is down may go there

    def _creation_failed(self, name: str, reason: str) -> None:
        job = self.creating.pop(name, None)
        if job is None:
            return
        if job.get("timer"):
            job["timer"].cancel()
        self.log("se.create.failed", se=name, host=job["host"], reason=reason)
        if job["retry"] and self.group.access == "write":
            delay = seconds(self.group.se_create_retry_delay)
            self.sim.after(delay, self._create, name, job["tried"], True, job["then"], job["failed"],
                           priority=URGENT)
        else:
            self.lifecycle.apply(name, "creation_failed")
            if job["failed"]:
                job["failed"](reason)

    # -- failures (docs/design.md, B14) ------------------------------------------------------

    def do_fail_se(self, event) -> None:
        self.fail_se(event.se, "administrator")

    def fail_se(self, name: str, why: str) -> None:
        se = self.registry.nodes.get(name)
        if se is None or not se.alive:
            raise Refused(f"{name} is {'already down' if se else 'not created yet'}")
        se.fail()
        se.failed_because = why

    def suspect(self, name: str, reporter: str, misses: int) -> None:
        """A peer missed ``misses`` data-plane heartbeats from ``name`` in a row (``nodes.heartbeat``)."""
        se = self.registry.nodes.get(name)
        if se is None or self.lifecycle.get(name) is not SeState.READY:
            return
        if se.alive:  # the controller's echo gets an answer: frames were lost, the SE is not down
            self.log("se.suspected", se=name, by=reporter, missed_heartbeats=misses, verdict="alive")
            return
        self._declare_failed(name, f"{reporter} missed {misses} data-plane heartbeats", misses,
                             self.group.dp_hb_frequency * misses)

    def _controller_heartbeat(self) -> None:
        """The controller's own heartbeat to every connected SE: six misses declare one failed."""
        for name in self.lifecycle.named(SeState.READY):
            if self.se(name).alive:
                self._controller_misses.pop(name, None)
                continue
            self._controller_misses[name] += 1
            misses = self._controller_misses[name]
            if misses >= self.group.controller_heartbeat_miss_limit:
                self._declare_failed(name, f"the controller missed {misses} heartbeats", misses,
                                     self.group.controller_heartbeat_interval * misses)

    def _declare_failed(self, name: str, detection: str, misses: int, after: float) -> None:
        se = self.se(name)
        was = self.describe(name)
        self.lifecycle.apply(name, "fail")
        self._controller_misses.pop(name, None)
        se.note_failure(f"{name} failed (declared at {self.sim.now / NS_PER_S:g} s)")
        self.log("se.failed", se=name, reason=getattr(se, "failed_because", "failed"), detected_by=detection,
                 missed_heartbeats=misses, detected_after=round(after, 9), was=was)
        for control in self.vs_controls.values():
            control.se_failed(name)

    def do_recover_se(self, event) -> None:
        name = event.se
        if self.lifecycle.get(name) is not SeState.FAILED:
            state = self.lifecycle.get(name)
            raise Refused(f"{name} is {state.value if state else 'unknown'}, not failed")
        se = self.se(name)
        if se.host in self.failed_hosts:
            raise Refused(f"host {se.host} of {name} is still down")
        se.recover()
        self.lifecycle.apply(name, "recover")
        self.log("se.recovered", se=name)
        for control in self.vs_controls.values():
            control.se_recovered(name)

    def do_fail_host(self, event) -> None:
        host = event.host
        self.failed_hosts.add(host)
        self.log("host.failed", host=host)
        for se in list(self.registry.service_engines()):
            if se.host == host and se.alive:
                self.fail_se(se.name, f"host {host} failed")
        for name, job in list(self.creating.items()):
            if job["host"] == host:
                self._creation_failed(name, f"host {host} failed during creation")

    def do_fail_server(self, event) -> None:
        self._server(event).failed = True
        self.log("server.failed", server=str(event.server))

    def do_recover_server(self, event) -> None:
        self._server(event).failed = False
        self.log("server.recovered", server=str(event.server))

    def _server(self, event):
        for server in self.servers:
            if server.ip == frames.ip_bytes(event.server.ip) and server.port == event.server.port:
                return server
        raise Refused(f"{event.server} is not a pool server")

    # -- summary ---------------------------------------------------------------

    def summary(self) -> dict:
        first = next(iter(self.vs_controls.values())).summary()
        return {
            "refusals": self.refusals,
            "flows_by_phase": self.runtime.counters.phase_summary(self.sim.now),
            "steering_share": first["steering_share"],
            "standby": first["standby"],
            "primary_weight": first["primary_weight"],
            "se_states": {name: self.describe(name) for name in sorted(self.lifecycle.states)},
            "cpu": self.cpu.summary(),
            "cpu_thresholds": {"max_cpu_usage": self.group.max_cpu_usage, "min_cpu_usage": self.group.min_cpu_usage},
            "timeline": self.cpu.timeline.summary(),
            "expired_idle": dict(self.expired),
        }
