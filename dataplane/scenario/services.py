"""Scenario virtual services: each one's VIP, ports, placement, pool and traffic.

A scenario gives either one ``[virtual_service]`` with a top-level ``[pool]``,
or an array ``[[virtual_services]]``, each with its own
``[virtual_services.pool]`` and, optionally, ``[virtual_services.traffic]``
(keys of ``[traffic]`` but ``clients``, which every virtual service shares;
a key left out takes ``[traffic]``'s value).  Either way ``parse_services``
returns a tuple of ``VirtualService`` whose ``pool`` and ``traffic`` are
filled in.  A virtual service listens on ``port`` or on ``ports`` (ports and
``"start-end"`` ranges); ``ports`` always ends up normalised as sorted,
disjoint ranges and ``port`` as the first port.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import MISSING, dataclass

from netaddr import IPAddress, IPNetwork

from .fields import (_COUNT, _HTTP_CODE, _INTERVAL, _PORT, _SE_NAME_STR, _SECONDS, HTTP_REQUEST_BYTES,
                     MAX_CLIENT_NETWORKS, MAX_SERVERS, MAX_VIRTUAL_SERVICES, _dc)
from .networks import inside
from .validation import (_build, _enum, _expect, _f, _Invalid, _ip, _ip6, _list, _listing, _net_any, _num,
                         _raw_table, _show, _str, _table)

UDP_PAYLOAD_MAX = 1472  # one Ethernet frame: 1500 - 20 (IPv4) - 8 (UDP)
UDP_PAYLOAD_MAX6 = 1452  # over IPv6: 1500 - 40 - 8
#: The TCP/UDP profiles a virtual service may use, by protocol; the first is the product's default.
NETWORK_PROFILES = ("tcp-proxy", "tcp-fast-path", "udp-fast-path")
PROFILES_OF = {"tcp": ("tcp-proxy", "tcp-fast-path"), "udp": ("udp-fast-path",)}
MAX_PORT_ITEMS = 64


@_dc
class Server:
    ip: IPAddress
    port: int

    def __str__(self) -> str:
        text = str(self.ip)
        return f"[{text}]:{self.port}" if ":" in text else f"{text}:{self.port}"


def _server(v, p):
    _expect(v, p, (str,), '"ip:port" string')
    ip, sep, port = v.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port):  # ASCII digits: str.isdigit() takes '١٢' as 12
        raise _Invalid(p, f'expected "ip:port" or "[ipv6]:port", got {_show(v)}')
    if ip.startswith("[") and ip.endswith("]"):  # RFC 3986's literal: the port cannot be read into the address
        return Server(_ip6(ip[1:-1], p), _PORT(int(port), p))
    if ":" in ip:
        raise _Invalid(p, f'an IPv6 server is written "[address]:port", got {_show(v)}')
    return Server(_ip(ip, p), _PORT(int(port), p))


_server.doc = '`"ip:port"` (IPv4) or `"[ipv6]:port"`'


def _health_monitor(v, p):
    return _build(HealthMonitor, v, p)


_health_monitor.doc = "table"


def _port_item(v, p) -> tuple[int, int]:
    if isinstance(v, str):
        low, sep, high = v.partition("-")
        if not sep or not re.fullmatch(r"[0-9]{1,5}", low) or not re.fullmatch(r"[0-9]{1,5}", high):
            raise _Invalid(p, f'expected a port or a "start-end" range, got {_show(v)}')
        low, high = _PORT(int(low), p), _PORT(int(high), p)
        if low > high:
            raise _Invalid(p, f"range {_show(v)} ends before it starts")
        return low, high
    port = _PORT(_expect(v, p, (int,), 'port or "start-end" range'), p)
    return port, port


def _ports(v, p) -> tuple[tuple[int, int], ...]:
    items = _list(_port_item, MAX_PORT_ITEMS, nonempty=True)(v, p)
    ordered = sorted((item, i) for i, item in enumerate(items))
    for ((_, high), i), ((low, _), j) in zip(ordered, ordered[1:]):
        if low <= high:
            raise _Invalid(f"{p}[{max(i, j)}]", f"overlaps {p}[{min(i, j)}]")
    return tuple(item for item, _ in ordered)


_ports.doc = f'array of 1..{MAX_PORT_ITEMS} ports (1..65,535) and `"start-end"` ranges'


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
    clients: tuple[IPNetwork, ...] = _f(_list(_net_any, MAX_CLIENT_NETWORKS, nonempty=True))
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


@dataclass(frozen=True, slots=True, kw_only=True)  # keyword-only: port (optional) comes before protocol
class VirtualService:
    name: str = _f(_str())
    # An IPv4 VIP, an IPv6 VIP, or both (dual stack): at least one.
    vip: IPAddress | None = _f(_ip, None)
    vip6: IPAddress | None = _f(_ip6, None)
    # One of port and ports; parse_services sets both (port: the first one).
    port: int | None = _f(_PORT, None)
    ports: tuple[tuple[int, int], ...] = _f(_ports, ())
    protocol: str = _f(_enum("tcp", "udp"))
    placement: tuple[str, ...] = _f(_list(_SE_NAME_STR, 64, nonempty=True, unique=True))
    # None while parsing means "not given": the product's default for the protocol (tcp-proxy, udp-fast-path).
    network_profile: str | None = _f(_enum(*NETWORK_PROFILES), None)
    # Not keys of the table itself: [pool] / [virtual_services.pool] and the traffic it gets.
    pool: Pool | None = None
    traffic: Traffic | None = None

    def listens_on(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.ports)


# ------------------------------------------------------------------ parsing

def parse_traffic(raw, nets, duration) -> Traffic:
    t = _build(Traffic, raw, "traffic")
    for i, c in enumerate(t.clients):
        if c.size < 4:
            raise _Invalid(f"traffic.clients[{i}]", f"{c} is too small: the router takes one host address "
                                                    "and clients need at least one more (use /30 or larger)")
        for j, other in enumerate(t.clients[:i]):
            if c in other or other in c:
                raise _Invalid(f"traffic.clients[{i}]", f"{c} overlaps traffic.clients[{j}] ({other})")
        for net in nets.values():
            theirs = net.cidr6 if c.version == 6 else net.cidr
            if theirs is not None and (c in theirs or theirs in c):
                # Clients are reached through the router; on-link clients would bypass it.
                raise _Invalid(f"traffic.clients[{i}]",
                               f"{c} overlaps networks.{net.name}{'.cidr6' if c.version == 6 else ''} ({theirs})")
        if c.version == 6 and nets["frontend"].cidr6 is None:
            raise _Invalid(f"traffic.clients[{i}]", f"{c} is IPv6 but networks.frontend has no cidr6 (the router "
                                                    "routes IPv6 clients only to an IPv6 frontend)")
    _check_times(t, "traffic", duration)
    return t


def _check_times(t: Traffic, path: str, duration: float) -> None:
    if t.start >= duration:
        raise _Invalid(f"{path}.start", f"must be < duration ({duration}), got {t.start}")
    if t.stop is not None and not t.start < t.stop <= duration:
        raise _Invalid(f"{path}.stop", f"must be after start ({t.start}) and <= duration "
                                       f"({duration}), got {t.stop}")


def _own_traffic(raw, path: str, shared: Traffic, duration: float) -> Traffic:
    """A virtual service's traffic: its own keys over ``[traffic]``'s; the clients are shared."""
    if raw is None:
        return shared
    _raw_table(raw, path)
    if "clients" in raw:
        raise _Invalid(f"{path}.clients", "not a key here: every virtual service shares [traffic].clients")
    keys = [f.name for f in dataclasses.fields(Traffic) if f.name != "clients"]
    spec = {key: (conv, MISSING) for key, (conv, _) in _spec_of(Traffic).items() if key != "clients"}
    given = _table(raw, path, spec, keys=[k for k in keys if k in raw])
    traffic = dataclasses.replace(shared, **given)
    _check_times(traffic, path, duration)
    return traffic


def _spec_of(cls) -> dict:
    return {f.name: (f.metadata["conv"], f.default) for f in dataclasses.fields(cls) if "conv" in f.metadata}


def parse_pool(raw, path: str, nets) -> Pool:
    pool = _build(Pool, raw, path)
    hm = pool.health_monitor
    if hm.receive_timeout >= hm.send_interval:
        raise _Invalid(f"{path}.health_monitor.receive_timeout",
                       f"must be < send_interval ({hm.send_interval}), got {hm.receive_timeout}")
    be = nets["backend"]
    first_at: dict = {}
    for i, s in enumerate(pool.servers):
        inside(s.ip, be, f"{path}.servers[{i}]")
        if s.ip in (be.gateway, be.gateway6):
            raise _Invalid(f"{path}.servers[{i}]", f"{s.ip} is the gateway of networks.backend")
        if s.ip in first_at:
            # Each pool member is one host here, listening on one port.
            raise _Invalid(f"{path}.servers[{i}]", f"{s.ip} is already {path}.servers[{first_at[s.ip]}]: "
                                                   "one server per address")
        first_at[s.ip] = i
    return pool


def _one_service(raw, path: str, nets, group, ses) -> VirtualService:
    vs = _build(VirtualService, raw, path)
    if (vs.port is None) == (not vs.ports):
        raise _Invalid(f"{path}.port", "give either port (one port) or ports (ports and ranges)"
                       if vs.port is not None else "missing required key (or ports)")
    ports = vs.ports or ((vs.port, vs.port),)
    profiles = PROFILES_OF[vs.protocol]
    if vs.network_profile is not None and vs.network_profile not in profiles:
        raise _Invalid(f"{path}.network_profile", f"'{vs.network_profile}' is not a {vs.protocol} profile "
                                                  f"(one of {', '.join(profiles)})")
    vs = dataclasses.replace(vs, ports=ports, port=ports[0][0], network_profile=vs.network_profile or profiles[0])
    fe = nets["frontend"]
    if vs.vip is None and vs.vip6 is None:
        raise _Invalid(f"{path}.vip", "missing required key (or vip6, or both)")
    for key, vip, gateway in (("vip", vs.vip, fe.gateway), ("vip6", vs.vip6, fe.gateway6)):
        if vip is not None:
            inside(vip, fe, f"{path}.{key}")
            if vip == gateway:
                raise _Invalid(f"{path}.{key}", f"{vip} is the gateway of networks.frontend")
    names = [s.name for s in ses]
    for i, se in enumerate(vs.placement):
        if se not in names:
            raise _Invalid(f"{path}.placement[{i}]", f"unknown SE '{se}' (service_engines: {_listing(names)})")
    n, p = len(vs.placement), f"{path}.placement"
    if n > group.max_scaleout_per_vs:
        raise _Invalid(p, f"{n} SEs placed but se_group.max_scaleout_per_vs is {group.max_scaleout_per_vs}")
    if n < group.min_scaleout_per_vs:
        raise _Invalid(p, f"{n} SEs placed but se_group.min_scaleout_per_vs is {group.min_scaleout_per_vs}")
    if group.ha_mode == "legacy-active-standby":
        if len(ses) != 2:
            raise _Invalid("service_engines", f"ha_mode legacy-active-standby needs exactly 2 SEs, got {len(ses)}")
        if n > 2:
            raise _Invalid(p, f"ha_mode legacy-active-standby places the active SE and optionally the standby, "
                              f"got {n}")
    if group.ha_mode == "elastic-active-active" and n < 2:
        raise _Invalid(p, "ha_mode elastic-active-active needs at least 2 SEs, got 1")
    return vs


def parse_services(top: dict, nets, group, ses, traffic: Traffic, duration: float) -> tuple[VirtualService, ...]:
    """The scenario's virtual services, each with its pool and traffic; checks what they may not share."""
    single, many = top["virtual_service"], top["virtual_services"]
    if single is not None and many is not None:
        raise _Invalid("virtual_services", "give either [virtual_service] (with [pool]) or [[virtual_services]]")
    if single is None and many is None:
        raise _Invalid("virtual_service", "missing required key (or [[virtual_services]])")
    if single is not None:
        if top["pool"] is None:
            raise _Invalid("pool", "missing required key")
        vs = _one_service(single, "virtual_service", nets, group, ses)
        services = [dataclasses.replace(vs, pool=parse_pool(top["pool"], "pool", nets), traffic=traffic)]
    else:
        if top["pool"] is not None:
            raise _Invalid("pool", "with [[virtual_services]] each has its own [virtual_services.pool]")
        services = []
        for i, raw in enumerate(many):
            path = f"virtual_services[{i}]"
            _raw_table(raw, path)
            own = {key: value for key, value in raw.items() if key not in ("pool", "traffic")}
            vs = _one_service(own, path, nets, group, ses)
            if "pool" not in raw:
                raise _Invalid(f"{path}.pool", "missing required key")
            services.append(dataclasses.replace(vs, pool=parse_pool(raw["pool"], f"{path}.pool", nets),
                                                traffic=_own_traffic(raw.get("traffic"), f"{path}.traffic",
                                                                     traffic, duration)))
    _check_apart(services, "virtual_service" if single is not None else "virtual_services")
    return tuple(services)


def _check_apart(services: list[VirtualService], key: str) -> None:
    """Names and VIPs are unique; a server address listens on one port, whichever pools name it."""
    names: dict[str, int] = {}
    vips: dict = {}
    ports: dict = {}
    for i, vs in enumerate(services):
        path = key if key == "virtual_service" else f"{key}[{i}]"
        if vs.name in names:
            raise _Invalid(f"{path}.name", f"duplicate virtual service name '{vs.name}'")
        for field_name, vip in (("vip", vs.vip), ("vip6", vs.vip6)):
            if vip is not None and vip in vips:
                raise _Invalid(f"{path}.{field_name}", f"{vip} is already the VIP of {vips[vip]}")
            if vip is not None:
                vips[vip] = vs.name
        names[vs.name] = i
        most = UDP_PAYLOAD_MAX6 if vs.vip6 is not None else UDP_PAYLOAD_MAX
        if vs.protocol == "udp" and vs.traffic.request_bytes > most:
            where = "traffic" if key == "virtual_service" else f"{path}.traffic"
            over = " over IPv6" if vs.vip6 is not None else ""
            raise _Invalid(f"{where}.request_bytes", f"a UDP request must fit one datagram{over} (at most "
                                                     f"{most} bytes), got {vs.traffic.request_bytes}")
        _check_families(vs, path)
        for j, server in enumerate(vs.pool.servers):
            seen = ports.setdefault(server.ip, (server.port, vs.name))
            if seen[0] != server.port:
                raise _Invalid(f"{path}.pool.servers[{j}]", f"{server.ip} listens on port {seen[0]} in the pool "
                                                            f"of {seen[1]}: one server, one port")


def _check_families(vs: VirtualService, path: str) -> None:
    """Each VIP needs a pool server of its family: an SE does not translate between them (no NAT64)."""
    families = {server.ip.version for server in vs.pool.servers}
    for field_name, vip, version in (("vip", vs.vip, 4), ("vip6", vs.vip6, 6)):
        if vip is not None and version not in families:
            raise _Invalid(f"{path}.{field_name}", f"no IPv{version} server in the pool for {vip} (an SE does not "
                                                   f"translate between IPv4 and IPv6: no NAT64)")


__all__ = ["HealthMonitor", "MAX_VIRTUAL_SERVICES", "NETWORK_PROFILES", "Pool", "Server", "Traffic", "UDP_PAYLOAD_MAX",
           "VirtualService", "parse_pool", "parse_services", "parse_traffic"]
