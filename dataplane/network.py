"""
The emulated network: a scenario built into live segments and nodes, and run.

``Network`` owns the address plan (who gets which IP and MAC), wires the
three segments (``clients`` - router - ``frontend`` - SEs - ``backend`` -
servers), starts the traffic and the control plane on the virtual clock,
and keeps the run's accounting (flows by outcome and by SE, frames by
segment, drops by reason, the event log).  It decides the per-cloud paths
once: whether responses return through the primary, and whether the
primary reaches secondaries through the tunnel (Neutron port security
forbids it to send client source addresses from its own port).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, BinaryIO, Callable

import netaddr

from . import frames
from .capture import Capture
from .client import Client
from .controller import Controller
from .l2 import Segment
from .router import Router
from .server import Server
from .service_engine import ServiceEngine
from .sim import NS_PER_S, Simulator, seconds
from .virtual_service import VirtualService

SE_ADDRESS_OFFSET = 11
MAX_CLIENTS = 256


class Network:
    def __init__(self, scenario, capture_file: BinaryIO | None = None,
                 on_event: Callable[[dict], None] | None = None, application: str = "dataplane",
                 server_class: type = Server, generate_traffic: bool = True):
        self.scenario = scenario
        self.server_class = server_class
        self.generate_traffic = generate_traffic
        #: Called as observer(segment_name, time_ns, frame, comment) for every frame that crosses
        #: a segment (the pytest plugin and replay watch the wire through this).
        self.observers: list[Callable[[str, int, bytes, str], None]] = []
        #: Notes a sender leaves for the router to repeat (replay: "recorded frame N"), keyed by frame.
        self.frame_notes: dict[bytes, str] = {}
        self.sim = Simulator()
        self.capture = None
        if capture_file is not None:
            self.capture = Capture(capture_file, application, f"scenario {scenario.name}, seed {scenario.seed}")
        self.on_event = on_event
        self.events: list[dict] = []
        self.drops: Counter[str] = Counter()
        self.resets_by_se: Counter[str] = Counter()
        self.flow_outcomes: Counter[str] = Counter()
        self.flows_total = 0
        self.nodes: dict[str, Any] = {}
        self.se_index: dict[str, int] = {}
        self.se_names: list[str] = []
        self.se_by_frontend_ip: dict[bytes, str] = {}
        self._decide_paths()
        self.vs = VirtualService(scenario.virtual_service, scenario.se_group, scenario.seed)
        self._build()
        self.controller = Controller(self)

    # -- construction ----------------------------------------------------------

    def _decide_paths(self) -> None:
        cloud = self.scenario.cloud
        mode = self.scenario.se_group.se_tunnel_mode
        self.port_security = cloud == "openstack-neutron"
        self.forward_in_tunnel = self.port_security
        if mode == "auto":
            self.return_via_primary = cloud == "openstack-neutron"
        else:
            self.return_via_primary = mode == "disable-dsr"

    def _segment(self, name: str, latency: float, port_security: bool = False, captured: bool = True) -> Segment:
        captured = captured and self.capture is not None
        index = self.capture.add_segment(name) if captured else -1
        segment = Segment(self.sim, name, index, seconds(latency), port_security,
                          self._tap_for(name, captured))
        self.segments[name] = segment
        return segment

    def _build(self) -> None:
        sc = self.scenario
        frontend_net, backend_net = sc.networks["frontend"], sc.networks["backend"]
        self.segments: dict[str, Segment] = {}
        # The clients' access link is emulated but not captured: every packet on it
        # crosses the frontend again with the same TCP 4-tuple, and Wireshark 4.0
        # reports a duplicated multi-segment PDU as a reassembly error (README).
        clients_seg = self._segment("clients", frontend_net.latency, captured=False)
        frontend = self._segment("frontend", frontend_net.latency, self.port_security)
        backend = self._segment("backend", backend_net.latency, self.port_security)

        client_hosts = [list(net.iter_hosts()) for net in sc.traffic.clients]
        client_gateways = [frames.ip_bytes(hosts[0]) for hosts in client_hosts]
        gateway = frames.ip_bytes(frontend_net.gateway)
        self.client_next_hop = gateway
        self.router = Router(self, "gw", clients_seg, client_gateways, frontend, gateway, frontend_net.cidr)
        self.nodes["gw"] = self.router

        self.servers: list[Server] = []
        for number, spec in enumerate(sc.pool.servers, 1):
            server = self.server_class(self, f"server-{number}", frames.ip_bytes(spec.ip), spec.port, backend)
            self.servers.append(server)
            self.nodes[server.name] = server

        self._free_frontend = self._address_pool(frontend_net.cidr, {frontend_net.gateway, sc.virtual_service.vip})
        self._free_backend = self._address_pool(backend_net.cidr, {s.ip for s in sc.pool.servers} |
                                                ({backend_net.gateway} if backend_net.gateway else set()))
        for spec in sc.service_engines:
            self.add_service_engine(spec.name, spec.host)

        self.clients: list[Client] = []
        for hosts, gw in zip(client_hosts, client_gateways):
            for ip in hosts[1:]:
                if len(self.clients) >= MAX_CLIENTS:
                    break
                client = Client(self, f"client-{len(self.clients) + 1}", frames.ip_bytes(ip), gw, clients_seg)
                self.clients.append(client)
                self.nodes[client.name] = client
        self._write_names()

    def _tap_for(self, name: str, captured: bool):
        write = self.capture.write if captured else None
        observers = self.observers

        def tap(index: int, time_ns: int, frame: bytes, comment: str) -> None:
            if write is not None:
                write(index, time_ns, frame, comment)
            if observers:
                for observer in observers:
                    observer(name, time_ns, frame, comment)
        return tap

    @staticmethod
    def _address_pool(cidr: netaddr.IPNetwork, taken: set) -> list[bytes]:
        # SEs take host .11 onward (se-1 at 10.10.0.11, as in the design's examples), then wrap
        # around to the low addresses; addresses already in use are skipped.
        taken_ints = {int(ip) for ip in taken}
        hosts = list(cidr.iter_hosts())
        hosts = hosts[SE_ADDRESS_OFFSET - 1:] + hosts[:SE_ADDRESS_OFFSET - 1]
        return [frames.ip_bytes(ip) for ip in hosts if int(ip) not in taken_ints]

    def add_service_engine(self, name: str, host: str) -> ServiceEngine:
        se = ServiceEngine(self, name, host, self.segments["frontend"], self._free_frontend.pop(0),
                           self.segments["backend"], self._free_backend.pop(0))
        self.nodes[name] = se
        self.se_by_frontend_ip[se.frontend.ip] = name
        self.se_index[name] = len(self.se_names)
        self.se_names.append(name)
        if self.capture and hasattr(self, "clients"):
            self.capture.add_names(self._se_names(se))
        return se

    def has_room_for_se(self, pending: int = 0) -> bool:
        """True if both networks have an address left for one more SE besides ``pending`` ones."""
        return min(len(self._free_frontend), len(self._free_backend)) > pending

    def service_engines(self) -> list[ServiceEngine]:
        return [self.nodes[name] for name in self.se_names]

    def _se_names(self, se: ServiceEngine) -> dict[str, str]:
        return {frames.ip_text(se.frontend.ip): se.name, frames.ip_text(se.backend.ip): f"{se.name}-backend"}

    def _write_names(self) -> None:
        if not self.capture:
            return
        names = {frames.ip_text(self.vs.vip): self.vs.name, frames.ip_text(self.router.frontend_nic.ip): "gw"}
        for server in self.servers:
            names[frames.ip_text(server.ip)] = server.name
        for name in self.se_names:
            names.update(self._se_names(self.nodes[name]))
        self.capture.add_names(names)

    # -- accounting ------------------------------------------------------------

    def log(self, kind: str, **fields: Any) -> None:
        event = {"t": round(self.sim.now / NS_PER_S, 9), "type": kind, **fields}
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    def count_drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] += count

    def count_reset(self, se: str) -> None:
        self.resets_by_se[se] += 1

    def flow_opened(self, conn) -> None:
        self.flows_total += 1

    def flow_closed(self, conn) -> None:
        self.flow_outcomes[conn.outcome] += 1

    def flow_owned(self, se: str, view: frames.FlowView) -> None:
        self.controller.flow_owned(se, view)

    # -- running ---------------------------------------------------------------

    def start_traffic(self) -> None:
        traffic = self.scenario.traffic
        if not self.generate_traffic or traffic.new_connections_per_second <= 0 or not self.clients:
            return
        rng = random.Random(f"{self.scenario.seed}:arrivals")
        stop = traffic.stop if traffic.stop is not None else self.scenario.duration
        if traffic.stop is None:
            # Leave each connection time to finish inside the run, but keep opening
            # connections for at least half of it even when they outlive the run.
            lifetime = (traffic.requests_per_connection - 1) * traffic.request_interval + 1.0
            stop = max(stop - lifetime, traffic.start + (stop - traffic.start) / 2)
        self._arrivals = rng
        self._arrivals_stop = seconds(stop)
        self._arrivals_opened = 0
        self._next_arrival(seconds(traffic.start))

    def _next_arrival(self, after_ns: int) -> None:
        """Schedule the next connection (one pending arrival at a time: memory does not grow with the run)."""
        traffic = self.scenario.traffic
        at = after_ns + max(1, round(self._arrivals.expovariate(traffic.new_connections_per_second) * NS_PER_S))
        if at > self._arrivals_stop or (traffic.max_connections is not None
                                        and self._arrivals_opened >= traffic.max_connections):
            return
        self._arrivals_opened += 1
        client = self.clients[self._arrivals.randrange(len(self.clients))]
        self.sim.at(at, self._arrive, client, self._arrivals_opened)

    def _arrive(self, client: Client, number: int) -> None:
        client.open(number)
        self._next_arrival(self.sim.now)

    def run(self) -> dict:
        self.controller.start()
        self.start_traffic()
        self.sim.run(until_ns=seconds(self.scenario.duration))
        return self.summary()

    def summary(self) -> dict:
        open_now = sum(len(c.connections) for c in self.clients)
        flows = {"total": self.flows_total, "completed": self.flow_outcomes["completed"],
                 "reset": self.flow_outcomes["reset"], "failed": self.flow_outcomes["failed"], "open": open_now}
        drops = Counter(self.drops)
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
            "resets_by_se": dict(sorted(self.resets_by_se.items())),
            "primary": self.vs.primary,
            "service_engines": self.vs.serving,
            "return_path": "via-primary" if self.return_via_primary else "direct",
            "address_plan": self.address_plan(),
            **self.controller.summary(),
        }

    def address_plan(self) -> dict:
        plan = {}
        for name, node in self.nodes.items():
            plan[name] = {nic_name: {"mac": frames.mac_text(nic.mac), "ip": frames.ip_text(nic.ip)}
                          for nic_name, nic in node.nics.items()}
        plan[self.vs.name] = {"vip": {"mac": frames.mac_text(self.nodes[self.vs.primary].frontend.mac)
                                      if self.vs.primary else None, "ip": frames.ip_text(self.vs.vip)}}
        return plan
