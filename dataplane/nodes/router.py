"""
The gateway router between the clients and the VIP network.

It owns the client-side gateway addresses (one per client network, IPv4 or
IPv6) and the frontend gateway addresses (``gateway``, and ``gateway6``
for dual stack), routes between its two NICs with a TTL (hop limit)
decrement and, for IPv4, an incremental checksum update, and resolves next
hops with ARP or Neighbor Discovery, so the VIP's next hop is whatever MAC
last answered or announced it: the primary SE.  Its ports are exempt from
port security, like a Neutron router port; its advertisements set the
Router flag.
"""

from __future__ import annotations

import netaddr

from ..l2 import Nic, Segment
from ..wire import frames
from ..wire.headers import ZERO_MAC
from ..wire.ipv6 import decrement_hop_limit
from .context import Runtime
from .host import Node, mac_for


class Router(Node):
    kind = "router"
    is_router = True

    def __init__(self, runtime: Runtime, name: str, client_side: Segment, client_gateways: list[bytes],
                 frontend: Segment, frontend_gateway: bytes, frontend_cidr: netaddr.IPNetwork,
                 frontend_gateway6: bytes | None = None, frontend_cidr6: netaddr.IPNetwork | None = None):
        super().__init__(runtime, name)
        first4 = next((g for g in client_gateways if len(g) == 4), None)
        first6 = next((g for g in client_gateways if len(g) == 16), None)
        self.clients_nic = self.add_nic("clients", client_side, first4, ip6=first6,
                                        mac=mac_for(first4 if first4 is not None else first6))
        self.frontend_nic = self.add_nic("frontend", frontend, frontend_gateway, ip6=frontend_gateway6)
        self.client_gateways = set(client_gateways)
        for gateway in self.client_gateways:
            if len(gateway) == 16:
                self.join(self.clients_nic, gateway)
        self.clients_nic.allowed_ips = None
        self.frontend_nic.allowed_ips = None
        #: The frontend's address range per address length (4: IPv4, 16: IPv6).
        self._frontend = {4 if cidr.version == 4 else 16: (cidr.first, cidr.last)
                          for cidr in (frontend_cidr, frontend_cidr6) if cidr is not None}

    def _on_frontend(self, ip: bytes) -> bool:
        bounds = self._frontend.get(len(ip))
        return bounds is not None and bounds[0] <= int.from_bytes(ip, "big") <= bounds[1]

    def answers_arp_for(self, nic: Nic, ip: bytes) -> bool:
        if nic is self.clients_nic:
            return ip in self.client_gateways
        return ip == nic.ip

    def answers_nd_for(self, nic: Nic, ip6: bytes) -> bool:
        if nic is self.clients_nic:
            return ip6 in self.client_gateways
        return ip6 == nic.ip6

    def handle_ip(self, nic: Nic, frame: bytes, view: frames.FlowView) -> None:
        dst = view.dst
        if dst == nic.ip or dst == nic.ip6 or dst in self.client_gateways:
            self.drop("router_local")
            return
        if view.ttl <= 1:
            self.drop("ttl_expired")
            return
        out = self.frontend_nic if self._on_frontend(dst) else self.clients_nic
        if out is nic:
            self.drop("router_same_segment")
            return
        if view.version == 6:
            routed = decrement_hop_limit(frame, ZERO_MAC, out.mac)
        else:
            routed = frames.decrement_ttl(frame, ZERO_MAC, out.mac)
        notes = self.runtime.notes
        note = notes.pop(frame[14:], None) if notes else None
        self.send_ip(out, dst, routed, f"{self.name} route {self._describe(view)} out {out.name}"
                                       + (f" ({note})" if note else ""))

    @staticmethod
    def _describe(view: frames.FlowView) -> str:
        if view.proto in (frames.PROTO_TCP, frames.PROTO_UDP) and not view.fragment:
            return view.describe()
        return f"{frames.ip_text(view.src)}>{frames.ip_text(view.dst)}"
