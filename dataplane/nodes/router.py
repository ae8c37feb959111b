"""
The gateway router between the clients and the VIP network.

It owns the client-side gateway addresses (one per client network) and the
frontend gateway address, routes IPv4 between its two NICs with a TTL
decrement and an incremental checksum update, and resolves next hops with
ARP, so the VIP's next hop is whatever MAC last answered or announced it:
the primary SE.  Its ports are exempt from port security, like a Neutron
router port.
"""

from __future__ import annotations

import netaddr

from ..l2 import Nic, Segment
from ..wire import frames
from ..wire.headers import ZERO_MAC
from .context import Runtime
from .host import Node


class Router(Node):
    kind = "router"

    def __init__(self, runtime: Runtime, name: str, client_side: Segment, client_gateways: list[bytes],
                 frontend: Segment, frontend_gateway: bytes, frontend_cidr: netaddr.IPNetwork):
        super().__init__(runtime, name)
        self.clients_nic = self.add_nic("clients", client_side, client_gateways[0])
        self.frontend_nic = self.add_nic("frontend", frontend, frontend_gateway)
        self.client_gateways = set(client_gateways)
        self.clients_nic.allowed_ips = None
        self.frontend_nic.allowed_ips = None
        first, last = frontend_cidr.first, frontend_cidr.last
        self._on_frontend = lambda ip: first <= int.from_bytes(ip, "big") <= last

    def answers_arp_for(self, nic: Nic, ip: bytes) -> bool:
        if nic is self.clients_nic:
            return ip in self.client_gateways
        return ip == nic.ip

    def handle_ip(self, nic: Nic, frame: bytes, view: frames.FlowView) -> None:
        dst = view.dst
        if dst == nic.ip or dst in self.client_gateways:
            self.drop("router_local")
            return
        if view.ttl <= 1:
            self.drop("ttl_expired")
            return
        out = self.frontend_nic if self._on_frontend(dst) else self.clients_nic
        if out is nic:
            self.drop("router_same_segment")
            return
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
