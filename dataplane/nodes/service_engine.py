"""
Service Engines: steering (primary), source NAT (every owner), return paths.

An SE has a ``frontend`` NIC on the VIP network and a ``backend`` NIC on the
server network.  The frame path, in the order a client packet meets it:

1. *Steering* (the primary only): flow table hit, else Maglev choice over
   the VS members, recorded in the flow table.  A flow owned by another SE
   leaves with only its Ethernet addresses changed (docs/design.md, B4), or
   inside the SE-to-SE tunnel on Neutron, where port security forbids a
   port to send other hosts' source addresses.
2. *Service* (the owner): a NAT entry per client connection (``nat``); a new
   one picks a pool server this SE sees up and a port from this SE's range.
3. *Return*: reverse NAT, then straight to the client's next hop, or back
   through the primary inside the tunnel (``PathPolicy.return_via_primary``).

The tunnel is VXLAN over UDP ``se_tunnel_udp_port`` carrying the inner
Ethernet frame unchanged, so Wireshark decodes it with
``-d udp.port==1550,vxlan``.
"""

from __future__ import annotations

from typing import Sequence

from ..clock import NS_PER_S
from ..l2 import Segment
from ..scenario import Pool, SeGroup
from ..wire import arp, frames
from ..wire.checksum import bad_checksum
from ..wire.frames import ACK, FIN, RST, SYN, ZERO_MAC
from ..wire.headers import IP_DST, IP_PROTO, IP_SRC
from . import flow_probe
from .context import PoolServer, Runtime, ServedService
from .flow_probe import FlowProber
from .health import HealthMonitor
from .host import Node
from .nat import NatEntry, NatTable
from .server_selection import ServerSelector

FLOW_TOUCH_INTERVAL = NS_PER_S
TUNNEL_SOURCE_PORTS = 49152


class ServiceEngine(Node):
    kind = "se"

    def __init__(self, runtime: Runtime, name: str, host: str, frontend: Segment, frontend_ip: bytes,
                 backend: Segment, backend_ip: bytes, vs: ServedService, servers: Sequence[PoolServer],
                 group: SeGroup, pool: Pool, seed: int):
        super().__init__(runtime, name)
        self.host = host
        self.frontend = self.add_nic("frontend", frontend, frontend_ip)
        self.backend = self.add_nic("backend", backend, backend_ip)
        self.vs = vs
        self.paths = runtime.paths
        self.registry = runtime.registry
        self.servers = list(servers)
        self.pool = pool
        self.seed = seed
        self.delay_ns = round(group.processing_delay * 1e9)
        self.tunnel_port = group.se_tunnel_udp_port
        self.selector = ServerSelector(self.servers, pool.lb_algorithm, vs.hash_key)
        self.nat = NatTable(self.sim, lambda nat: self.selector.closed(nat.server))
        self.monitor = HealthMonitor(self, pool.health_monitor, self.servers, seed)
        self.prober = FlowProber(self, group)
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
        self.frontend.send(arp.gratuitous_arp(self.frontend.mac, self.vs.vip),
                           f"{self.name} gratuitous arp {frames.ip_text(self.vs.vip)} is-at "
                           f"{frames.mac_text(self.frontend.mac)} ({why})")

    def give_up_vip(self) -> None:
        self.frontend.allowed_ips.discard(self.vs.vip)

    def later(self, send, *args) -> None:
        """Send after the SE's processing delay, so capture timestamps show the hop's cost."""
        self.sim.post(self.delay_ns, send, args)

    def peer(self, name: str) -> "ServiceEngine":
        return self.registry.nodes[name]

    # -- frontend --------------------------------------------------------------

    def handle_ip(self, nic, frame: bytes) -> None:
        self.packets += 1
        if self.runtime.verify_checksums:  # off unless frames from outside may be wrong: the fast path skips it
            wrong = bad_checksum(frame)
            if wrong:
                self.drop(f"bad_{wrong}_checksum")
                return
        if nic is self.backend and self.monitor.answers(frame) and self.monitor.handle(frame):
            return
        if not frames.is_ipv4_l4(frame):
            self.drop("se_unsupported")
            return
        if nic is self.backend:
            self._from_server(frame)
            return
        dst = frame[IP_DST]
        if dst == self.frontend.ip and frame[IP_PROTO] == frames.PROTO_UDP:
            port = frames.FlowView(frame).dport
            if port == self.tunnel_port:
                self._from_tunnel(frame)
            elif port == self.prober.port:
                self._probe_message(frame)
            else:
                self.drop("se_port_closed")
        elif dst == self.vs.vip:
            view = frames.FlowView(frame)
            if view.proto != self.vs.proto or view.dport != self.vs.port:
                self.drop("vs_port_closed")
            elif self.is_primary:
                self._steer(frame, view)
            else:
                self._serve(frame, view, "forwarded by primary")
        else:
            self.drop("se_not_for_me")

    def _steer(self, frame: bytes, view: frames.FlowView) -> None:
        vs = self.vs
        key = vs.flow_key(view)
        entry = vs.flow_table.get(key)
        now = self.sim.now
        owner = self.registry.se_names[entry[0]] if entry is not None else None
        if owner is not None and vs.carries(owner):
            why = "flow table"
        elif owner is None and view.proto == frames.PROTO_TCP and not view.flags & SYN:
            if self.nat.get(view.src, view.sport, view.proto) is not None:
                self.adopt_flow(key, self.name, [(frame, view)])  # a flow it served as a secondary
            else:
                self.prober.hold(key, frame, view)
            return
        else:
            gone = f"owner {owner} gone, " if owner else ""
            owner, bucket = vs.choose(key)
            why = f"{gone}new flow, bucket {bucket}"
            entry = None
            if not vs.flow_table.put(key, self.registry.se_index[owner], now):
                self.drop("flow_table_full")
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
        target = self.peer(owner)
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        if self.paths.forward_in_tunnel:
            self.later(self._tunnel, target, inner, comment + " in tunnel")
        else:
            self.later(self.frontend.send, inner, comment)

    def adopt_flow(self, key: bytes, owner: str, held: list) -> None:
        """Record a flow a probe found and send on the packets held for it."""
        self.vs.flow_table.put(key, self.registry.se_index[owner], self.sim.now)
        for frame, view in held:
            if owner == self.name:
                self._serve(frame, view, "claimed by own flow probe")
            else:
                self._forward_to(owner, frame, f"{self.name} steer {view.describe()} -> {owner} (flow probe claim)")

    # -- flow probe messages -----------------------------------------------------

    def send_probe_message(self, peer: str, kind: int, probe_id: int, key: bytes, comment: str) -> None:
        target = self.peer(peer)
        frame = frames.udp_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                 self.prober.port, self.prober.port, flow_probe.encode(kind, probe_id, key),
                                 self.next_ident())
        self.later(self.frontend.send, frame, f"{self.name} {comment}")

    def _probe_message(self, frame: bytes) -> None:
        message = flow_probe.decode(frames.udp_payload(frame))
        sender = self.registry.se_by_frontend_ip.get(frame[IP_SRC])
        if message is None or sender is None:
            self.drop("flow_probe_malformed")
            return
        kind, probe_id, key = message
        if kind != flow_probe.REQUEST:
            self.prober.answer(sender, kind, probe_id, key)
            return
        src, sport, proto = flow_probe.client_of(key)
        mine = self.nat.get(src, sport, proto) is not None
        answer = flow_probe.CLAIM if mine else flow_probe.NOT_MINE
        self.send_probe_message(sender, answer, probe_id, key,
                                f"flow probe {probe_id} answer: {flow_probe.KIND_NAMES[answer]}"
                                f" ({frames.ip_text(src)}:{sport})")

    def _tunnel(self, target: "ServiceEngine", inner: bytes, comment: str) -> None:
        l4 = frames.l4_offset(inner)
        sport = TUNNEL_SOURCE_PORTS + (int.from_bytes(inner[l4:l4 + 4], "big") % 16384)
        outer = frames.vxlan_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                   sport, self.tunnel_port, self.vs.vni, inner, self.next_ident())
        self.frontend.send(outer, comment)

    def _from_tunnel(self, frame: bytes) -> None:
        inner = frames.vxlan_inner(frame)
        if not frames.is_ipv4_l4(inner):
            self.drop("tunnel_unsupported")
            return
        view = frames.FlowView(inner)
        if view.dst == self.vs.vip:
            self._serve(inner, view, "tunnelled by primary")
        elif view.src == self.vs.vip and self.is_primary:
            relay = frames.rewrite_ethernet(inner, ZERO_MAC, self.frontend.mac)
            self.later(self.send_ip, self.frontend, self.paths.client_next_hop, relay,
                       f"{self.name} relay {view.describe()} from tunnel to client")
        else:
            self.drop("tunnel_not_for_me")

    # -- service (source NAT) --------------------------------------------------

    def _serve(self, frame: bytes, view: frames.FlowView, why: str) -> None:
        nat = self.nat.by_client.get((view.src, view.sport, view.proto))
        if nat is None:
            nat = self._open(frame, view, why)
            if nat is None:
                return
            why = f"{why}, new connection to {nat.server.name} by {self.selector.algorithm}"
        nat.last_ns = self.sim.now
        if view.flags & (FIN | RST) or nat.fin_from_server:  # the common data packet skips the close rules
            self.nat.track(nat, view.flags, from_client=True)
        if view.proto == frames.PROTO_TCP:
            nat.client_next = frames.next_sequence(view.seq, view.flags, view.payload_len)
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
            self.drop("no_server_up")
            if view.proto == frames.PROTO_TCP:
                self.reset_client(frame, view, "no pool server up")
            return None
        try:
            nat_port = self.nat.free_port(view.proto)
        except RuntimeError as error:
            raise RuntimeError(f"{self.name}: {error}") from None
        nat = NatEntry(view.src, view.sport, view.proto, server, nat_port, self.sim.now)
        vs, mine = self.vs, self.backend.ip
        nat.to_server = frames.NatRewrite(view.src, view.sport, vs.vip, vs.port, mine, nat.nat_port, server.ip, server.port)
        nat.to_client = frames.NatRewrite(server.ip, server.port, mine, nat.nat_port, vs.vip, vs.port, view.src, view.sport)
        nat.client_side = view.describe()
        nat.server_side = f"{frames.ip_text(mine)}:{nat.nat_port}>{server.endpoint}"
        nat.server_reply = f"{server.endpoint}>{frames.ip_text(mine)}:{nat.nat_port}"
        nat.client_reply = f"{frames.ip_text(vs.vip)}:{vs.port}>{frames.ip_text(view.src)}:{view.sport}"
        self.nat.add(nat)
        self.selector.opened(server)
        self.vs.flows_by_se[self.name] += 1
        self.runtime.counters.flow_owned(self.name)
        return nat

    def connection_for_port(self, proto: int, nat_port: int) -> NatEntry | None:
        """Return the connection this SE NATs to ``nat_port`` on the server network, if any."""
        return self.nat.for_port(proto, nat_port)

    def expire_idle(self) -> int:
        """Forget connections idle longer than their protocol's timeout; return how many."""
        return self.nat.expire_idle()

    # -- backend (reverse NAT and return path) ---------------------------------

    def _from_server(self, frame: bytes) -> None:
        view = frames.FlowView(frame)
        nat = self.nat.by_port.get((view.proto, view.dport))
        if nat is None or view.src != nat.server.ip:
            self.drop("se_no_nat_entry")
            return
        nat.last_ns = self.sim.now
        if view.flags & (FIN | RST) or nat.fin_from_client:
            self.nat.track(nat, view.flags, from_client=False)
        if view.proto == frames.PROTO_TCP:
            nat.server_next = frames.next_sequence(view.seq, view.flags, view.payload_len)
        back = nat.to_client.apply(frame, self.arp_cache.get(self.paths.client_next_hop, ZERO_MAC),
                                   self.frontend.mac)
        self.to_client(back, f"{self.name} reverse-nat {nat.server_reply} => {nat.client_reply}")

    def to_client(self, frame: bytes, comment: str) -> None:
        """Send a frame from the VIP toward the client by this cloud's return path (docs/design.md, B7)."""
        primary = self.vs.primary
        if primary is None or primary == self.name or not self.paths.return_via_primary:
            self.later(self.send_ip, self.frontend, self.paths.client_next_hop, frame, comment + " direct to client")
            return
        target = self.peer(primary)
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        self.later(self._tunnel, target, inner, f"{comment} via primary {primary} in tunnel")

    # -- resets ----------------------------------------------------------------

    def reset_client(self, frame: bytes, view: frames.FlowView, why: str) -> None:
        reply = frames.tcp_reset_for(frame, self.frontend.mac)
        self.runtime.counters.reset(self.name)
        self.to_client(reply, f"{self.name} reset {view.describe()} ({why})")

    def reset_all(self, why: str) -> int:
        """Reset every connection this SE still carries, at both ends; return how many."""
        entries = self.nat.open_entries()
        vs = self.vs
        for nat in entries:
            if nat.proto == frames.PROTO_TCP:
                to_client = frames.tcp_frame(ZERO_MAC, self.frontend.mac, vs.vip, nat.client_ip, vs.port,
                                             nat.client_port, nat.server_next, nat.client_next, RST | ACK, b"",
                                             self.next_ident())
                described = f"{frames.ip_text(nat.client_ip)}:{nat.client_port}>{frames.ip_text(vs.vip)}:{vs.port}"
                self.to_client(to_client, f"{self.name} reset {described} ({why})")
                server = nat.server
                to_server = frames.tcp_frame(ZERO_MAC, self.backend.mac, self.backend.ip, server.ip, nat.nat_port,
                                             server.port, nat.client_next, nat.server_next, RST | ACK, b"",
                                             self.next_ident())
                self.later(self.send_ip, self.backend, server.ip, to_server,
                           f"{self.name} reset {frames.ip_text(self.backend.ip)}:{nat.nat_port}>{server.endpoint} ({why})")
            self.nat.close(nat)
        self.runtime.counters.reset(self.name, len(entries))
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
        self.nat.clear()
        self.prober.pending.clear()
        self.selector = ServerSelector(self.servers, self.pool.lb_algorithm, self.vs.hash_key)
        self.monitor = HealthMonitor(self, self.pool.health_monitor, self.servers, self.seed)
