"""Scenario files: TOML -> validated, frozen dataclasses.

This module owns the scenario file contract (docs/design.md, "Scenario files") and its defaults
(docs/design.md, "Behaviours"): it reads TOML, checks every key, and returns a `Scenario` whose
values are already typed (netaddr addresses, float seconds, tuples). Nothing
downstream re-validates input, so every user mistake must surface here as one
`ScenarioError` naming the file and the dotted key path. It imports no
dataplane module outside `dataplane.scenario`: `networks` and `services`
hold the network and virtual-service sections, `fields` the shared ranges.

Each section is a dataclass whose fields carry their converter and default
(`validation` checks type and range, unknown and missing keys);
hand-written code here only does the cross-field checks (VIP inside
frontend, placement vs. scale-out bounds, event references...). Checks run
in a fixed order and stop at the first problem, so a given bad file always
yields the same message.

Every value is bounded (README, "Limits"): a number's range, a string's size
and a list's length are declared with its field, next to its default, and
`key_reference()` reads them back for README's key table. Reading the file
itself is `dataplane.scenario.reading`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass

from .fields import (_HOST_STR, _INTERVAL, _SE_NAME_STR, _SECONDS, _SHORT_DELAY, MAX_EVENTS, MAX_HOSTS,
                     MAX_SERVICE_ENGINES, MAX_VIRTUAL_SERVICES)
from .networks import Network, parse_networks, with_management
from .services import (UDP_PAYLOAD_MAX, HealthMonitor, Pool, Server, Traffic, VirtualService, _server,
                       parse_services, parse_traffic)
from .validation import (_bool, _build, _default_text, _doc, _enum, _f, _Invalid, _list, _listing, _num,
                         _raw_table, _reference, _spec, _str, _table, _tname)

__all__ = ["ScenarioError", "Scenario", "Network", "SeGroup", "SeSpec", "VirtualService", "UDP_PAYLOAD_MAX",
           "Pool", "Server", "HealthMonitor", "Traffic", "Event", "key_reference", "parse", "with_seed"]


class ScenarioError(ValueError):
    """One precise, single-line message naming the file and key."""

    def __init__(self, message: str):
        # The CLI prints this as its one stderr line; never let a value break it.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


_dc = dataclass(frozen=True, slots=True)


@_dc
class SeGroup:
    max_scaleout_per_vs: int = _f(_num(int, 1, 64), 4)
    min_scaleout_per_vs: int = _f(_num(int, 1, 64), 1)
    vs_scalein_timeout: float = _f(_SECONDS, 30.0)
    vs_se_scaleout_ready_timeout: float = _f(_SECONDS, 25.0)
    se_tunnel_mode: str = _f(_enum("auto", "disable-dsr", "enable-dsr"), "auto")
    se_tunnel_udp_port: int = _f(_num(int, 1, 65534), 1550)  # flow probes use the port above
    access: str = _f(_enum("write", "read", "none"), "write")
    auto_rebalance: bool = _f(_bool, False)
    auto_rebalance_interval: float = _f(_INTERVAL, 300.0)
    max_cpu_usage: float = _f(_num(float, 40, 90, "%"), 80.0)
    min_cpu_usage: float = _f(_num(float, 20, 60, "%"), 30.0)
    # The product's default: an SE with this many virtual services has no room for another.
    max_vs_per_se: int = _f(_num(int, 1, 1000), 10)
    capacity_pps: float = _f(_num(float, 1, 1e9, "pps"), 50000.0)
    ha_mode: str = _f(_enum("elastic-n+m", "elastic-active-active", "legacy-active-standby"),
                      "elastic-n+m")
    se_create_delay: float = _f(_SECONDS, 60.0)
    se_create_retry_delay: float = _f(_SECONDS, 180.0)
    dp_hb_frequency: float = _f(_INTERVAL, 0.1)
    dp_hb_timeout_count: int = _f(_num(int, 1, 1000), 10)
    dp_hb_in_capture: bool = _f(_bool, True)
    # The controller's own heartbeat to every SE (docs/design.md, B14): the only one that sees an SE with no peer.
    controller_heartbeat_interval: float = _f(_INTERVAL, 10.0)
    controller_heartbeat_miss_limit: int = _f(_num(int, 1, 20), 6)
    se_flow_probe_timer: float = _f(_INTERVAL, 0.1)
    se_flow_probe_retries: int = _f(_num(int, 0, 5), 2)
    processing_delay: float = _f(_SHORT_DELAY, 10e-6)
    # Unset: the primary's share follows its CPU headroom, as the product does; a number pins it (B5).
    primary_weight: int | None = _f(_num(int, 1, 1000), None)
    # The SE's source ports toward servers (the product's defaults); health probes use the ports above.
    ephemeral_portrange_start: int = _f(_num(int, 1024, 65535), 4096)
    ephemeral_portrange_end: int = _f(_num(int, 1024, 64511), 61440)
    # A NAT entry whose server never answered the SYN is forgotten after this long (not the 10-minute idle).
    tcp_half_open_timeout: float = _f(_INTERVAL, 30.0)
    # () while parsing means "not given": parse() fills in the SEs' hosts.
    hosts: tuple[str, ...] = _f(_list(_HOST_STR, MAX_HOSTS, nonempty=True, unique=True), ())


@_dc
class SeSpec:
    name: str = _f(_SE_NAME_STR)
    host: str = _f(_HOST_STR)


_ACTIONS = {  # action -> (required keys, optional keys), besides "at" and "action"
    "scale_out": ((), ("se", "vs")), "scale_in": (("se",), ("vs",)), "migrate": (("from",), ("to", "to_new_se", "vs")),
    "create_se": (("name", "host"), ()), "fail_se": (("se",), ()), "recover_se": (("se",), ()),
    "fail_server": (("server",), ()), "recover_server": (("server",), ()),
    "fail_host": (("host",), ()),
}


@_dc
class Event:
    at: float = _f(_SECONDS)
    action: str = _f(_enum(*_ACTIONS))
    se: str | None = _f(_SE_NAME_STR, None)
    from_se: str | None = _f(_SE_NAME_STR, None, key="from")
    to_se: str | None = _f(_SE_NAME_STR, None, key="to")
    server: Server | None = _f(_server, None)
    host: str | None = _f(_HOST_STR, None)
    name: str | None = _f(_SE_NAME_STR, None)
    to_new_se: bool = _f(_bool, False)
    # Required when the scenario has more than one; parse() fills in the only one otherwise.
    vs: str | None = _f(_str(), None)


@_dc
class Scenario:
    name: str
    cloud: str
    seed: int
    duration: float
    networks: dict[str, Network]
    se_group: SeGroup
    service_engines: tuple[SeSpec, ...]
    virtual_services: tuple[VirtualService, ...]
    #: The shared clients and the traffic every virtual service gets unless it says otherwise.
    traffic: Traffic
    events: tuple[Event, ...]
    source: str

    @property
    def virtual_service(self) -> VirtualService:
        """The first virtual service (the only one in the ``[virtual_service]`` form)."""
        return self.virtual_services[0]

    @property
    def pool(self) -> Pool:
        return self.virtual_services[0].pool


# Sections are kept raw here and built in dependency order by parse().
_TOP = {
    "name": (_str(), MISSING),
    "cloud": (_enum("vmware", "openstack-nuage", "openstack-neutron"), "vmware"),
    "seed": (_num(int, 0, 2**64 - 1), 1),
    "duration": (_INTERVAL, MISSING),
    "networks": (_raw_table, MISSING),
    "se_group": (_raw_table, {}),
    "service_engines": (_list(_raw_table, MAX_SERVICE_ENGINES, nonempty=True), MISSING),
    "virtual_service": (_raw_table, None),
    "virtual_services": (_list(_raw_table, MAX_VIRTUAL_SERVICES, nonempty=True), None),
    "pool": (_raw_table, None),
    "traffic": (_raw_table, None),
    "events": (_list(_raw_table, MAX_EVENTS), ()),
}


# ------------------------------------------------------------------ sections

def _se_group(raw) -> SeGroup:
    g = _build(SeGroup, raw, "se_group")
    if g.min_scaleout_per_vs > g.max_scaleout_per_vs:
        raise _Invalid("se_group.min_scaleout_per_vs", f"must be <= max_scaleout_per_vs "
                       f"({g.max_scaleout_per_vs}), got {g.min_scaleout_per_vs}")
    if g.ephemeral_portrange_start > g.ephemeral_portrange_end:
        raise _Invalid("se_group.ephemeral_portrange_start", f"must be <= ephemeral_portrange_end "
                       f"({g.ephemeral_portrange_end}), got {g.ephemeral_portrange_start}")
    if g.min_cpu_usage >= g.max_cpu_usage:
        raise _Invalid("se_group.min_cpu_usage", f"must be < max_cpu_usage "
                       f"({g.max_cpu_usage}), got {g.min_cpu_usage}")
    return g


def _service_engines(raw_list) -> tuple[SeSpec, ...]:
    ses: dict[str, SeSpec] = {}
    for i, t in enumerate(raw_list):
        se = _build(SeSpec, t, f"service_engines[{i}]")
        if se.name in ses:
            raise _Invalid(f"service_engines[{i}].name", f"duplicate SE name '{se.name}'")
        ses[se.name] = se
    return tuple(ses.values())


def _events(raw_list, duration, ses, group: SeGroup, services) -> tuple[Event, ...]:
    parsed, spec = [], _spec(Event)
    for i, t in enumerate(raw_list):
        p = f"events[{i}]"
        # Unknown keys first, then at/action, then keys that don't fit the action,
        # and only then the values of the keys the action uses.
        f = _table(t, p, spec, keys=("at", "action"))
        required, optional = _ACTIONS[f["action"]]
        for key in t:
            if key not in ("at", "action") + required + optional:
                raise _Invalid(f"{p}.{key}", f"not a key of action '{f['action']}'")
        for key in required:
            if key not in t:
                raise _Invalid(f"{p}.{key}", f"required by action '{f['action']}'")
        f.update(_table(t, p, spec, keys=[k for k in required + optional if k in t]))
        if f["at"] > duration:
            raise _Invalid(f"{p}.at", f"{f['at']} is after duration ({duration})")
        f["from_se"], f["to_se"] = f.pop("from", None), f.pop("to", None)
        parsed.append((i, Event(**f)))
    # Stable sort: events at the same instant keep file order.
    parsed.sort(key=lambda ie: ie[1].at)
    known = {s.name for s in ses}
    hosts = set(group.hosts) | {s.host for s in ses}
    servers = {server for vs in services for server in vs.pool.servers}
    for i, (index, ev) in enumerate(parsed):
        p = f"events[{index}]"
        ev = _with_vs(ev, p, services)
        parsed[i] = (index, ev)
        for key, val in (("se", ev.se), ("from", ev.from_se), ("to", ev.to_se)):
            if val is not None and val not in known:
                raise _Invalid(f"{p}.{key}", f"unknown SE '{val}' (not in service_engines "
                                             f"and not created by an earlier create_se event)")
        if ev.action == "migrate" and ev.from_se == ev.to_se:
            raise _Invalid(f"{p}.to", f"same SE as from ('{ev.to_se}')")
        if ev.action == "migrate" and (ev.to_se is None) == (not ev.to_new_se):
            raise _Invalid(f"{p}.to", "give either to (an SE) or to_new_se = true (the controller creates one)")
        if ev.server is not None and ev.server not in servers:
            raise _Invalid(f"{p}.server", f"{ev.server} is not a pool server")
        if ev.action == "create_se":
            if ev.name in known:
                raise _Invalid(f"{p}.name", f"SE '{ev.name}' already exists")
            known.add(ev.name)
            hosts.add(ev.host)
        elif ev.host is not None and ev.host not in hosts:
            # A typo here would fail nothing and silently test nothing.
            raise _Invalid(f"{p}.host", f"unknown host '{ev.host}' (hosts: "
                                        f"{_listing(sorted(hosts))})")
    return tuple(ev for _, ev in parsed)


def _with_vs(ev: Event, p: str, services) -> Event:
    """An action on a virtual service names it (required with several); the only one is filled in."""
    if "vs" not in _ACTIONS[ev.action][1]:
        return ev
    names = [vs.name for vs in services]
    if ev.vs is None:
        if len(names) > 1:
            raise _Invalid(f"{p}.vs", f"required: the scenario has {len(names)} virtual services "
                                      f"({_listing(names)})")
        return dataclasses.replace(ev, vs=names[0])
    if ev.vs not in names:
        raise _Invalid(f"{p}.vs", f"unknown virtual service '{ev.vs}' (virtual services: {_listing(names)})")
    return ev


# ------------------------------------------------------------------- public

def _check_room(nets, ses, services) -> None:
    """Each SE needs an IPv4 address on every network besides the gateway, VIPs, servers and controller.

    An IPv6 network is a /64 or larger: it always has room.
    """
    fe, be = nets["frontend"], nets["backend"]
    servers = {server.ip for vs in services for server in vs.pool.servers if server.ip.version == 4}
    vips = sum(1 for vs in services if vs.vip is not None)
    taken = {"frontend": 1 + vips, "backend": len(servers) + (1 if be.gateway else 0), "management": 1}
    for net in (fe, be, nets["management"]):
        room = max(0, net.cidr.size - 2 - taken[net.name])
        if room < len(ses):
            raise _Invalid(f"networks.{net.name}", f"{net.cidr} has room for {room} SE(s) besides its other "
                                                   f"hosts; {len(ses)} listed")


def parse(data: dict, source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a dict (as tomllib returns it)."""
    try:
        if not isinstance(data, dict):
            raise _Invalid("scenario", f"expected table, got {_tname(data)}")
        top = _table(data, "", _TOP)
        nets = parse_networks(top["networks"])
        group = _se_group(top["se_group"])
        ses = _service_engines(top["service_engines"])
        if not group.hosts:  # default: where the listed SEs run, in order of first appearance
            group = dataclasses.replace(group, hosts=tuple(dict.fromkeys(s.host for s in ses)))
        if top["traffic"] is None:
            raise _Invalid("traffic", "missing required key")
        traffic = parse_traffic(top["traffic"], nets, top["duration"])
        services = parse_services(top, nets, group, ses, traffic, top["duration"])
        _check_client_families(traffic, services)
        nets = with_management(nets, traffic.clients)
        events = _events(top["events"], top["duration"], ses, group, services)
        _check_room(nets, ses, services)
    except _Invalid as e:
        raise ScenarioError(f"{source}: {e}") from None
    return Scenario(top["name"], top["cloud"], top["seed"], top["duration"], nets, group, ses,
                    services, traffic, events, source)


def _check_client_families(traffic: Traffic, services) -> None:
    """A client network of a family no VIP has would send nothing: say so rather than run idle."""
    for i, network in enumerate(traffic.clients):
        key = "vip6" if network.version == 6 else "vip"
        if all(getattr(vs, key) is None for vs in services):
            raise _Invalid(f"traffic.clients[{i}]", f"{network} is IPv{network.version} but no virtual service has "
                                                    f"a {key}: its clients would have nothing to connect to")


def key_reference() -> list[tuple[str, str, str]]:
    """(dotted key, default, what is accepted) for every scenario key: README's key table, from the code."""
    top = [(key, _default_text(default), _doc(conv)) for key, (conv, default) in _TOP.items()
           if key not in ("networks", "se_group", "service_engines", "virtual_service", "virtual_services", "pool",
                          "traffic", "events")]
    management = [("networks.management.cidr", "chosen", "IPv4 CIDR, unicast, overlapping no other network"),
                  ("networks.management.latency", "20 µs", _doc(_SHORT_DELAY))]
    return (top + _reference(Network, "networks.frontend") + _reference(Network, "networks.backend") + management
            + _reference(SeGroup, "se_group") + [("service_engines", "required", _doc(_TOP["service_engines"][0]))]
            + _reference(SeSpec, "service_engines[]") + _reference(VirtualService, "virtual_service")
            + _reference(Pool, "pool") + _reference(HealthMonitor, "pool.health_monitor")
            + [("virtual_services", "none", _doc(_TOP["virtual_services"][0])),
               ("virtual_services[].pool", "required", "table: the keys of `pool`"),
               ("virtual_services[].traffic", "none", "table: the keys of `traffic` but `clients`")]
            + _reference(Traffic, "traffic") + [("events", "none", _doc(_TOP["events"][0]))]
            + _reference(Event, "events[]"))


def with_seed(scenario: Scenario, seed: int) -> Scenario:
    """The same scenario with another seed (the CLI's --seed)."""
    try:
        seed = _TOP["seed"][0](seed, "seed")
    except _Invalid as e:
        raise ScenarioError(f"{scenario.source}: {e}") from None
    return dataclasses.replace(scenario, seed=seed)
