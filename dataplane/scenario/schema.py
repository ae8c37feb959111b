"""Scenario files: TOML -> validated, frozen dataclasses.

This module owns the scenario file contract (docs/design.md, "Scenario files") and its defaults
(docs/design.md, "Behaviours"): it reads TOML, checks every key, and returns a `Scenario` whose
values are already typed (netaddr addresses, float seconds, tuples). Nothing
downstream re-validates input, so every user mistake must surface here as one
`ScenarioError` naming the file and the dotted key path. It imports no other
dataplane module but `dataplane.scenario.validation`.

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
import re
from dataclasses import MISSING, dataclass

from netaddr import IPAddress, IPNetwork

from .networks import Network, inside, parse_networks, with_management
from .validation import (MICROSECOND, YEAR, _bool, _build, _default_text, _doc, _enum, _expect, _f,
                         _Invalid, _ip, _list, _listing, _net, _num, _raw_table, _reference, _show, _spec, _str,
                         _table, _tname)

__all__ = ["ScenarioError", "Scenario", "Network", "SeGroup", "SeSpec", "VirtualService",
           "Pool", "Server", "HealthMonitor", "Traffic", "Event", "key_reference", "parse", "with_seed"]


class ScenarioError(ValueError):
    """One precise, single-line message naming the file and key."""

    def __init__(self, message: str):
        # The CLI prints this as its one stderr line; never let a value break it.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


# Every number is bounded where its field is declared (README, "Limits"); these are the shared ranges.
# A year of virtual time bounds every time: the ns clock and pcapng's 64-bit timestamps stay far from overflow.
_SECONDS = _num(float, 0.0, YEAR, "s")          # a delay or a moment: 0 means "at once"
_INTERVAL = _num(float, MICROSECOND, YEAR, "s")  # something that repeats: shorter would spin the clock
_SHORT_DELAY = _num(float, 0.0, 1.0, "s")       # per-hop latency and processing: no network takes longer
_PORT = _num(int, 1, 65535)
_COUNT = _num(int, 1, 1_000_000)
_SE_NAME_STR = _str(re.compile(r"[a-z0-9][a-z0-9-]*"), "SE name ([a-z0-9][a-z0-9-]*)", max_bytes=63)
_HOST_STR = _str(re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), "host name", max_bytes=253)
_HTTP_CODE = _str(re.compile(r"[1-5](xx|[0-9]{2})"), "HTTP status pattern (like 2xx or 200)", max_bytes=3)
# A health-monitor request is one TCP segment: MSS 1460 less the blank line that ends it.
HTTP_REQUEST_BYTES = 1456
MAX_SERVICE_ENGINES = 1000
MAX_HOSTS = 1000
MAX_SERVERS = 65_536
MAX_CLIENT_NETWORKS = 256
MAX_EVENTS = 100_000
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


@_dc
class VirtualService:
    name: str = _f(_str())
    vip: IPAddress = _f(_ip)
    port: int = _f(_PORT)
    protocol: str = _f(_enum("tcp", "udp"))
    placement: tuple[str, ...] = _f(_list(_SE_NAME_STR, 64, nonempty=True, unique=True))


@_dc
class Server:
    ip: IPAddress
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def _server(v, p):
    _expect(v, p, (str,), '"ip:port" string')
    ip, sep, port = v.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port):  # ASCII digits: str.isdigit() takes '١٢' as 12
        raise _Invalid(p, f'expected "ip:port", got {_show(v)}')
    return Server(_ip(ip, p), _PORT(int(port), p))


_server.doc = '`"ip:port"`, IPv4'


def _health_monitor(v, p):
    return _build(HealthMonitor, v, p)


_health_monitor.doc = "table"


@_dc
class HealthMonitor:
    type: str = _f(_enum("tcp", "http", "icmp", "none"), "tcp")
    send_interval: float = _f(_INTERVAL, 10.0)
    receive_timeout: float = _f(_INTERVAL, 4.0)
    successful_checks: int = _f(_num(int, 1, 50), 2)
    failed_checks: int = _f(_num(int, 1, 50), 2)
    http_request: str = _f(_str(max_bytes=HTTP_REQUEST_BYTES, lines=True), "GET / HTTP/1.0")
    http_response_codes: tuple[str, ...] = _f(_list(_HTTP_CODE, 100, nonempty=True, unique=True),
                                              ("2xx", "3xx"))


@dataclass(frozen=True, slots=True, kw_only=True)  # keyword-only: servers has no default
class Pool:
    lb_algorithm: str = _f(_enum("round-robin", "least-connections", "consistent-hash"),
                           "least-connections")
    servers: tuple[Server, ...] = _f(_list(_server, MAX_SERVERS, nonempty=True, unique=True))
    health_monitor: HealthMonitor = _f(_health_monitor, HealthMonitor())


@_dc
class Traffic:
    clients: tuple[IPNetwork, ...] = _f(_list(_net(), MAX_CLIENT_NETWORKS, nonempty=True))
    # 0: no generated traffic. Slower than one a million seconds is no rate at all (and overflows the clock).
    new_connections_per_second: float = _f(_num(float, 1e-6, 1e6, "/s", or_zero=True), 10.0)
    requests_per_connection: int = _f(_COUNT, 1)
    request_interval: float = _f(_INTERVAL, 1.0)
    request_bytes: int = _f(_num(int, 1, 1_000_000, "bytes"), 200)
    response_bytes: int = _f(_num(int, 1, 10_000_000, "bytes"), 1500)
    start: float = _f(_SECONDS, 0.0)
    stop: float | None = _f(_INTERVAL, None)          # None: until duration
    max_connections: int | None = _f(_num(int, 1, 1_000_000_000), None)
    # A UDP client asks again when no answer comes, as a resolver does, then goes on with the flow.
    udp_timeout: float = _f(_INTERVAL, 1.0)
    udp_tries: int = _f(_num(int, 1, 10), 3)


_ACTIONS = {  # action -> (required keys, optional keys), besides "at" and "action"
    "scale_out": ((), ("se",)), "scale_in": (("se",), ()), "migrate": (("from",), ("to", "to_new_se")),
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


@_dc
class Scenario:
    name: str
    cloud: str
    seed: int
    duration: float
    networks: dict[str, Network]
    se_group: SeGroup
    service_engines: tuple[SeSpec, ...]
    virtual_service: VirtualService
    pool: Pool
    traffic: Traffic
    events: tuple[Event, ...]
    source: str


# Sections are kept raw here and built in dependency order by parse().
_TOP = {
    "name": (_str(), MISSING),
    "cloud": (_enum("vmware", "openstack-nuage", "openstack-neutron"), "vmware"),
    "seed": (_num(int, 0, 2**64 - 1), 1),
    "duration": (_INTERVAL, MISSING),
    "networks": (_raw_table, MISSING),
    "se_group": (_raw_table, {}),
    "service_engines": (_list(_raw_table, MAX_SERVICE_ENGINES, nonempty=True), MISSING),
    "virtual_service": (_raw_table, MISSING),
    "pool": (_raw_table, MISSING),
    "traffic": (_raw_table, MISSING),
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


def _virtual_service(raw, nets, group: SeGroup, ses) -> VirtualService:
    vs = _build(VirtualService, raw, "virtual_service")
    fe = nets["frontend"]
    inside(vs.vip, fe, "virtual_service.vip")
    if vs.vip == fe.gateway:
        raise _Invalid("virtual_service.vip", f"{vs.vip} is the gateway of networks.frontend")
    names = [s.name for s in ses]
    for i, se in enumerate(vs.placement):
        if se not in names:
            raise _Invalid(f"virtual_service.placement[{i}]",
                           f"unknown SE '{se}' (service_engines: {_listing(names)})")
    n, p = len(vs.placement), "virtual_service.placement"
    if n > group.max_scaleout_per_vs:
        raise _Invalid(p, f"{n} SEs placed but se_group.max_scaleout_per_vs is "
                          f"{group.max_scaleout_per_vs}")
    if n < group.min_scaleout_per_vs:
        raise _Invalid(p, f"{n} SEs placed but se_group.min_scaleout_per_vs is "
                          f"{group.min_scaleout_per_vs}")
    if group.ha_mode == "legacy-active-standby":
        if len(ses) != 2:
            raise _Invalid("service_engines", f"ha_mode legacy-active-standby needs exactly 2 SEs, got {len(ses)}")
        if n > 2:
            raise _Invalid(p, f"ha_mode legacy-active-standby places the active SE and optionally the standby, "
                              f"got {n}")
    if group.ha_mode == "elastic-active-active" and n < 2:
        raise _Invalid(p, "ha_mode elastic-active-active needs at least 2 SEs, got 1")
    return vs


def _pool(raw, nets) -> Pool:
    pool = _build(Pool, raw, "pool")
    hm = pool.health_monitor
    if hm.receive_timeout >= hm.send_interval:
        raise _Invalid("pool.health_monitor.receive_timeout",
                       f"must be < send_interval ({hm.send_interval}), got {hm.receive_timeout}")
    be = nets["backend"]
    first_at: dict = {}
    for i, s in enumerate(pool.servers):
        inside(s.ip, be, f"pool.servers[{i}]")
        if s.ip == be.gateway:
            raise _Invalid(f"pool.servers[{i}]", f"{s.ip} is the gateway of networks.backend")
        if s.ip in first_at:
            # Each pool member is one host here; two ports on one address are not modelled yet.
            raise _Invalid(f"pool.servers[{i}]", f"{s.ip} is already pool.servers[{first_at[s.ip]}]: "
                                                 "one server per address")
        first_at[s.ip] = i
    return pool


def _traffic(raw, nets, duration) -> Traffic:
    t = _build(Traffic, raw, "traffic")
    for i, c in enumerate(t.clients):
        if c.size < 4:
            raise _Invalid(f"traffic.clients[{i}]", f"{c} is too small: the router takes one host address "
                                                    "and clients need at least one more (use /30 or larger)")
        for j, other in enumerate(t.clients[:i]):
            if c in other or other in c:
                raise _Invalid(f"traffic.clients[{i}]", f"{c} overlaps traffic.clients[{j}] ({other})")
        for net in nets.values():
            if c in net.cidr or net.cidr in c:
                # Clients are reached through the router; on-link clients would bypass it.
                raise _Invalid(f"traffic.clients[{i}]",
                               f"{c} overlaps networks.{net.name} ({net.cidr})")
    if t.start >= duration:
        raise _Invalid("traffic.start", f"must be < duration ({duration}), got {t.start}")
    if t.stop is not None and not t.start < t.stop <= duration:
        raise _Invalid("traffic.stop", f"must be after start ({t.start}) and <= duration "
                                       f"({duration}), got {t.stop}")
    return t


def _events(raw_list, duration, ses, group: SeGroup, servers) -> tuple[Event, ...]:
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
    servers = set(servers)
    for i, ev in parsed:
        p = f"events[{i}]"
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


# ------------------------------------------------------------------- public

UDP_PAYLOAD_MAX = 1472  # one Ethernet frame: 1500 - 20 (IPv4) - 8 (UDP)


def _check_room(nets, ses, pool) -> None:
    """Each SE needs an address on every network besides the gateway, VIP, servers and controller."""
    fe, be = nets["frontend"], nets["backend"]
    taken = {"frontend": 2, "backend": len(pool.servers) + (1 if be.gateway else 0), "management": 1}
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
        vs = _virtual_service(top["virtual_service"], nets, group, ses)
        pool = _pool(top["pool"], nets)
        traffic = _traffic(top["traffic"], nets, top["duration"])
        nets = with_management(nets, traffic.clients)
        events = _events(top["events"], top["duration"], ses, group, pool.servers)
        _check_room(nets, ses, pool)
        if vs.protocol == "udp" and traffic.request_bytes > UDP_PAYLOAD_MAX:
            raise _Invalid("traffic.request_bytes", f"a UDP request must fit one datagram (at most "
                                                    f"{UDP_PAYLOAD_MAX} bytes), got {traffic.request_bytes}")
    except _Invalid as e:
        raise ScenarioError(f"{source}: {e}") from None
    return Scenario(top["name"], top["cloud"], top["seed"], top["duration"], nets, group, ses,
                    vs, pool, traffic, events, source)


def key_reference() -> list[tuple[str, str, str]]:
    """(dotted key, default, what is accepted) for every scenario key: README's key table, from the code."""
    top = [(key, _default_text(default), _doc(conv)) for key, (conv, default) in _TOP.items()
           if key not in ("networks", "se_group", "service_engines", "virtual_service", "pool", "traffic", "events")]
    management = [("networks.management.cidr", "chosen", "IPv4 CIDR, unicast, overlapping no other network"),
                  ("networks.management.latency", "20 µs", _doc(_SHORT_DELAY))]
    return (top + _reference(Network, "networks.frontend") + _reference(Network, "networks.backend") + management
            + _reference(SeGroup, "se_group") + [("service_engines", "required", _doc(_TOP["service_engines"][0]))]
            + _reference(SeSpec, "service_engines[]") + _reference(VirtualService, "virtual_service")
            + _reference(Pool, "pool") + _reference(HealthMonitor, "pool.health_monitor")
            + _reference(Traffic, "traffic") + [("events", "none", _doc(_TOP["events"][0]))]
            + _reference(Event, "events[]"))


def with_seed(scenario: Scenario, seed: int) -> Scenario:
    """The same scenario with another seed (the CLI's --seed)."""
    try:
        seed = _TOP["seed"][0](seed, "seed")
    except _Invalid as e:
        raise ScenarioError(f"{scenario.source}: {e}") from None
    return dataclasses.replace(scenario, seed=seed)
