"""
The CPU model, CPU alerts, autoscale and the primary's own share (docs/design.md, B5, B12).

Each SE's utilisation is the work offered to it (frames it processed or had
to drop, the primary's forwarding included) over ``capacity_pps``, sampled
every second of virtual time.  The rules follow the product's, SE by SE:

- every ``auto_rebalance_interval`` each SE's average over the interval is
  compared with ``max_cpu_usage`` and ``min_cpu_usage``; an SE past one gets
  ``alert.cpu_high`` or ``alert.cpu_low`` naming it;
- with ``auto_rebalance`` and write access, the controller acts on one SE
  per interval, and only if the last ``LAST_SECONDS`` of the interval are
  past the threshold too: on a hot SE, the VS that makes the most of its
  packets in the interval is scaled out if that is more than
  ``SCALE_OUT_SHARE`` of them, else it is migrated away; a cold SE is
  scaled in from the VS that makes the fewest of its packets (among those
  on more than one SE);
- unless ``primary_weight`` pins it, every ``PRIMARY_SHARE_PERIOD`` the
  primary's weight in the Maglev table follows its CPU headroom against the
  secondaries' ("the primary will automatically adjust the percentage of
  traffic across the eligible SEs based on available CPU").
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from ..clock import NS_PER_S, Simulator, seconds
from ..errors import Refused
from ..nodes.context import Registry
from ..scenario import SeGroup
from .timeline import Timeline
from .virtual_service import VirtualService

SAMPLE_PERIOD_S = 1
LAST_SECONDS = 30
SCALE_OUT_SHARE = 0.7
PRIMARY_SHARE_PERIOD = 10
#: The primary's weight moves between these (secondaries weigh 100), in steps of at least ``SHARE_STEP``.
PRIMARY_WEIGHT_RANGE = (10, 100)
SHARE_STEP = 10


class Rebalancer(Protocol):
    """What autoscale asks of the controller that owns it."""

    sim: Simulator
    registry: Registry
    services: list[VirtualService]
    vs_controls: dict[str, Any]
    group: SeGroup

    def log(self, kind: str, **fields: Any) -> None: ...

    def refuse(self, action: str, reason: str, vs: str | None = None) -> None: ...


class _SeLoad:
    """One SE's samples: the interval's running mean, the last seconds, the run's mean and peak."""

    __slots__ = ("latest", "interval_sum", "interval_n", "recent", "total", "samples", "peak", "packets", "flows",
                 "vs_packets")

    def __init__(self) -> None:
        self.latest = self.interval_sum = self.total = self.peak = 0.0
        self.interval_n = self.samples = self.packets = self.flows = 0
        self.recent: deque[float] = deque(maxlen=LAST_SECONDS)
        #: Each VS's packet count on this SE when the interval began.
        self.vs_packets: dict[str, int] = {}

    def add(self, percent: float) -> None:
        self.latest = percent
        self.interval_sum += percent
        self.interval_n += 1
        self.recent.append(percent)
        self.total += percent
        self.samples += 1
        self.peak = max(self.peak, percent)


class CpuMonitor:
    def __init__(self, controller: Rebalancer, duration: float):
        self.controller = controller
        self.sim = controller.sim
        self.registry = controller.registry
        self.services = controller.services
        self.group = controller.group
        self.duration = duration
        self.load: dict[str, _SeLoad] = {}
        self.timeline = Timeline(duration)
        self.share_changes = 0

    def start(self) -> None:
        until = seconds(self.duration) + 1
        self.sim.every(SAMPLE_PERIOD_S * NS_PER_S, self.sample, until_ns=until)
        self.sim.every(seconds(self.group.auto_rebalance_interval), self.evaluate, until_ns=until)

    def utilisation(self, name: str) -> float:
        load = self.load.get(name)
        return load.latest if load else 0.0

    # -- sampling ----------------------------------------------------------------------

    def sample(self) -> None:
        now_s = self.sim.now / NS_PER_S
        for se in self.registry.service_engines():
            load = self.load.setdefault(se.name, _SeLoad())
            offered, load.packets = se.packets - load.packets, se.packets
            load.add(100.0 * offered / (self.group.capacity_pps * SAMPLE_PERIOD_S))
            flows = sum(vs.flows_by_se.get(se.name, 0) for vs in self.services)
            self.timeline.record(now_s, se.name, load.latest, flows - load.flows, len(se.nat))
            load.flows = flows
        if round(now_s) % PRIMARY_SHARE_PERIOD == 0:
            for vs in self.services:
                if vs.auto_share:
                    self._adjust_primary_share(vs)

    def _mean_recent(self, name: str, seconds_: int) -> float:
        recent = list(self.load[name].recent)[-seconds_:] if name in self.load else []
        return sum(recent) / len(recent) if recent else 0.0

    def _adjust_primary_share(self, vs: VirtualService) -> None:
        primary = vs.primary
        secondaries = [name for name in vs.members if name != primary]
        if primary is None or not secondaries:
            return
        headroom = max(0.0, 100.0 - self._mean_recent(primary, PRIMARY_SHARE_PERIOD))
        others = sum(max(0.0, 100.0 - self._mean_recent(n, PRIMARY_SHARE_PERIOD)) for n in secondaries) / len(secondaries)
        low, high = PRIMARY_WEIGHT_RANGE
        weight = high if others <= 0 else max(low, min(high, round(100 * headroom / others)))
        if weight == vs.primary_weight or (abs(weight - vs.primary_weight) < SHARE_STEP and low < weight < high):
            return  # small moves are noise: the table is rebuilt only for a real change
        previous = vs.primary_weight
        vs.set_primary_weight(weight)
        self.share_changes += 1
        self.controller.log("primary.share", vs=vs.name, se=primary, weight=weight, previous=previous,
                            share=round(vs.share().get(primary, 0.0), 4),
                            cpu=round(self._mean_recent(primary, PRIMARY_SHARE_PERIOD), 2))

    # -- alerts and autoscale ----------------------------------------------------------

    def evaluate(self) -> None:
        hot, cold = [], []
        group = self.group
        shares = {}
        for name in dict.fromkeys(name for vs in self.services for name in vs.members):
            load = self.load.get(name)
            if load is None or not load.interval_n:
                continue
            shares[name] = self._interval_packets(name, load)
            average = load.interval_sum / load.interval_n
            recent = self._mean_recent(name, LAST_SECONDS)
            dominant = max(shares[name], key=shares[name].get) if shares[name] else self.services[0].name
            if average > group.max_cpu_usage:
                self.controller.log("alert.cpu_high", se=name, vs=dominant, average=round(average, 2),
                                    last_30s=round(recent, 2), threshold=group.max_cpu_usage)
                if recent > group.max_cpu_usage:
                    hot.append((average, name))
            elif average < group.min_cpu_usage:
                self.controller.log("alert.cpu_low", se=name, vs=dominant, average=round(average, 2),
                                    last_30s=round(recent, 2), threshold=group.min_cpu_usage)
                if recent < group.min_cpu_usage:
                    cold.append((average, name))
        for load in self.load.values():
            load.interval_sum, load.interval_n = 0.0, 0
        if hot:
            self._act_on_hot(max(hot)[1], shares[max(hot)[1]])
        elif cold:
            self._act_on_cold(min(cold)[1], shares[min(cold)[1]])

    def _interval_packets(self, name: str, load: _SeLoad) -> dict[str, int]:
        """Packets each VS made on SE ``name`` since the last evaluation (and start the next count)."""
        se = self.registry.se(name)
        counts = {}
        for vs in self.services:
            now = se.binding(vs).packets
            counts[vs.name] = now - load.vs_packets.get(vs.name, 0)
            load.vs_packets[vs.name] = now
        return counts

    def _act_on_hot(self, name: str, packets: dict[str, int]) -> None:
        """Scale out the VS that makes most of the hot SE's packets, or migrate it away if it does not dominate."""
        total = sum(packets.values())
        vs = max(packets, key=packets.get)
        if total == 0 or packets[vs] / total > SCALE_OUT_SHARE:
            self._act("scale_out", name, vs)
        else:
            self._act("migrate", name, vs)

    def _act_on_cold(self, name: str, packets: dict[str, int]) -> None:
        """Scale the cold SE in from the VS that makes the fewest of its packets and can lose an SE."""
        candidates = [vs for vs in self.services if name in vs.members and len(vs.members) > 1]
        if candidates:
            self._act("scale_in", name, min(candidates, key=lambda vs: packets.get(vs.name, 0)).name)

    def _act(self, action: str, se: str, vs: str) -> None:
        if not self.group.auto_rebalance:
            return
        if self.group.access != "write":
            self.controller.refuse(action, f"autoscale needs write access (access is {self.group.access})", vs)
            return
        control = self.controller.vs_controls[vs]
        try:
            if action == "scale_out":
                control.scale_out(None, f"autoscale: {se} cpu high")
            elif action == "migrate":
                control.migrate(se, None)
            else:
                control.scale_in(se)
        except Refused as refusal:
            self.controller.refuse(action, f"autoscale: {refusal}", vs)

    def summary(self) -> dict:
        return {name: {"average": round(load.total / load.samples, 2), "peak": round(load.peak, 2)}
                for name, load in sorted(self.load.items()) if load.samples}
