"""Scenario networks: the frontend, backend and management sections and how they may sit together.

The frontend (VIP network, behind the router) and backend (server network)
are given; the management network (the controller and the SEs' management
NICs, the capture's ``controller`` interface) may be, and is otherwise
chosen among ``MANAGEMENT_CHOICES`` so that it overlaps nothing.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass

from netaddr import IPAddress, IPNetwork

from .validation import _LINK_LOCAL_NET, _build, _f, _Invalid, _ip, _ip6, _listing, _net, _net6, _num, _raw_table, _table

_SHORT_DELAY = _num(float, 0.0, 1.0, "s")  # per-hop latency: no network takes longer
_dc = dataclass(frozen=True, slots=True)


@_dc
class Network:
    name: str
    # Link-local suits only the backend (on-link servers); parse_networks refuses it on the routed frontend.
    cidr: IPNetwork = _f(_net(link_local=True, note="link-local on the backend only"))
    gateway: IPAddress | None = _f(_ip, None)   # required on the frontend, see parse_networks
    latency: float = _f(_SHORT_DELAY, 20e-6)
    # IPv6 beside IPv4 (dual stack): the frontend's needs gateway6, the router's address there.
    cidr6: IPNetwork | None = _f(_net6, None)
    gateway6: IPAddress | None = _f(_ip6, None)


_NETWORKS = {"frontend": (_raw_table, MISSING), "backend": (_raw_table, MISSING), "management": (_raw_table, None)}
#: The controller and the SEs' management NICs (the capture's "controller" interface) take the first of these
#: that overlaps no other network of the scenario when networks.management is not given.
MANAGEMENT_CHOICES = tuple(IPNetwork(c) for c in ("172.31.252.0/22", "192.168.252.0/22", "10.255.252.0/22",
                                                     "100.127.252.0/22"))


def inside(ip, net: Network, p, what="networks"):
    """ip must be a usable host address of net (not network/broadcast); an IPv6 one of its cidr6."""
    if ip.version == 6:
        if net.cidr6 is None:
            raise _Invalid(p, f"{ip} is IPv6 but {what}.{net.name} has no cidr6")
        if ip not in net.cidr6 or ip == net.cidr6.network:  # the subnet-router anycast address (RFC 4291 2.6.1)
            kind = "the subnet-router anycast address of" if ip in net.cidr6 else "outside"
            raise _Invalid(p, f"{ip} is {kind} {what}.{net.name}.cidr6 ({net.cidr6})")
        return
    where = f"{what}.{net.name} ({net.cidr})"
    if ip not in net.cidr:
        raise _Invalid(p, f"{ip} is outside {where}")
    # /31 and /32 have no network/broadcast address (RFC 3021).
    if net.cidr.prefixlen <= 30 and ip in (net.cidr.network, net.cidr.broadcast):
        kind = "network" if ip == net.cidr.network else "broadcast"
        raise _Invalid(p, f"{ip} is the {kind} address of {where}")


def parse_networks(raw) -> dict[str, Network]:
    nets = {}
    for name, t in _table(raw, "networks", _NETWORKS).items():
        p = f"networks.{name}"
        if t is None:
            continue  # networks.management left out: chosen once the client networks are known
        for key in ("gateway", "cidr6", "gateway6") if name == "management" else ():
            if key in t:
                raise _Invalid(f"{p}.{key}", "not a key of the management network: it is IPv4 and nothing is "
                                             "routed to it")
        net = _build(Network, t, p, name=name)
        if name == "frontend" and net.cidr in _LINK_LOCAL_NET:
            # The VIP is reached through the router; link-local addresses are never routed (RFC 3927).
            raise _Invalid(f"{p}.cidr", f"{net.cidr} is link-local (169.254.0.0/16): the VIP must be routable")
        if net.gateway is None and name == "frontend":
            # The router toward the clients sits on the frontend; it needs an address.
            raise _Invalid(f"{p}.gateway", "missing required key")
        if net.gateway is not None:
            inside(net.gateway, net, f"{p}.gateway")
        _check_ipv6(net, p)
        nets[name] = net
    fe, be = nets["frontend"], nets["backend"]
    if fe.cidr in be.cidr or be.cidr in fe.cidr:
        raise _Invalid("networks.backend.cidr", f"{be.cidr} overlaps networks.frontend ({fe.cidr})")
    if fe.cidr6 and be.cidr6 and (fe.cidr6 in be.cidr6 or be.cidr6 in fe.cidr6):
        raise _Invalid("networks.backend.cidr6", f"{be.cidr6} overlaps networks.frontend.cidr6 ({fe.cidr6})")
    management = nets.get("management")
    for net in (fe, be) if management else ():
        if management.cidr in net.cidr or net.cidr in management.cidr:
            raise _Invalid("networks.management.cidr", f"{management.cidr} overlaps networks.{net.name} ({net.cidr})")
    return nets


def _check_ipv6(net: Network, p: str) -> None:
    """gateway6 needs cidr6 and lies inside it; the frontend's cidr6 needs gateway6 (the router's address)."""
    if net.gateway6 is not None and net.cidr6 is None:
        raise _Invalid(f"{p}.gateway6", "needs cidr6 (the IPv6 network it lies in)")
    if net.gateway6 is not None:
        inside(net.gateway6, net, f"{p}.gateway6")
    elif net.cidr6 is not None and net.name == "frontend":
        raise _Invalid(f"{p}.gateway6", "missing: the router needs an address on the frontend's cidr6")


def with_management(nets: dict[str, Network], clients) -> dict[str, Network]:
    """``nets`` with a management network: the given one, else the first choice that overlaps nothing."""
    if "management" in nets:
        return nets
    used = [net.cidr for net in nets.values()] + list(clients)
    for cidr in MANAGEMENT_CHOICES:
        if not any(cidr in other or other in cidr for other in used):
            return {**nets, "management": Network("management", cidr)}
    raise _Invalid("networks.management.cidr", f"every default ({_listing([str(c) for c in MANAGEMENT_CHOICES])}) "
                                               "overlaps another network; give one")
