"""
The CPU model, CPU alerts and autoscale (docs/design.md, B12).

Each SE's utilisation is the work offered to it (frames it processed, the
primary's forwarding included) over ``capacity_pps``, sampled every second
of virtual time.  Every ``auto_rebalance_interval`` the controller averages
the samples of the SEs serving the VS over the interval and raises
``alert.cpu_high`` above ``max_cpu_usage`` or ``alert.cpu_low`` below
``min_cpu_usage``.  With ``auto_rebalance`` and write access it then scales
out (high) or in (low) by one SE: at most one change per interval, within
the scale-out bounds.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..clock import NS_PER_S, Simulator, seconds
from ..errors import Refused
from ..nodes.context import Registry
from ..scenario import SeGroup
from .timeline import Timeline
from .virtual_service import VirtualService

SAMPLE_PERIOD_S = 1


class Rebalancer(Protocol):
    """What autoscale asks of the controller that owns it."""

    sim: Simulator
    registry: Registry
    vs: VirtualService
    group: SeGroup

    def log(self, kind: str, **fields: Any) -> None: ...

    def refuse(self, action: str, reason: str) -> None: ...

    def scale_out(self, wanted: str | None, why: str) -> None: ...

    def scale_in(self, name: str) -> None: ...


class CpuMonitor:
    def __init__(self, controller: Rebalancer, duration: float):
        self.controller = controller
        self.sim = controller.sim
        self.registry = controller.registry
        self.vs = controller.vs
        self.group = controller.group
        self.duration = duration
        self.last_packets: dict[str, int] = {}
        self.latest: dict[str, float] = {}
        self.window: dict[str, list[float]] = {}
        self.peak: dict[str, float] = {}
        self.total: dict[str, list[float]] = {}  # se -> [sum of samples, samples]: the run's mean, in constant memory
        self.timeline = Timeline(duration)
        self.last_flows: dict[str, int] = {}

    def start(self) -> None:
        until = seconds(self.duration) + 1
        self.sim.every(SAMPLE_PERIOD_S * NS_PER_S, self.sample, until_ns=until)
        self.sim.every(seconds(self.group.auto_rebalance_interval), self.evaluate, until_ns=until)

    def utilisation(self, name: str) -> float:
        return self.latest.get(name, 0.0)

    def sample(self) -> None:
        for se in self.registry.service_engines():
            offered = se.packets - self.last_packets.get(se.name, 0)
            self.last_packets[se.name] = se.packets
            percent = 100.0 * offered / (self.group.capacity_pps * SAMPLE_PERIOD_S)
            self.latest[se.name] = percent
            self.window.setdefault(se.name, []).append(percent)
            self.peak[se.name] = max(self.peak.get(se.name, 0.0), percent)
            total = self.total.setdefault(se.name, [0.0, 0])
            total[0] += percent
            total[1] += 1
            flows = self.vs.flows_by_se.get(se.name, 0)
            self.timeline.record(self.sim.now / NS_PER_S, se.name, percent, flows - self.last_flows.get(se.name, 0),
                                 len(se.nat))
            self.last_flows[se.name] = flows

    def evaluate(self) -> None:
        serving = [name for name in self.vs.members if self.window.get(name)]
        if not serving:
            return
        averages = {name: sum(self.window[name]) / len(self.window[name]) for name in serving}
        self.window.clear()
        average = sum(averages.values()) / len(averages)
        per_se = {name: round(value, 2) for name, value in averages.items()}
        if average > self.group.max_cpu_usage:
            self.controller.log("alert.cpu_high", vs=self.vs.name, average=round(average, 2),
                         threshold=self.group.max_cpu_usage, per_se=per_se)
            self._act("scale_out", None)
        elif average < self.group.min_cpu_usage:
            self.controller.log("alert.cpu_low", vs=self.vs.name, average=round(average, 2),
                         threshold=self.group.min_cpu_usage, per_se=per_se)
            members = self.vs.members
            if len(members) > 1:
                self._act("scale_in", members[-1])

    def _act(self, action: str, se: str | None) -> None:
        if not self.group.auto_rebalance:
            return
        if self.group.access != "write":
            self.controller.refuse(action, f"autoscale needs write access (access is {self.group.access})")
            return
        try:
            if action == "scale_out":
                self.controller.scale_out(None, "autoscale: cpu high")
            else:
                self.controller.scale_in(se)
        except Refused as refusal:
            self.controller.refuse(action, f"autoscale: {refusal}")

    def summary(self) -> dict:
        return {name: {"average": round(total / samples, 2), "peak": round(self.peak[name], 2)}
                for name, (total, samples) in sorted(self.total.items()) if samples}

