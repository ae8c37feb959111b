"""Scenario networks: the frontend, backend and management sections and how they may sit together.

The frontend (VIP network, behind the router) and backend (server network)
are given; the management network (the controller and the SEs' management
NICs, the capture's ``controller`` interface) may be, and is otherwise
chosen among ``MANAGEMENT_CHOICES`` so that it overlaps nothing.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass

from netaddr import IPAddress, IPNetwork

from .validation import _LINK_LOCAL_NET, _build, _f, _Invalid, _ip, _listing, _net, _num, _raw_table, _table

_SHORT_DELAY = _num(float, 0.0, 1.0, "s")  # per-hop latency: no network takes longer
_dc = dataclass(frozen=True, slots=True)


@_dc
class Network:
    name: str
    # Link-local suits only the backend (on-link servers); parse_networks refuses it on the routed frontend.
    cidr: IPNetwork = _f(_net(link_local=True, note="link-local on the backend only"))
    gateway: IPAddress | None = _f(_ip, None)   # required on the frontend, see parse_networks
    latency: float = _f(_SHORT_DELAY, 20e-6)


_NETWORKS = {"frontend": (_raw_table, MISSING), "backend": (_raw_table, MISSING), "management": (_raw_table, None)}
#: The controller and the SEs' management NICs (the capture's "controller" interface) take the first of these
#: that overlaps no other network of the scenario when networks.management is not given.
MANAGEMENT_CHOICES = tuple(IPNetwork(c) for c in ("172.31.252.0/22", "192.168.252.0/22", "10.255.252.0/22",
                                                     "100.127.252.0/22"))


def inside(ip, net: Network, p, what="networks"):
    """ip must be a usable host address of net (not network/broadcast)."""
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
        if name == "management" and "gateway" in t:
            raise _Invalid(f"{p}.gateway", "not a key of the management network: nothing is routed to it")
        net = _build(Network, t, p, name=name)
        if name == "frontend" and net.cidr in _LINK_LOCAL_NET:
            # The VIP is reached through the router; link-local addresses are never routed (RFC 3927).
            raise _Invalid(f"{p}.cidr", f"{net.cidr} is link-local (169.254.0.0/16): the VIP must be routable")
        if net.gateway is None and name == "frontend":
            # The router toward the clients sits on the frontend; it needs an address.
            raise _Invalid(f"{p}.gateway", "missing required key")
        if net.gateway is not None:
            inside(net.gateway, net, f"{p}.gateway")
        nets[name] = net
    fe, be = nets["frontend"], nets["backend"]
    if fe.cidr in be.cidr or be.cidr in fe.cidr:
        raise _Invalid("networks.backend.cidr", f"{be.cidr} overlaps networks.frontend ({fe.cidr})")
    management = nets.get("management")
    for net in (fe, be) if management else ():
        if management.cidr in net.cidr or net.cidr in management.cidr:
            raise _Invalid("networks.management.cidr", f"{management.cidr} overlaps networks.{net.name} ({net.cidr})")
    return nets


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
