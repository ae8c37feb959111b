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
        #: The virtual services, in scenario order, and each one's pool members (server nodes).
        self.services: list[VirtualService] = []
        self.pools: dict[str, list[Any]] = {}
        self.controller: Controller
        self.free_frontend: AddressPool
        self.free_backend: AddressPool
        self.free_management: AddressPool
        self.free_frontend6: AddressPool | None = None
        self.free_backend6: AddressPool | None = None
        self.controller_node: ControllerNode
        self.started = False

    # -- parts -----------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        return self.runtime.clock

    @property
    def vs(self) -> VirtualService:
        """The first virtual service (the only one of a ``[virtual_service]`` scenario)."""
        return self.services[0]

    def service(self, name: str | None = None) -> VirtualService:
        """The virtual service called ``name`` (None: the only one); ValueError names the choices."""
        if name is None and len(self.services) == 1:
            return self.services[0]
        for vs in self.services:
            if vs.name == name:
                return vs
        raise ValueError(f"unknown virtual service {name!r}: choose one of {', '.join(v.name for v in self.services)}"
                         if name is not None else
                         f"this network has {len(self.services)} virtual services: say which "
                         f"({', '.join(v.name for v in self.services)})")

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
        names = {frames.ip_text(vip): vs.name for vs in self.services for vip in vs.vips}
        names |= {frames.ip_text(address): "gw" for address in (self.router.frontend_nic.ip6,) if address}
        names |= {frames.ip_text(self.router.frontend_nic.ip): "gw",
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
        for nic, label in ((se.frontend, se.name), (se.backend, f"{se.name}-backend")):
            if nic.ip6 is not None:
                names[frames.ip_text(nic.ip6)] = label
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
            for vs in self.services:
                Arrivals(self.sim, vs, self.clients, sc.seed, sc.duration).start()

    def run(self) -> dict:
        """Start with generated traffic, run the scenario's duration, return the summary."""
        self.start(traffic=True)
        self.sim.run(until_ns=seconds(self.scenario.duration))
        return self.summary()

    # -- accounting ------------------------------------------------------------

    def summary(self) -> dict:
        counters = self.runtime.counters
        open_now = sum(len(c.connections) for c in self.clients)
        flows = _flows(counters.flows_total, counters.flow_outcomes, counters.flow_reasons, open_now)
        drops = Counter(counters.drops)
        for segment in self.segments.values():
            drops.update(segment.drops)
        services = self.services
        serving = list(dict.fromkeys(name for vs in services for name in vs.serving))
        return {
            "scenario": self.scenario.name, "cloud": self.scenario.cloud, "seed": self.scenario.seed,
            "duration": self.scenario.duration,
            "flows": flows,
            "flows_by_se": {name: sum(vs.flows_by_se.get(name, 0) for vs in services) for name in self.se_names},
            "frames_by_segment": {name: seg.frames for name, seg in self.segments.items() if name != "clients"},
            "access_link_frames": self.segments["clients"].frames,
            "drops": dict(sorted(drops.items())),
            "resets_by_se": {se: dict(reasons.most_common()) for se, reasons in sorted(counters.resets.items())},
            "primary": self.vs.primary,
            "service_engines": serving,
            "return_path": "via-primary" if self.runtime.paths.return_via_primary else "direct",
            "address_plan": self.address_plan(),
            **self.controller.summary(),
            "virtual_services": {vs.name: self._service_summary(vs) for vs in services},
        }

    def _service_summary(self, vs: VirtualService) -> dict:
        counters = self.runtime.counters.vs(vs.name)
        open_now = sum(1 for c in self.clients for conn in c.connections.values() if conn.target is vs)
        control = self.controller.vs_controls[vs.name].summary()
        return {
            **{key: frames.ip_text(vip) for key, vip in (("vip", vs.vip), ("vip6", vs.vip6)) if vip is not None},
            "protocol": vs.spec.protocol,
            "ports": [low if low == high else f"{low}-{high}" for low, high in vs.spec.ports],
            "primary": vs.primary, "service_engines": vs.serving, "standby": vs.standby,
            "flows": _flows(counters.flows_total, counters.outcomes, counters.reasons, open_now),
            "flows_by_se": {name: vs.flows_by_se.get(name, 0) for name in self.se_names if vs.flows_by_se.get(name)},
            **({"flows_by_family": _by_family(vs, self.se_names)} if vs.vip and vs.vip6 else {}),
            "flows_by_phase": self.runtime.counters.phase_summary(self.sim.now, vs.name),
            "survival": [row.summary() for row in counters.survival],
            "drops": dict(sorted(counters.drops.items())),
            "steering_share": control["steering_share"], "primary_weight": control["primary_weight"],
        }

    def address_plan(self) -> dict:
        plan = {}
        for name, node in self.nodes.items():
            plan[name] = {nic_name: _nic_plan(nic) for nic_name, nic in node.nics.items()}
        for vs in self.services:
            primary = vs.primary
            mac = frames.mac_text(self.nodes[primary].frontend.mac) if primary else None
            plan[vs.name] = {key: {"mac": mac, "ip": frames.ip_text(vip)}
                             for key, vip in (("vip", vs.vip), ("vip6", vs.vip6)) if vip is not None}
        return plan


def _nic_plan(nic) -> dict:
    """A NIC in the address plan: its MAC and addresses (``ip`` IPv4, ``ip6`` IPv6, the ones it has)."""
    plan = {"mac": frames.mac_text(nic.mac)}
    if nic.ip is not None:
        plan["ip"] = frames.ip_text(nic.ip)
    if nic.ip6 is not None:
        plan["ip6"] = frames.ip_text(nic.ip6)
    return plan


def _flows(total: int, outcomes: Counter, reasons: dict, open_now: int) -> dict:
    """summary.json's ``flows``: how many, how they ended, and why the reset and failed ones did."""
    return {"total": total, "completed": outcomes["completed"], "reset": outcomes["reset"],
            "failed": outcomes["failed"], "open": open_now,
            "why": {outcome: dict(counted.most_common()) for outcome, counted in reasons.items()}}


def _by_family(vs: VirtualService, se_names) -> dict:
    """A dual-stack VS's new flows per SE, split by address family: both families share one Maglev table."""
    by_se = {name: vs.flows_by_se[name] for name in se_names if vs.flows_by_se.get(name)}
    return {"ipv4": {name: n - vs.ipv6_flows_by_se.get(name, 0) for name, n in by_se.items()},
            "ipv6": {name: vs.ipv6_flows_by_se.get(name, 0) for name in by_se}}
