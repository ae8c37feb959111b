"""
A built network: its parts, the one way to start it, and its accounting.

``Network`` is what ``builder.build`` returns: the segments, nodes,
virtual service and controller of one scenario, sharing one ``Runtime``.
``start(traffic=...)`` places the VS and starts the control plane (and the
generated connections); ``run`` runs a whole scenario; ``summary`` is
summary.json's content.  Observers see every frame that crosses a segment
(the pytest plugin and replay watch the wire through them).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from ..clock import Simulator, seconds
from ..l2 import Capture, Segment
from ..nodes.context import Runtime
from ..scenario import Scenario
from ..wire import frames
from .traffic import Arrivals

if TYPE_CHECKING:  # built by the builder, which imports this module
    from ..control.controller import Controller
    from ..control.virtual_service import VirtualService
    from ..nodes.management import ControllerNode
    from ..nodes.router import Router
    from .addresses import AddressPool

#: observer(segment name, capture interface or -1 when the frame is not captured, virtual time, frame, comment)
Observer = Callable[[str, int, int, bytes, str], None]


class Network:
    def __init__(self, scenario: Scenario, runtime: Runtime, capture: Capture | None):
        self.scenario = scenario
        self.runtime = runtime
        self.capture = capture
        #: Called as observer(segment, interface, time_ns, frame, comment) for every frame that crosses a segment.
        self.observers: list[Observer] = []
        self.segments: dict[str, Segment] = {}
        self.servers: list[Any] = []
        self.clients: list[Any] = []
        self.router: Router
        self.vs: VirtualService
        self.controller: Controller
        self.free_frontend: AddressPool
        self.free_backend: AddressPool
        self.free_management: AddressPool
        self.controller_node: ControllerNode
        self.started = False

    # -- parts -----------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        return self.runtime.clock

    @property
    def nodes(self) -> dict[str, Any]:
        return self.runtime.registry.nodes

    @property
    def events(self) -> list[dict]:
        return self.runtime.events.events

    @property
    def se_names(self) -> list[str]:
        return self.runtime.registry.se_names

    def service_engines(self) -> list[Any]:
        return list(self.runtime.registry.service_engines())

    # -- the wire --------------------------------------------------------------

    def tap_for(self, name: str, captured: bool) -> Callable[[int, int, bytes, str], None]:
        write = self.capture.write if captured else None
        observers = self.observers

        def tap(index: int, time_ns: int, frame: bytes, comment: str) -> None:
            if write is not None and index >= 0:
                write(index, time_ns, frame, comment)
            if observers:
                for observer in observers:
                    observer(name, index, time_ns, frame, comment)
        return tap

    def write_names(self) -> None:
        """Name the VIP, router, servers and SEs in the capture (its name-resolution block)."""
        if not self.capture:
            return
        names = {frames.ip_text(self.vs.vip): self.vs.name, frames.ip_text(self.router.frontend_nic.ip): "gw",
                 frames.ip_text(self.controller_node.ip): "controller"}
        for server in self.servers:
            names[frames.ip_text(server.ip)] = server.name
        for se in self.runtime.registry.service_engines():
            names.update(self._se_names(se))
        self.capture.add_names(names)

    def name_se(self, se: Any) -> None:
        """Name an SE created during the run in the capture."""
        if self.capture:
            self.capture.add_names(self._se_names(se))

    @staticmethod
    def _se_names(se: Any) -> dict[str, str]:
        names = {frames.ip_text(se.frontend.ip): se.name, frames.ip_text(se.backend.ip): f"{se.name}-backend"}
        management = se.nics.get("management")
        if management is not None:
            names[frames.ip_text(management.ip)] = f"{se.name}-mgmt"
        return names

    # -- running ---------------------------------------------------------------

    def start(self, traffic: bool = True) -> None:
        """Place the VS, start the control plane and, with ``traffic``, the generated connections."""
        if self.started:
            raise RuntimeError("this network has already been started")
        self.started = True
        self.controller.start()
        if traffic:
            sc = self.scenario
            Arrivals(self.sim, sc.traffic, self.clients, sc.seed, sc.duration).start()

    def run(self) -> dict:
        """Start with generated traffic, run the scenario's duration, return the summary."""
        self.start(traffic=True)
        self.sim.run(until_ns=seconds(self.scenario.duration))
        return self.summary()

    # -- accounting ------------------------------------------------------------

    def summary(self) -> dict:
        counters = self.runtime.counters
        open_now = sum(len(c.connections) for c in self.clients)
        outcomes = counters.flow_outcomes
        flows = {"total": counters.flows_total, "completed": outcomes["completed"],
                 "reset": outcomes["reset"], "failed": outcomes["failed"], "open": open_now,
                 "why": {outcome: dict(reasons.most_common()) for outcome, reasons in counters.flow_reasons.items()}}
        drops = Counter(counters.drops)
        for segment in self.segments.values():
            drops.update(segment.drops)
        return {
            "scenario": self.scenario.name, "cloud": self.scenario.cloud, "seed": self.scenario.seed,
            "duration": self.scenario.duration,
            "flows": flows,
            "flows_by_se": {name: self.vs.flows_by_se.get(name, 0) for name in self.se_names},
            "frames_by_segment": {name: seg.frames for name, seg in self.segments.items() if name != "clients"},
            "access_link_frames": self.segments["clients"].frames,
            "drops": dict(sorted(drops.items())),
            "resets_by_se": {se: dict(reasons.most_common()) for se, reasons in sorted(counters.resets.items())},
            "primary": self.vs.primary,
            "service_engines": self.vs.serving,
            "return_path": "via-primary" if self.runtime.paths.return_via_primary else "direct",
            "address_plan": self.address_plan(),
            **self.controller.summary(),
        }

    def address_plan(self) -> dict:
        plan = {}
        for name, node in self.nodes.items():
            plan[name] = {nic_name: {"mac": frames.mac_text(nic.mac), "ip": frames.ip_text(nic.ip)}
                          for nic_name, nic in node.nics.items()}
        primary = self.vs.primary
        plan[self.vs.name] = {"vip": {"mac": frames.mac_text(self.nodes[primary].frontend.mac) if primary else None,
                                      "ip": frames.ip_text(self.vs.vip)}}
        return plan
