"""
The controller: which SEs serve the VS, and every change to that set.

It owns VS placement, the scenario's ``[[events]]`` timeline, and, by the
behaviours of docs/design.md, scale out (B8), scale in (B9), migrate (B10), SE creation with retries and access
modes (B13), failure detection and primary promotion (B14) and HA-mode rules
(B15), logging each step under the event names of docs/design.md
("Outputs").  An action that cannot be carried out is refused with a
``<action>.refused`` event that says why; the run goes on.  SE life cycles
and roles live in ``se_state`` (membership is read off the VS's roles
table); the CPU model and autoscale in ``autoscale``.

It reaches the data plane only through the runtime context (clock, log,
registry) and the ``SeFactory`` the builder hands it for creating SEs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Protocol, Sequence

from ..clock import URGENT, seconds
from ..errors import Refused
from ..nodes.context import Runtime
from ..scenario import Event, SeGroup, SeSpec
from ..wire import frames
from .autoscale import CpuMonitor
from .se_state import Role, SeLifecycle, SeState
from .virtual_service import VirtualService

#: An existing, connected SE joins a VS "in seconds" (Avi docs); a new one must boot first.
SE_JOIN_DELAY = 2.0
IDLE_SWEEP_INTERVAL = 10.0
#: A steering entry idle this long is dropped; a later packet of the flow finds its owner by flow probe.
FLOW_TABLE_IDLE = 300.0


class SeFactory(Protocol):
    """How the controller gets a new SE onto the networks (the builder implements it)."""

    def create_se(self, name: str, host: str) -> Any: ...

    def has_room_for_se(self, pending: int = 0) -> bool: ...


class Controller:
    def __init__(self, runtime: Runtime, vs: VirtualService, group: SeGroup, service_engines: Sequence[SeSpec],
                 timeline: Sequence[Event], servers: Sequence[Any], factory: SeFactory, duration: float):
        self.runtime = runtime
        self.sim = runtime.clock
        self.registry = runtime.registry
        self.vs = vs
        self.group = group
        self.initial_ses = tuple(service_engines)
        self.timeline = tuple(timeline)
        self.servers = list(servers)
        self.factory = factory
        self.lifecycle = SeLifecycle()
        self.refusals: list[dict] = []
        self.failed_hosts: set[str] = set()
        self.creating: dict[str, dict] = {}
        self.scaling_out: str | None = None
        self.cpu = CpuMonitor(self, duration)
        self.expired: Counter[str] = Counter()
        #: True: ``start`` leaves the timeline to a later ``schedule_timeline`` (replay aligns it to its first packet).
        self.timeline_deferred = False

    def log(self, kind: str, **fields: Any) -> None:
        self.runtime.log(kind, **fields)

    def se(self, name: str) -> Any:
        return self.registry.se(name)

    def describe(self, name: str) -> str:
        """What ``name`` is now, in one word: its part in the VS if it has one, else its own state."""
        role = self.vs.role(name)
        if role is not None:
            return role.value
        state = self.lifecycle.get(name)
        return state.value if state else "unknown"

    def is_free(self, name: str) -> bool:
        """Connected, alive and not serving the VS: a scale out or migrate may take it."""
        return self.lifecycle.get(name) is SeState.READY and self.vs.role(name) is None

    # -- start -----------------------------------------------------------------

    def start(self) -> None:
        for spec in self.initial_ses:
            self.lifecycle.add(spec.name, SeState.READY)
        placement = list(self.vs.placement)
        for name in placement:
            self.se(name).monitor.start()
        self.vs.place(placement)
        self.se(placement[0]).announce_vip("placed as primary")
        self.log("vs.placed", vs=self.vs.name, primary=placement[0], service_engines=placement,
                 vip=frames.ip_text(self.vs.vip))
        if not self.timeline_deferred:
            self.schedule_timeline(0)
        self.cpu.start()
        self.sim.every(seconds(IDLE_SWEEP_INTERVAL), self._expire_idle)

    def schedule_timeline(self, origin_ns: int) -> None:
        """Schedule the ``[[events]]``, each ``at`` seconds after ``origin_ns`` (replay: its first packet)."""
        for event in self.timeline:
            self.sim.at(origin_ns + seconds(event.at), self.dispatch, event, priority=URGENT)

    def _expire_idle(self) -> None:
        """Keep state bounded on long runs: idle flow-table and NAT entries go."""
        self.expired["flow_table"] += self.vs.flow_table.expire(self.sim.now - seconds(FLOW_TABLE_IDLE))
        for se in self.registry.service_engines():
            if se.alive:
                self.expired["nat"] += se.expire_idle()

    def dispatch(self, event) -> None:
        """Carry out one ``[[events]]`` action now; a refusal is logged as ``<action>.refused``."""
        handler: Callable = getattr(self, f"do_{event.action}")
        try:
            handler(event)
        except Refused as refusal:
            self.refuse(event.action, str(refusal))

    def refuse(self, action: str, reason: str) -> None:
        self.log(f"{action}.refused", reason=reason)
        self.refusals.append({"t": round(self.sim.now / 1e9, 9), "action": action, "reason": reason})

    def _new_phase(self, label: str) -> None:
        self.runtime.counters.phase = f"{self.sim.now / 1e9:g} s {label}"

    # -- scale out (docs/design.md, B8) ----------------------------------------------------

    def do_scale_out(self, event) -> None:
        self.scale_out(event.se, "administrator")

    def scale_out(self, wanted: str | None, why: str) -> None:
        if self.group.ha_mode == "legacy-active-standby":
            raise Refused("ha_mode legacy-active-standby does not scale out")
        if self.scaling_out is not None:
            raise Refused(f"a scale out ({self.scaling_out}) is already in progress")
        if len(self.vs.members) >= self.group.max_scaleout_per_vs:
            raise Refused(f"the VS is already on {len(self.vs.members)} SEs "
                          f"(max_scaleout_per_vs = {self.group.max_scaleout_per_vs})")
        se = wanted or self._spare_se()
        if wanted and not self.is_free(wanted):
            raise Refused(f"{wanted} is {self.describe(wanted)}, not a connected SE free to join")
        if se is None and self.group.access != "write":
            raise Refused(f"access {self.group.access}: no connected SE is free; "
                          "an administrator must create one first (create_se)")
        if se is None and not self.factory.has_room_for_se(len(self.creating)):
            raise Refused("no free address left on the frontend or backend network for a new SE")
        self.scaling_out = se or "new SE"
        if se is not None:
            self.log("scale_out.started", vs=self.vs.name, se=se, reused=True, reason=why)
            self._join(se, lambda: self._scaled_out(se), lambda reason: self._scale_out_failed(se, reason))
        else:
            name = self._next_se_name()
            self.scaling_out = name
            self.log("scale_out.started", vs=self.vs.name, se=name, reused=False, reason=why)
            self._create(name, tried=set(), retry=True, then=lambda: self._join(
                name, lambda: self._scaled_out(name), lambda reason: self._scale_out_failed(name, reason)))

    def _scale_out_failed(self, name: str, reason: str) -> None:
        self.scaling_out = None
        self.log("scale_out.failed", vs=self.vs.name, se=name, reason=reason)

    def _spare_se(self) -> str | None:
        for name in sorted(self.lifecycle.named(SeState.READY)):
            if self.is_free(name) and self.cpu.utilisation(name) < self.group.max_cpu_usage:
                return name
        return None

    def _join(self, name: str, then: Callable[[], None], failed: Callable[[str], None]) -> None:
        """Add ``name`` to the VS after the join delay ("scaling out"), then call ``then``."""
        self.vs.join(name)
        delay = min(SE_JOIN_DELAY, self.group.vs_se_scaleout_ready_timeout)

        def joined() -> None:
            if self.vs.role(name) is not Role.JOINING:
                failed(f"{name} failed while joining")
                return
            self.se(name).monitor.start()
            restoring = not self.vs.members
            self.vs.joined(name)
            if restoring:  # every SE had failed: the VIP needs a new owner before anything else
                self._promote(name, "the VS had no SE left", planned=False)
            then()
        self.sim.after(seconds(delay), joined, priority=URGENT)

    def _scaled_out(self, name: str) -> None:
        self.scaling_out = None
        self.log("scale_out.completed", vs=self.vs.name, se=name, service_engines=list(self.vs.members))
        self._new_phase(f"after scale out to {name}")

    # -- SE creation (docs/design.md, B13) -------------------------------------------------

    def do_create_se(self, event) -> None:
        if not self.factory.has_room_for_se(len(self.creating)):
            raise Refused("no free address left on the frontend or backend network for a new SE")
        self._create(event.name, tried=set(), retry=False, then=None, host=event.host)

    def _next_se_name(self) -> str:
        taken = set(self.lifecycle.states) | set(self.registry.nodes) | {e.name for e in self.timeline if e.name}
        number = 1
        while f"se-{number}" in taken:
            number += 1
        return f"se-{number}"

    def _create(self, name: str, tried: set[str], retry: bool, then, host: str | None = None) -> None:
        if host is None:
            host = self._pick_host(tried)
            if host is None:
                self.scaling_out = None
                self.log("scale_out.failed", vs=self.vs.name, se=name, reason="no host left to create an SE on")
                return
        tried.add(host)
        if self.lifecycle.get(name) is None:
            self.lifecycle.add(name, SeState.CREATING)
        self.log("se.create.started", se=name, host=host, attempt=len(tried))
        job = {"host": host, "tried": tried, "retry": retry, "then": then}
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
        self.factory.create_se(name, job["host"])
        self.lifecycle.apply(name, "created")
        self.log("se.create.completed", se=name, host=job["host"])
        if job["then"]:
            job["then"]()

    def _creation_failed(self, name: str, reason: str) -> None:
        job = self.creating.pop(name, None)
        if job is None:
            return
        if job.get("timer"):
            job["timer"].cancel()
        self.log("se.create.failed", se=name, host=job["host"], reason=reason)
        if job["retry"] and self.group.access == "write":
            delay = seconds(self.group.se_create_retry_delay)
            self.sim.after(delay, self._create, name, job["tried"], True, job["then"], priority=URGENT)
        else:
            self.lifecycle.apply(name, "creation_failed")
            if self.scaling_out == name:
                self.scaling_out = None
                self.log("scale_out.failed", vs=self.vs.name, se=name, reason=reason)

    # -- scale in and migrate (docs/design.md, B9, B10) ------------------------------------

    def do_scale_in(self, event) -> None:
        self.scale_in(event.se)

    def scale_in(self, name: str) -> None:
        self._check_member(name)
        remaining = len(self.vs.members) - 1
        if remaining < self.group.min_scaleout_per_vs:
            raise Refused(f"the VS would be on {remaining} SEs (min_scaleout_per_vs = {self.group.min_scaleout_per_vs})")
        if self.group.ha_mode == "elastic-active-active" and remaining < 2:
            raise Refused("ha_mode elastic-active-active keeps a VS on at least 2 SEs")
        self.log("scale_in.started", vs=self.vs.name, se=name)
        self._drain(name, "scale in", lambda: self.log("scale_in.completed", vs=self.vs.name, se=name))

    def do_migrate(self, event) -> None:
        source, target = event.from_se, event.to_se
        self._check_member(source)
        if not self.is_free(target):
            what = self.describe(target) if self.lifecycle.get(target) else "not created yet"
            raise Refused(f"{target} is {what}, not a connected SE free to join")
        self.log("migrate.started", vs=self.vs.name, se=source, to=target)

        def joined() -> None:
            if self.vs.role(source) is not Role.MEMBER:  # failed or scaled in meanwhile: nothing left to move
                self.log("migrate.completed", vs=self.vs.name, se=source, to=target,
                         note=f"{source} was already {self.describe(source)}")
                return
            if self.vs.primary == source:
                self._promote(target, f"migrate from {source}", planned=True)
            self._drain(source, f"migrate to {target}",
                        lambda: self.log("migrate.completed", vs=self.vs.name, se=source, to=target))

        def failed(reason: str) -> None:
            self.log("migrate.failed", vs=self.vs.name, se=source, to=target, reason=reason)
        self._join(target, joined, failed)

    def _check_member(self, name: str) -> None:
        if self.vs.role(name) is not Role.MEMBER:
            raise Refused(f"{name} is {self.describe(name)}, not serving the VS")

    def _drain(self, name: str, why: str, then: Callable[[], None]) -> None:
        if self.vs.primary == name:
            self._promote(self.vs.members[1], f"{why} of {name}", planned=True)
        stint = self.vs.drain(name)
        self._new_phase(f"after {why} ({name} draining)")

        def expired() -> None:
            # The stint identifies this drain: a timer of an earlier drain of the same SE must not end a later one.
            if self.vs.roles.stint(name) is not stint:
                return
            reset = self.se(name).reset_all(f"{why}: drain of {self.group.vs_scalein_timeout:g} s expired")
            self.log("drain.expired", vs=self.vs.name, se=name, connections_reset=reset)
            self.vs.drained(name)
            self.se(name).monitor.stop()
            then()
        self.sim.after(seconds(self.group.vs_scalein_timeout), expired, priority=URGENT)

    def _promote(self, name: str, reason: str, planned: bool) -> None:
        old = self.vs.primary if self.vs.primary != name else None
        if old is not None:
            self.se(old).give_up_vip()
        self.vs.promote(name)
        if not planned:
            # The failed primary's flow table is lost with it; the new primary asks (flow probes).
            self.vs.forget_flows()
        self.se(name).announce_vip(f"new primary: {reason}")
        self.log("se.promoted", vs=self.vs.name, se=name, previous=old, reason=reason)

    # -- failures (docs/design.md, B14) ----------------------------------------------------

    def do_fail_se(self, event) -> None:
        self.fail_se(event.se, "administrator")

    def fail_se(self, name: str, why: str) -> None:
        se = self.registry.nodes.get(name)
        if se is None or not se.alive:
            raise Refused(f"{name} is {'already down' if se else 'not created yet'}")
        se.fail()
        group = self.group
        detect_after = group.dp_hb_frequency * group.dp_hb_timeout_count
        self.sim.after(seconds(detect_after), self._detected, name, why, detect_after, priority=URGENT)

    def _detected(self, name: str, why: str, detect_after: float) -> None:
        was, role = self.describe(name), self.vs.role(name)
        was_primary = self.vs.primary == name
        self.lifecycle.apply(name, "fail")
        self.log("se.failed", se=name, reason=why, missed_heartbeats=self.group.dp_hb_timeout_count,
                 detected_after=detect_after, was=was)
        if role is not Role.MEMBER:  # joining (its join timer reports the failure), draining, or not in the VS
            self.vs.lose(name)
            return
        survivors = [m for m in self.vs.members if m != name]
        if was_primary and survivors:
            self._promote(survivors[0], f"primary {name} failed", planned=False)
        self.vs.lose(name)
        self._new_phase(f"after failure of {name}")
        if not survivors:
            self.log("vs.down", vs=self.vs.name, reason=f"last SE {name} failed")
        elif self.group.ha_mode == "elastic-active-active" and len(survivors) < 2:
            try:
                self.scale_out(None, "elastic-active-active keeps 2 SEs")
            except Refused as refusal:
                self.refuse("scale_out", str(refusal))

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
        return {
            "refusals": self.refusals,
            "flows_by_phase": {phase: dict(sorted(c.items()))
                               for phase, c in self.runtime.counters.flows_by_phase.items()},
            "steering_share": {name: round(share, 4) for name, share in self.vs.share().items()},
            "se_states": {name: self.describe(name) for name in sorted(self.lifecycle.states)},
            "cpu": self.cpu.summary(),
            "timeline": self.cpu.timeline.summary(),
            "expired_idle": dict(self.expired),
        }
