"""
Service Engines: steering (primary), source NAT (every owner), return paths.

An SE has a ``frontend`` NIC on the VIP network and a ``backend`` NIC on the
server network.  The frame path, in the order a client packet meets it:

1. *Steering* (the primary only): flow table hit, else Maglev choice over
   the VS members, recorded in the flow table.  A flow owned by another SE
   leaves with only its Ethernet addresses changed (DESIGN B4), or inside
   the SE-to-SE tunnel on Neutron, where port security forbids a port to
   send other hosts' source addresses.
2. *Service* (the owner): a NAT entry per client connection; a new one picks
   a pool server this SE sees up and a port from this SE's own range.
3. *Return*: reverse NAT, then straight to the client's next hop, or back
   through the primary inside the tunnel (``return_via_primary``).

The tunnel is VXLAN over UDP ``se_tunnel_udp_port`` carrying the inner
Ethernet frame unchanged, so Wireshark decodes it with
``-d udp.port==1550,vxlan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import flow_probe, frames
from .flow_probe import FlowProber
from .frames import ACK, FIN, RST, SYN
from .health import HealthMonitor
from .node import Node
from .server_selection import ServerSelector
from .sim import NS_PER_S

if TYPE_CHECKING:
    from .network import Network
    from .server import Server

NAT_PORTS = (1024, 60999)  # the health monitor's probe ports lie above
NAT_LINGER = 2 * NS_PER_S
#: Idle timeouts of NAT entries (Avi's defaults: UDP flows 30 s, TCP connections 10 min).
UDP_IDLE = 30 * NS_PER_S
TCP_IDLE = 600 * NS_PER_S
ZERO_MAC = b"\x00" * 6
FLOW_TOUCH_INTERVAL = NS_PER_S
TUNNEL_SOURCE_PORTS = 49152


@dataclass(eq=False, slots=True)
class NatEntry:
    client_ip: bytes
    client_port: int
    proto: int
    server: "Server"
    nat_port: int
    opened_ns: int
    fin_from_client: bool = False
    fin_from_server: bool = False
    #: Next sequence number each side will send, so a drain can reset both ends in-window.
    client_next: int = 0
    server_next: int = 0
    to_server: frames.NatRewrite | None = None
    to_client: frames.NatRewrite | None = None
    #: The two sides in text, for the frame comments (built once, not per frame).
    closing: bool = False
    #: Virtual time of the last packet either way: idle entries are expired (``expire_idle``).
    last_ns: int = 0
    client_side: str = ""
    server_side: str = ""
    server_reply: str = ""
    client_reply: str = ""


class ServiceEngine(Node):
    kind = "se"

    def __init__(self, net: "Network", name: str, host: str, frontend, frontend_ip: bytes,
                 backend, backend_ip: bytes):
        super().__init__(net, name)
        self.host = host
        self.frontend = self.add_nic("frontend", frontend, frontend_ip)
        self.backend = self.add_nic("backend", backend, backend_ip)
        self.vs = net.vs
        group = net.scenario.se_group
        self.delay_ns = round(group.processing_delay * 1e9)
        self.tunnel_port = group.se_tunnel_udp_port
        self.selector = ServerSelector(net.servers, net.scenario.pool.lb_algorithm, self.vs.hash_key)
        self.nat_by_client: dict[tuple[bytes, int, int], NatEntry] = {}
        self.nat_by_port: dict[tuple[int, int], NatEntry] = {}
        self._next_port = NAT_PORTS[0]
        self.monitor = HealthMonitor(self)
        self.prober = FlowProber(self)
        #: Frames this SE processed: the CPU model's offered work.
        self.packets = 0

    # -- roles -----------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self.vs.primary == self.name

    def answers_arp_for(self, nic, ip: bytes) -> bool:
        if ip == nic.ip:
            return True
        return nic is self.frontend and ip == self.vs.vip and self.is_primary

    def arp_reply_reason(self, ip: bytes) -> str:
        return " (primary for the VIP)" if ip == self.vs.vip else ""

    def announce_vip(self, why: str) -> None:
        self.frontend.allowed_ips.add(self.vs.vip)
        self.frontend.send(frames.gratuitous_arp(self.frontend.mac, self.vs.vip),
                           f"{self.name} gratuitous arp {frames.ip_text(self.vs.vip)} is-at "
                           f"{frames.mac_text(self.frontend.mac)} ({why})")

    def give_up_vip(self) -> None:
        self.frontend.allowed_ips.discard(self.vs.vip)

    def later(self, send, *args) -> None:
        """Send after the SE's processing delay, so capture timestamps show the hop's cost."""
        self.sim.post(self.delay_ns, send, args)

    # -- frontend --------------------------------------------------------------

    def handle_ip(self, nic, frame: bytes) -> None:
        self.packets += 1
        if nic is self.backend and self.monitor.answers(frame) and self.monitor.handle(frame):
            return
        if not frames.is_ipv4_l4(frame):
            self.net.count_drop("se_unsupported")
            return
        if nic is self.backend:
            self._from_server(frame)
            return
        dst = frame[30:34]
        if dst == self.frontend.ip and frame[23] == frames.PROTO_UDP:
            port = frames.FlowView(frame).dport
            if port == self.tunnel_port:
                self._from_tunnel(frame)
            elif port == self.prober.port:
                self._probe_message(frame)
            else:
                self.net.count_drop("se_port_closed")
        elif dst == self.vs.vip:
            view = frames.FlowView(frame)
            if view.proto != self.vs.proto or view.dport != self.vs.port:
                self.net.count_drop("vs_port_closed")
            elif self.is_primary:
                self._steer(frame, view)
            else:
                self._serve(frame, view, "forwarded by primary")
        else:
            self.net.count_drop("se_not_for_me")

    def _steer(self, frame: bytes, view: frames.FlowView) -> None:
        vs = self.vs
        key = vs.flow_key(view)
        entry = vs.flow_table.get(key)
        now = self.sim.now
        owner = self.net.se_names[entry[0]] if entry is not None else None
        if owner is not None and vs.carries(owner):
            why = "flow table"
        elif owner is None and view.proto == frames.PROTO_TCP and not view.flags & SYN:
            if (view.src, view.sport, view.proto) in self.nat_by_client:
                self.adopt_flow(key, self.name, [(frame, view)])  # a flow it served as a secondary
            else:
                self.prober.hold(key, frame, view)
            return
        else:
            gone = f"owner {owner} gone, " if owner else ""
            owner, bucket = vs.choose(key)
            why = f"{gone}new flow, bucket {bucket}"
            entry = None
            if not vs.flow_table.put(key, self.net.se_index[owner], now):
                self.net.count_drop("flow_table_full")
                return
        if view.flags & RST:
            vs.flow_table.pop(key)
        elif entry is not None and now - entry[1] > FLOW_TOUCH_INTERVAL:
            vs.flow_table.put(key, entry[0], now)  # idle expiry needs seconds, not every packet
        if owner == self.name:
            self._serve(frame, view, f"{why}, own")
            return
        self._forward_to(owner, frame, f"{self.name} steer {view.describe()} -> {owner} ({why})")

    def _forward_to(self, owner: str, frame: bytes, comment: str) -> None:
        target = self.net.nodes[owner]
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        if self.net.forward_in_tunnel:
            self.later(self._tunnel, target, inner, comment + " in tunnel")
        else:
            self.later(self.frontend.send, inner, comment)

    def adopt_flow(self, key: bytes, owner: str, held: list) -> None:
        """Record a flow a probe found and send on the packets held for it."""
        self.vs.flow_table.put(key, self.net.se_index[owner], self.sim.now)
        for frame, view in held:
            if owner == self.name:
                self._serve(frame, view, "claimed by own flow probe")
            else:
                self._forward_to(owner, frame, f"{self.name} steer {view.describe()} -> {owner} (flow probe claim)")

    # -- flow probe messages -----------------------------------------------------

    def send_probe_message(self, peer: str, kind: int, probe_id: int, key: bytes, comment: str) -> None:
        target = self.net.nodes[peer]
        frame = frames.udp_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                 self.prober.port, self.prober.port, flow_probe.encode(kind, probe_id, key),
                                 self.next_ident())
        self.later(self.frontend.send, frame, f"{self.name} {comment}")

    def _probe_message(self, frame: bytes) -> None:
        message = flow_probe.decode(frames.udp_payload(frame))
        sender = self.net.se_by_frontend_ip.get(frame[26:30])
        if message is None or sender is None:
            self.net.count_drop("flow_probe_malformed")
            return
        kind, probe_id, key = message
        if kind != flow_probe.REQUEST:
            self.prober.answer(sender, kind, probe_id, key)
            return
        src, sport, proto = key[8:12], int.from_bytes(key[2:4], "big"), key[1]
        mine = (src, sport, proto) in self.nat_by_client
        answer = flow_probe.CLAIM if mine else flow_probe.NOT_MINE
        self.send_probe_message(sender, answer, probe_id, key,
                                f"flow probe {probe_id} answer: {flow_probe.KIND_NAMES[answer]}"
                                f" ({frames.ip_text(src)}:{sport})")

    def _tunnel(self, target: "ServiceEngine", inner: bytes, comment: str) -> None:
        sport = TUNNEL_SOURCE_PORTS + (int.from_bytes(inner[34:38], "big") % 16384)
        outer = frames.vxlan_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                   sport, self.tunnel_port, self.vs.vni, inner, self.next_ident())
        self.frontend.send(outer, comment)

    def _from_tunnel(self, frame: bytes) -> None:
        inner = frames.vxlan_inner(frame)
        if not frames.is_ipv4_l4(inner):
            self.net.count_drop("tunnel_unsupported")
            return
        view = frames.FlowView(inner)
        if view.dst == self.vs.vip:
            self._serve(inner, view, "tunnelled by primary")
        elif view.src == self.vs.vip and self.is_primary:
            relay = frames.rewrite_ethernet(inner, b"\x00" * 6, self.frontend.mac)
            self.later(self.send_ip, self.frontend, self.net.client_next_hop, relay,
                       f"{self.name} relay {view.describe()} from tunnel to client")
        else:
            self.net.count_drop("tunnel_not_for_me")

    # -- service (source NAT) --------------------------------------------------

    def _serve(self, frame: bytes, view: frames.FlowView, why: str) -> None:
        key = (view.src, view.sport, view.proto)
        nat = self.nat_by_client.get(key)
        if nat is None:
            nat = self._open(frame, view, why)
            if nat is None:
                return
            why = f"{why}, new connection to {nat.server.name} by {self.selector.algorithm}"
        nat.last_ns = self.sim.now
        self._track_client_flags(nat, view.flags)
        if view.proto == frames.PROTO_TCP:
            seq, _ = frames.tcp_seq_ack(frame)
            nat.client_next = (seq + view.payload_len + (1 if view.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        out = nat.to_server.apply(frame, self.arp_cache.get(nat.server.ip, ZERO_MAC), self.backend.mac)
        self.later(self.send_ip, self.backend, nat.server.ip, out,
                   f"{self.name} snat {nat.client_side} => {nat.server_side} ({why})")

    def _open(self, frame: bytes, view: frames.FlowView, why: str) -> NatEntry | None:
        if view.proto == frames.PROTO_TCP and (view.flags & (SYN | ACK | RST)) != SYN:
            if not view.flags & RST:
                self.reset_client(frame, view, "no connection state")
            return None
        server = self.selector.pick(view.src)
        if server is None:
            self.net.count_drop("no_server_up")
            if view.proto == frames.PROTO_TCP:
                self.reset_client(frame, view, "no pool server up")
            return None
        nat = NatEntry(view.src, view.sport, view.proto, server, self._allocate_port(view.proto), self.sim.now)
        vs, mine = self.vs, self.backend.ip
        nat.to_server = frames.NatRewrite(view.src, view.sport, vs.vip, vs.port, mine, nat.nat_port, server.ip, server.port)
        nat.to_client = frames.NatRewrite(server.ip, server.port, mine, nat.nat_port, vs.vip, vs.port, view.src, view.sport)
        nat.client_side = view.describe()
        nat.server_side = f"{frames.ip_text(mine)}:{nat.nat_port}>{server.endpoint}"
        nat.server_reply = f"{server.endpoint}>{frames.ip_text(mine)}:{nat.nat_port}"
        nat.client_reply = f"{frames.ip_text(vs.vip)}:{vs.port}>{frames.ip_text(view.src)}:{view.sport}"
        self.nat_by_client[(view.src, view.sport, view.proto)] = nat
        self.nat_by_port[(view.proto, nat.nat_port)] = nat
        self.selector.opened(server)
        self.vs.flows_by_se[self.name] += 1
        self.net.flow_owned(self.name, view)
        return nat

    def _allocate_port(self, proto: int) -> int:
        low, high = NAT_PORTS
        for _ in range(high - low + 1):
            port = self._next_port
            self._next_port = low if port >= high else port + 1
            if (proto, port) not in self.nat_by_port:
                return port
        raise RuntimeError(f"{self.name}: NAT port range exhausted")

    def _track_client_flags(self, nat: NatEntry, flags: int) -> None:
        if flags & RST:
            self.close_nat(nat)
        elif flags & FIN:
            nat.fin_from_client = True
        elif nat.fin_from_client and nat.fin_from_server and flags & ACK and not nat.closing:
            self.close_nat(nat, linger=True)

    def connection_for_port(self, proto: int, nat_port: int) -> NatEntry | None:
        """Return the connection this SE NATs to ``nat_port`` on the server network, if any."""
        return self.nat_by_port.get((proto, nat_port))

    def close_nat(self, nat: NatEntry, linger: bool = False) -> None:
        """End a connection; after a FIN exchange keep its entry ``NAT_LINGER`` for stray last ACKs.

        Like TIME_WAIT: a real close may still carry a final ACK either way after
        the ACK that completes it, and that must not meet "no connection state".
        """
        if not nat.closing:
            nat.closing = True
            self.selector.closed(nat.server)
        if linger:
            self.sim.post(NAT_LINGER, self._forget_nat, (nat,))
        else:
            self._forget_nat(nat)

    def expire_idle(self) -> int:
        """Forget connections idle longer than their protocol's timeout; return how many."""
        now = self.sim.now
        idle = [nat for nat in self.nat_by_client.values()
                if now - nat.last_ns > (UDP_IDLE if nat.proto == frames.PROTO_UDP else TCP_IDLE)]
        for nat in idle:
            self.close_nat(nat)
        return len(idle)

    def _forget_nat(self, nat: NatEntry) -> None:
        key = (nat.client_ip, nat.client_port, nat.proto)
        if self.nat_by_client.get(key) is nat:
            del self.nat_by_client[key]
            del self.nat_by_port[(nat.proto, nat.nat_port)]

    # -- backend (reverse NAT and return path) ---------------------------------

    def _from_server(self, frame: bytes) -> None:
        view = frames.FlowView(frame)
        nat = self.nat_by_port.get((view.proto, view.dport))
        if nat is None or view.src != nat.server.ip:
            self.net.count_drop("se_no_nat_entry")
            return
        nat.last_ns = self.sim.now
        if view.flags & RST:
            self.close_nat(nat)
        elif view.flags & FIN:
            nat.fin_from_server = True
        elif nat.fin_from_client and nat.fin_from_server and view.flags & ACK and not nat.closing:
            self.close_nat(nat, linger=True)  # the server closed first: its ACK of the client's FIN ends it
        if view.proto == frames.PROTO_TCP:
            seq, _ = frames.tcp_seq_ack(frame)
            nat.server_next = (seq + view.payload_len + (1 if view.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        back = nat.to_client.apply(frame, self.arp_cache.get(self.net.client_next_hop, ZERO_MAC), self.frontend.mac)
        self.to_client(back, f"{self.name} reverse-nat {nat.server_reply} => {nat.client_reply}")

    def to_client(self, frame: bytes, comment: str) -> None:
        """Send a frame from the VIP toward the client by this cloud's return path (DESIGN B7)."""
        primary = self.vs.primary
        if primary is None or primary == self.name or not self.net.return_via_primary:
            self.later(self.send_ip, self.frontend, self.net.client_next_hop, frame, comment + " direct to client")
            return
        target = self.net.nodes[primary]
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        self.later(self._tunnel, target, inner, f"{comment} via primary {primary} in tunnel")

    # -- resets ----------------------------------------------------------------

    def reset_client(self, frame: bytes, view: frames.FlowView, why: str) -> None:
        reply = frames.tcp_reset_for(frame, self.frontend.mac)
        self.net.count_reset(self.name)
        self.to_client(reply, f"{self.name} reset {view.describe()} ({why})")

    def reset_all(self, why: str) -> int:
        """Reset every connection this SE still carries, at both ends; return how many."""
        entries = [nat for nat in self.nat_by_client.values() if not nat.closing]
        vs = self.vs
        for nat in entries:
            if nat.proto == frames.PROTO_TCP:
                to_client = frames.tcp_frame(b"\x00" * 6, self.frontend.mac, vs.vip, nat.client_ip, vs.port,
                                             nat.client_port, nat.server_next, nat.client_next, RST | ACK, b"",
                                             self.next_ident())
                described = f"{frames.ip_text(nat.client_ip)}:{nat.client_port}>{frames.ip_text(vs.vip)}:{vs.port}"
                self.to_client(to_client, f"{self.name} reset {described} ({why})")
                server = nat.server
                to_server = frames.tcp_frame(b"\x00" * 6, self.backend.mac, self.backend.ip, server.ip, nat.nat_port,
                                             server.port, nat.client_next, nat.server_next, RST | ACK, b"",
                                             self.next_ident())
                self.later(self.send_ip, self.backend, server.ip, to_server,
                           f"{self.name} reset {frames.ip_text(self.backend.ip)}:{nat.nat_port}>{server.endpoint} ({why})")
            self.close_nat(nat)
        self.net.resets_by_se[self.name] += len(entries)
        return len(entries)

    # -- failure -----------------------------------------------------------------

    def fail(self) -> None:
        """Stop dead: frames to this SE are lost and it sends nothing more."""
        self.alive = False
        self.frontend.up = self.backend.up = False
        self.monitor.stop()

    def recover(self) -> None:
        """Come back as after a reboot: no ARP, NAT or probe state."""
        self.alive = True
        self.frontend.up = self.backend.up = True
        self.forget_arp()
        self.give_up_vip()
        self.nat_by_client.clear()
        self.nat_by_port.clear()
        self.prober.pending.clear()
        self.selector = ServerSelector(self.net.servers, self.net.scenario.pool.lb_algorithm, self.vs.hash_key)
        self.monitor = HealthMonitor(self)
