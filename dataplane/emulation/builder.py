"""
Build a scenario into a live network: segments, router, servers, SEs, clients, controller.

``build`` is the one place that turns a ``Scenario`` into objects (mininet's
``Topo`` to ``Mininet`` step): it decides the address plan, wires the three
segments (``clients`` - router - ``frontend`` - SEs - ``backend`` -
servers), hands every node its own configuration and the shared
``Runtime``, and gives the controller a way to create SEs later
(``SeBuilder``).  ``Hooks`` let a caller put its own nodes in (replay puts
its recorded clients on the access link and its recording-playing servers
in the pool) without rewiring a built network.

Nodes are made in a fixed order (router, servers, SEs, clients): the order
of ports on a segment is the order a flood reaches them, so it is part of
what makes two runs byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import netaddr

from ..clock import Simulator, seconds
from ..control.controller import Controller
from ..control.virtual_service import VirtualService
from ..l2 import Capture, Segment
from ..nodes.client import Client
from ..nodes.context import PathPolicy, Runtime
from ..nodes.management import SEGMENT as management_segment
from ..nodes.management import ControllerNode
from ..nodes.router import Router
from ..nodes.server import Server
from ..nodes.service_engine import ServiceEngine
from ..scenario import Scenario, ScenarioError
from ..wire import frames
from .addresses import AddressPool, client_addresses, client_gateways, host_range
from .network import Network

#: (runtime, clients segment, router, first client address) -> the node that stands for the clients.
AccessLink = Callable[[Runtime, Segment, Router, bytes], Any]


@dataclass(frozen=True)
class Hooks:
    """Where a caller plugs its own nodes into a network as it is built."""

    #: Makes each pool server: called as ``Server`` is, (runtime, name, ip, port, segment, request_bytes,
    #: response_bytes, seed).
    server_class: Callable[..., Server] = Server
    #: If given, replaces the generated clients on the access link.
    access_link: AccessLink | None = None


def build(scenario: Scenario, capture_file: BinaryIO | None = None, on_event: Callable[[dict], None] | None = None,
          application: str = "dataplane", hooks: Hooks = Hooks()) -> Network:
    """Turn ``scenario`` into a network ready to ``start``; frames go to ``capture_file`` if given."""
    clock = Simulator()
    frontend_net = scenario.networks["frontend"]
    gateway = frames.ip_bytes(frontend_net.gateway)
    gateway6 = frames.ip_bytes(frontend_net.gateway6) if frontend_net.gateway6 is not None else None
    group = scenario.se_group
    paths = PathPolicy.decide(scenario.cloud, group.se_tunnel_mode, gateway, gateway6)
    runtime = Runtime(clock, paths, on_event)
    capture = None
    if capture_file is not None:
        capture = Capture(capture_file, application, f"scenario {scenario.name}, seed {scenario.seed}")
    net = Network(scenario, runtime, capture)
    several = len(scenario.virtual_services) > 1
    net.services = [VirtualService(spec, group, scenario.seed, index, several)
                    for index, spec in enumerate(scenario.virtual_services)]
    _wire(net, scenario, hooks)
    net.controller = Controller(runtime, net.services, group, scenario.service_engines, scenario.events, net.servers,
                                SeBuilder(net), scenario.duration)
    return net


def _wire(net: Network, sc: Scenario, hooks: Hooks) -> None:
    frontend_net, backend_net = sc.networks["frontend"], sc.networks["backend"]
    runtime = net.runtime
    # The clients' access link is emulated but not captured: every packet on it
    # crosses the frontend again with the same TCP 4-tuple, and Wireshark 4.0
    # reports a duplicated multi-segment PDU as a reassembly error (README).
    clients_seg = _segment(net, "clients", frontend_net.latency, captured=False)
    frontend = _segment(net, "frontend", frontend_net.latency, runtime.paths.port_security)
    backend = _segment(net, "backend", backend_net.latency, runtime.paths.port_security)

    gateways = client_gateways(sc.traffic.clients)
    net.router = Router(runtime, "gw", clients_seg, gateways, frontend, runtime.paths.client_next_hop,
                        frontend_net.cidr, runtime.paths.client_next_hop6, frontend_net.cidr6)
    runtime.registry.add(net.router)

    _servers(net, sc, hooks, backend)
    _management(net, sc)
    vips = {vip for vs in sc.virtual_services for vip in (vs.vip, vs.vip6) if vip is not None}
    servers = {server.ip for vs in sc.virtual_services for server in vs.pool.servers}
    net.free_frontend = AddressPool(frontend_net.cidr, {frontend_net.gateway} | vips)
    net.free_backend = AddressPool(backend_net.cidr, servers | {backend_net.gateway})
    # IPv6 (dual stack): the SEs take addresses of each cidr6 the same way, from ::11 on.
    net.free_frontend6 = AddressPool(frontend_net.cidr6, {frontend_net.gateway6} | vips) if frontend_net.cidr6 else None
    net.free_backend6 = AddressPool(backend_net.cidr6, servers | {backend_net.gateway6}) if backend_net.cidr6 else None
    for spec in sc.service_engines:
        add_service_engine(net, spec.name, spec.host)

    addresses = client_addresses(sc.traffic.clients)
    if hooks.access_link is not None:
        first = next(addresses, None)
        first_ip = first[0] if first else bytes((192, 0, 0, 8))
        access = hooks.access_link(runtime, clients_seg, net.router, first_ip)
        runtime.registry.add(access)
    else:
        for ip, gateway in addresses:
            client = Client(runtime, f"client-{len(net.clients) + 1}", ip, gateway, clients_seg, sc.seed)
            net.clients.append(client)
            runtime.registry.add(client)
    _refuse_shared_macs(net, sc)
    net.write_names()


def _refuse_shared_macs(net: Network, sc: Scenario) -> None:
    """Two NICs with one MAC on a segment would take each other's frames: refuse the scenario.

    Only IPv6-only hosts can collide (their MAC hashes the address, ``wire.ipv6.mac_for_ipv6``).
    """
    for segment in net.segments.values():
        owners: dict[bytes, str] = {}
        for nic in segment.ports:
            other = owners.setdefault(nic.mac, nic.label)
            if other != nic.label:
                raise ScenarioError(f"{sc.source}: {other} and {nic.label} would share the MAC "
                                    f"{frames.mac_text(nic.mac)} on {segment.name} (their IPv6 addresses hash "
                                    f"alike): change one address")


def _servers(net: Network, sc: Scenario, hooks: Hooks, backend: Segment) -> None:
    """One server per pool address, named in order of first appearance; each VS's pool lists its own."""
    runtime = net.runtime
    by_address: dict = {}
    for vs in sc.virtual_services:
        members = []
        for spec in vs.pool.servers:
            server = by_address.get(spec)
            if server is None:
                traffic = vs.traffic
                server = hooks.server_class(runtime, f"server-{len(net.servers) + 1}", frames.ip_bytes(spec.ip),
                                            spec.port, backend, traffic.request_bytes, traffic.response_bytes, sc.seed)
                by_address[spec] = server
                net.servers.append(server)
                runtime.registry.add(server)
            members.append(server)
        net.pools[vs.name] = members


def _management(net: Network, sc: Scenario) -> None:
    """The management network: the controller at its first host address, SEs from .11 on."""
    management = sc.networks["management"]
    first, _ = host_range(management.cidr)
    segment = _segment(net, management_segment, management.latency)
    broadcast = netaddr.IPAddress(management.cidr.last).packed  # the broadcast address (or a /31's, /32's last)
    net.controller_node = ControllerNode(net.runtime, first.to_bytes(4, "big"), segment, broadcast)
    net.runtime.registry.add(net.controller_node)
    net.free_management = AddressPool(management.cidr, {netaddr.IPAddress(first)})


def _segment(net: Network, name: str, latency: float, port_security: bool = False, captured: bool = True) -> Segment:
    captured = captured and net.capture is not None
    index = net.capture.add_segment(name) if captured else -1
    segment = Segment(net.runtime.clock, name, index, seconds(latency), port_security, net.tap_for(name, captured))
    net.segments[name] = segment
    return segment


def add_service_engine(net: Network, name: str, host: str) -> ServiceEngine:
    sc = net.scenario
    services = [(vs, net.pools[vs.name]) for vs in net.services]
    se = ServiceEngine(net.runtime, name, host, net.segments["frontend"], net.free_frontend.take(),
                       net.segments["backend"], net.free_backend.take(), services, sc.se_group, sc.seed,
                       net.free_frontend6.take() if net.free_frontend6 else None,
                       net.free_backend6.take() if net.free_backend6 else None)
    se.attach_management(net.segments[management_segment], net.free_management.take())
    net.runtime.registry.add_se(se)
    return se


class SeBuilder:
    """The controller's way to put a new SE on a built network (``control.controller.SeFactory``)."""

    def __init__(self, net: Network):
        self.net = net

    def create_se(self, name: str, host: str) -> ServiceEngine:
        se = add_service_engine(self.net, name, host)
        self.net.name_se(se)
        return se

    def has_room_for_se(self, pending: int = 0) -> bool:
        """True if every network has an address left for one more SE besides ``pending`` ones."""
        net = self.net
        return min(net.free_frontend.remaining, net.free_backend.remaining, net.free_management.remaining) > pending
