"""
Replay's two ends of every recorded flow: the clients node and the pool servers.

``ReplayClients`` is one node on the ``clients`` segment standing for every
recorded client address (proxy ARP: it answers for any address but the
router's own); it sends client packets with the server address mapped to the
VIP and VS port.  ``ReplayServer`` is a pool member that sends the recorded
server packets into the NATed connection the SE opened to it; traffic that
is not a replayed flow (health probes) gets the normal ``Server`` behaviour.
Both are put into the network by the builder's hooks (``Replayer.hooks``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..l2 import Nic, Segment
from ..nodes.context import Runtime
from ..nodes.host import Host
from ..nodes.server import Server
from ..wire import arp, frames
from ..wire.headers import ETHERTYPE_IPV4_BYTES, IPV4_PROTO, PROTO_TCP, TCP_FLAGS, ZERO_MAC
from .flow import ReplayFlow


class FlowDirectory(Protocol):
    """What the endpoints ask the replayer: which flow a packet belongs to."""

    def flow_of_client(self, client_ip: bytes, client_port: int, proto: int) -> ReplayFlow | None: ...

    def se_by_backend_ip(self, ip: bytes) -> Any: ...


class ReplayClients(Host):
    """Every recorded client address, on the access link behind the router."""

    kind = "client"

    def __init__(self, runtime: Runtime, name: str, segment: Segment, ip: bytes, router_nic: Nic,
                 client_gateways: set[bytes], directory: FlowDirectory):
        super().__init__(runtime, name, ip, segment)
        self.nic.allowed_ips = None
        self.router_nic = router_nic
        self.directory = directory
        self._not_mine = set(client_gateways) | {router_nic.ip}

    def answers_arp_for(self, nic, ip: bytes) -> bool:
        # Proxy ARP: recorded client addresses are arbitrary, the router must reach each of them here.
        return ip not in self._not_mine

    def handle_arp(self, nic, frame: bytes) -> None:
        parsed = arp.parse_arp(frame)
        if parsed is None:
            return
        op, sender_mac, sender_ip, _, target_ip = parsed
        if op != arp.REQUEST or not self.answers_arp_for(nic, target_ip) or sender_ip == target_ip:
            return
        reply = arp.arp_frame(arp.REPLY, nic.mac, target_ip, sender_mac, sender_ip)
        nic.send(reply, f"{self.name} arp reply {frames.ip_text(target_ip)} is-at {frames.mac_text(nic.mac)} "
                        f"(proxy for recorded clients)")

    def header_for(self) -> bytes:
        """The access link's Ethernet header: straight to the router, which is every client's gateway."""
        return self.router_nic.mac + self.nic.mac + ETHERTYPE_IPV4_BYTES

    def send(self, flow: ReplayFlow, frame: bytes, number: int, vip: bytes, port: int) -> None:
        # The access link is not captured: the router names the input frame in its own comment.
        self.runtime.note(frame, f"recorded frame {number}")
        self.nic.send(frame, f"{self.name} recorded frame {number} (flow {flow.number}) "
                             f"{frames.ip_text(flow.client_ip)}:{flow.client_port}>{frames.ip_text(vip)}:{port}")

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("replay_client_unsupported")
            return
        flow = self.directory.flow_of_client(view.dst, view.dport, view.proto)
        if flow is None or flow.outcome is not None:
            self.drop("replay_client_no_flow")
            return
        flow.arrived_at_client(view.flags)


class ReplayServer(Server):
    """A pool member that plays the recorded server side of the flows the SEs bring to it."""

    def __init__(self, *args: Any, directory: FlowDirectory, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.directory = directory
        self.peers: dict[tuple[bytes, int, int], ReplayFlow] = {}

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if not self.failed and not view.fragment and view.proto in (frames.PROTO_TCP, frames.PROTO_UDP) \
                and view.dst == self.ip:
            if view.dport == self.port:
                flow = self._flow_for(view)
                if flow is not None:
                    if flow.outcome is None:
                        flow.arrived_at_server(view.flags)
                    return
        super().handle_ip(nic, frame, view)

    def _flow_for(self, view: frames.FlowView) -> ReplayFlow | None:
        key = (view.src, view.sport, view.proto)
        flow = self.peers.get(key)
        if flow is not None and not (view.flags & frames.SYN and flow.client.arrived):
            return flow
        # First packet from this SE address and port: the SE's NAT table says which client
        # connection it carries (SNAT changes addresses and ports, never the client's identity there).
        se = self.directory.se_by_backend_ip(view.src)
        nat = se.connection_for_port(view.proto, view.sport) if se is not None else None
        if nat is None or nat.server is not self:
            return None
        flow = self.directory.flow_of_client(nat.client_ip, nat.client_port, view.proto)
        if flow is None:
            return None
        flow.server, flow.peer_ip, flow.peer_port, flow.se = self, view.src, view.sport, se.name
        self.peers[key] = flow
        return flow

    def forget(self, flow: ReplayFlow) -> None:
        if self.peers.get((flow.peer_ip, flow.peer_port, flow.proto)) is flow:
            del self.peers[(flow.peer_ip, flow.peer_port, flow.proto)]

    def send_recorded(self, flow: ReplayFlow, packet: bytes, number: int) -> None:
        if packet[IPV4_PROTO] == PROTO_TCP and packet[(packet[0] & 0x0F) * 4 + TCP_FLAGS] & frames.RST:
            flow.server_side.sent_reset = True
        frame = frames.rewrite_ipv4_l4(ZERO_MAC + self.nic.mac + ETHERTYPE_IPV4_BYTES + packet, ZERO_MAC, self.nic.mac,
                                       self.ip, self.port, flow.peer_ip, flow.peer_port, ttl_decrement=0)
        self.send_ip(self.nic, flow.peer_ip, frame,
                     f"{self.name} recorded frame {number} (flow {flow.number}) {self.endpoint}>"
                     f"{frames.ip_text(flow.peer_ip)}:{flow.peer_port}")
