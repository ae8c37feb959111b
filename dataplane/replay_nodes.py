"""
Replay's two ends of every recorded flow: the clients node, the servers, the flow.

``ReplayFlow`` owns one replayed connection while it is live: the recorded
packets waiting to be sent on each side and the counts that order them.
The rule that keeps a replay causal is symmetric: a recorded packet leaves
its side no earlier than its (scaled) recorded time *and* no earlier than
every packet of the other side recorded before it has arrived there.  So on
every hop the two directions interleave exactly as recorded, whatever the
emulated latency, and Wireshark's TCP analysis of a clean input stays clean.
Sequence and acknowledgement numbers are never touched (NAT does not).

``ReplayClients`` is one node on the ``clients`` segment standing for every
recorded client address (proxy ARP: it answers for any address but the
router's own); it sends client packets with the server address mapped to the
VIP and VS port.  ``ReplayServer`` is a pool member (``server_class``) that
sends the recorded server packets into the NATed connection the SE opened
to it; traffic that is not a replayed flow (health probes) gets the normal
``Server`` behaviour.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from . import frames
from .frames import RST
from .node import Node
from .server import Server

if TYPE_CHECKING:
    from .replay import Replayer

_ZERO_MAC = b"\x00" * 6
_IP_ETHERTYPE = b"\x08\x00"
_ARP_REPLY_HEAD = bytes.fromhex("0001080006040002")  # Ethernet/IPv4, 6/4-byte addresses, op 2


class ReplayFlow:
    """One recorded flow being replayed; counts, not copies, once packets are out."""

    __slots__ = ("replay", "number", "proto", "client_ip", "client_port", "recorded", "c_queue", "s_queue",
                 "c_read", "s_read", "c_sent", "s_sent", "c_arrived", "s_arrived", "c_rst", "s_rst",
                 "input_done", "outcome", "server", "peer_ip", "peer_port", "se", "closing", "last_input",
                 "unsent", "rec_client", "fin_ends")

    def __init__(self, replay: "Replayer", number: int, proto: int, client_ip: bytes, client_port: int,
                 recorded: str):
        self.replay = replay
        self.number = number
        self.proto = proto
        self.client_ip = client_ip
        self.client_port = client_port
        self.recorded = recorded          # "client:port>server:port" as recorded, for humans
        self.c_queue: deque = deque()     # (frame ready for the access link, need, frame number)
        self.s_queue: deque = deque()     # (recorded IPv4 packet, need, frame number)
        self.c_read = self.s_read = 0
        self.c_sent = self.s_sent = 0
        self.c_arrived = self.s_arrived = 0
        self.c_rst = self.s_rst = False   # a recorded RST was sent from that side
        self.input_done = False
        self.closing = 0                  # input bits: 1/2 client/server FIN, 4 RST, 8/16 FIN acknowledged
        self.rec_client = (b"", 0)        # the recorded client address and port (who opened the flow)
        self.fin_ends = None              # [client, server] sequence number just past each recorded FIN
        self.outcome: str | None = None   # None while live; "reset" when the emulated network reset it
        self.server: "ReplayServer | None" = None
        self.peer_ip = b""
        self.peer_port = 0
        self.se = None
        self.last_input = 0
        self.unsent = 0

    # -- input side --------------------------------------------------------------

    def from_client(self, frame: bytes, number: int) -> None:
        self.c_queue.append((frame, self.s_read, number))
        self.c_read += 1
        self.pump_client()

    def from_server(self, packet: bytes, number: int) -> None:
        self.s_queue.append((packet, self.c_read, number))
        self.s_read += 1
        self.pump_server()

    # -- sending -----------------------------------------------------------------

    def pump_client(self) -> None:
        queue = self.c_queue
        while queue and queue[0][1] <= self.s_arrived and self.outcome is None:
            frame, _, number = queue.popleft()
            self.c_sent += 1
            if self.proto == frames.PROTO_TCP and frame[27 + (frame[14] & 0x0F) * 4] & RST:
                self.c_rst = True
            self.replay.clients.send(self, frame, number)

    def pump_server(self) -> None:
        queue = self.s_queue
        while queue and queue[0][1] <= self.c_arrived and self.server is not None and self.outcome is None:
            packet, _, number = queue.popleft()
            self.s_sent += 1
            self.server.send_recorded(self, packet, number)

    # -- arrivals ----------------------------------------------------------------

    def arrived_at_server(self, server: "ReplayServer", flags: int) -> None:
        if flags & RST and not self.c_rst:
            self.reset("reset toward the server by the emulated network")
            return
        self.c_arrived += 1
        self.pump_server()
        self.replay.progressed(self)

    def arrived_at_client(self, flags: int) -> None:
        if flags & RST and not self.s_rst:
            self.reset("reset toward the client by the emulated network")
            return
        self.s_arrived += 1
        self.pump_client()
        self.replay.progressed(self)

    def reset(self, why: str) -> None:
        if self.outcome is None:
            self.outcome = "reset"
            dropped = len(self.c_queue) + len(self.s_queue)
            self.unsent += dropped
            self.replay.unsent_total += dropped
            self.c_queue.clear()
            self.s_queue.clear()
            self.replay.progressed(self, arrived=False)

    # -- state ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Packets read but not yet arrived at the other end (queued or on the wire)."""
        return self.c_read + self.s_read - self.c_arrived - self.s_arrived - self.unsent

    @property
    def settled(self) -> bool:
        """Nothing more can happen to this flow: input over and everything delivered, or reset."""
        if self.outcome is not None:
            return self.input_done
        return self.input_done and self.c_arrived == self.c_read and self.s_arrived == self.s_read

    def final_outcome(self) -> str:
        if self.outcome is not None:
            return self.outcome
        return "completed" if self.c_arrived == self.c_read and self.s_arrived == self.s_read else "stalled"

    def report(self) -> dict:
        return {"flow": self.number, "recorded": self.recorded,
                "client": f"{frames.ip_text(self.client_ip)}:{self.client_port}",
                "protocol": "tcp" if self.proto == frames.PROTO_TCP else "udp",
                "se": self.se, "server": self.server.name if self.server else None,
                "outcome": self.final_outcome(),
                "client_packets": {"recorded": self.c_read, "sent": self.c_sent, "arrived": self.c_arrived},
                "server_packets": {"recorded": self.s_read, "sent": self.s_sent, "arrived": self.s_arrived}}


class ReplayClients(Node):
    """Every recorded client address, on the access link behind the router."""

    kind = "client"

    def __init__(self, net, name: str, segment, ip: bytes, router_nic, replay: "Replayer"):
        super().__init__(net, name)
        self.nic = self.add_nic("eth0", segment, ip)
        self.nic.allowed_ips = None
        self.router_nic = router_nic
        self.replay = replay
        self.flows: dict[tuple[bytes, int, int], ReplayFlow] = {}
        self._not_mine = set(net.router.client_gateways) | {router_nic.ip}

    def answers_arp_for(self, nic, ip: bytes) -> bool:
        # Proxy ARP: recorded client addresses are arbitrary, the router must reach each of them here.
        return ip not in self._not_mine

    def handle_arp(self, nic, frame: bytes) -> None:
        # Built with struct, not Scapy: a replay ARPs once per recorded client address, thousands of times.
        parsed = frames.parse_arp(frame)
        if parsed is None:
            return
        op, sender_mac, sender_ip, _, target_ip = parsed
        if op != 1 or not self.answers_arp_for(nic, target_ip) or sender_ip == target_ip:
            return
        reply = (sender_mac + nic.mac + b"\x08\x06" + _ARP_REPLY_HEAD + nic.mac + target_ip + sender_mac + sender_ip)
        nic.send(reply, f"{self.name} arp reply {frames.ip_text(target_ip)} is-at {frames.mac_text(nic.mac)} "
                        f"(proxy for recorded clients)")

    def header_for(self) -> bytes:
        """The access link's Ethernet header: straight to the router, which is every client's gateway."""
        return self.router_nic.mac + self.nic.mac + _IP_ETHERTYPE

    def send(self, flow: ReplayFlow, frame: bytes, number: int) -> None:
        vs = self.net.vs
        # The access link is not captured: the router names the input frame in its own comment.
        self.net.frame_notes[frame] = f"recorded frame {number}"
        self.nic.send(frame, f"{self.name} recorded frame {number} (flow {flow.number}) "
                             f"{frames.ip_text(flow.client_ip)}:{flow.client_port}>{frames.ip_text(vs.vip)}:{vs.port}")

    def handle_ip(self, nic, frame: bytes) -> None:
        if not frames.is_ipv4_l4(frame):
            self.net.count_drop("replay_client_unsupported")
            return
        view = frames.FlowView(frame)
        flow = self.flows.get((view.dst, view.dport, view.proto))
        if flow is None or flow.outcome is not None:
            self.net.count_drop("replay_client_no_flow")
            return
        flow.arrived_at_client(view.flags)


class ReplayServer(Server):
    """A pool member that plays the recorded server side of the flows the SEs bring to it."""

    replay: "Replayer | None" = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peers: dict[tuple[bytes, int, int], ReplayFlow] = {}

    def handle_ip(self, nic, frame: bytes) -> None:
        if self.replay is not None and not self.failed and frames.is_ipv4_l4(frame) and frame[30:34] == self.ip:
            view = frames.FlowView(frame)
            if view.dport == self.port:
                flow = self._flow_for(view)
                if flow is not None:
                    if flow.outcome is None:
                        flow.arrived_at_server(self, view.flags)
                    return
        super().handle_ip(nic, frame)

    def _flow_for(self, view: frames.FlowView) -> ReplayFlow | None:
        key = (view.src, view.sport, view.proto)
        flow = self.peers.get(key)
        if flow is not None and not (view.flags & frames.SYN and flow.c_arrived):
            return flow
        # First packet from this SE address and port: the SE's NAT table says which client
        # connection it carries (SNAT changes addresses and ports, never the client's identity there).
        se = self.replay.se_by_backend_ip(view.src)
        nat = se.connection_for_port(view.proto, view.sport) if se is not None else None
        if nat is None or nat.server is not self:
            return None
        flow = self.replay.clients.flows.get((nat.client_ip, nat.client_port, view.proto))
        if flow is None:
            return None
        flow.server, flow.peer_ip, flow.peer_port, flow.se = self, view.src, view.sport, se.name
        self.peers[key] = flow
        return flow

    def forget(self, flow: ReplayFlow) -> None:
        if self.peers.get((flow.peer_ip, flow.peer_port, flow.proto)) is flow:
            del self.peers[(flow.peer_ip, flow.peer_port, flow.proto)]

    def send_recorded(self, flow: ReplayFlow, packet: bytes, number: int) -> None:
        if packet[9] == frames.PROTO_TCP and packet[(packet[0] & 0x0F) * 4 + 13] & RST:
            flow.s_rst = True
        frame = frames.rewrite_ipv4_l4(_ZERO_MAC + self.nic.mac + _IP_ETHERTYPE + packet, _ZERO_MAC, self.nic.mac,
                                       self.ip, self.port, flow.peer_ip, flow.peer_port, ttl_decrement=0)
        self.send_ip(self.nic, flow.peer_ip, frame,
                     f"{self.name} recorded frame {number} (flow {flow.number}) {self.endpoint}>"
                     f"{frames.ip_text(flow.peer_ip)}:{flow.peer_port}")
