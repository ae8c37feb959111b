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

import re
from typing import Sequence

from .. import flowhash
from ..clock import NS_PER_S
from ..l2 import Segment
from ..scenario import Pool, SeGroup
from ..wire import arp, frames
from ..wire.frames import ACK, FIN, RST, SYN, ZERO_MAC
from ..wire.headers import ETH_SRC, IP_ADDRESSES, IP_PROTO
from . import flow_probe
from .context import PoolServer, Runtime, ServedService
from .flow_probe import FlowProber
from .health import HealthMonitor
from .heartbeat import ETHERTYPE_HEARTBEAT, HeartbeatAgent
from .host import Node
from .management import ManagementPort
from .nat import NatEntry, NatTable
from .server_selection import ServerSelector

FLOW_TOUCH_INTERVAL = NS_PER_S
TUNNEL_SOURCE_PORTS = 49152
#: Frames an SE queues when it is busier than its capacity (like a NIC's receive ring); past it, it drops.
QUEUE_FRAMES = 1024
_HEARTBEAT = ETHERTYPE_HEARTBEAT.to_bytes(2, "big")


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
        self.nat = NatTable(self.sim, lambda nat: self.selector.closed(nat.server),
                            (group.ephemeral_portrange_start, group.ephemeral_portrange_end),
                            round(group.tcp_half_open_timeout * NS_PER_S))
        self.probe_ports = (group.ephemeral_portrange_end + 1, 65535)  # the health monitor's, never a NAT port
        self.monitor = HealthMonitor(self, pool.health_monitor, self.servers, seed, self.probe_ports)
        self.prober = FlowProber(self, group)
        self.heartbeat = HeartbeatAgent(self, group)
        self.failed_because = ""
        #: Frames offered to this SE (processed, or dropped because it was overloaded): the CPU model's work.
        self.packets = 0
        #: The CPU model as a queue: each frame takes 1/capacity_pps of the SE, and waits for the ones before it.
        self.capacity_pps = group.capacity_pps
        self.service_ns = max(1, round(NS_PER_S / group.capacity_pps))
        self.busy_until = 0
        self._wait = 0

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
        """Send after the SE's processing delay (and any queueing), so capture timestamps show the hop's cost."""
        self.sim.post(self.delay_ns + self._wait, send, args)

    def _queue(self) -> None:
        """Take this frame's share of the CPU: it waits while the frames before it are processed."""
        now = self.sim.now
        start = self.busy_until if self.busy_until > now else now
        self.busy_until = start + self.service_ns
        self._wait = start - now
        if self._wait >= QUEUE_FRAMES * self.service_ns:
            self.frontend.congested = self.backend.congested = True

    def admit(self, frame: bytes) -> str | None:
        """Asked by a segment while this SE is congested: None to take ``frame``, else why it is dropped."""
        queued = (self.busy_until - self.sim.now) // self.service_ns
        if queued < QUEUE_FRAMES or frame[12:14] == _HEARTBEAT:  # heartbeats go first: control traffic
            if queued < QUEUE_FRAMES:
                self.frontend.congested = self.backend.congested = False
            return None
        self.packets += 1
        return (f"{self.name} overloaded: its queue of {QUEUE_FRAMES} frames is full at "
                f"se_group.capacity_pps {self.capacity_pps:g}")

    def attach_management(self, segment: Segment, ip: bytes) -> None:
        """Give this SE its management NIC, where the controller's messages arrive (``nodes.management``)."""
        self.nics["management"] = ManagementPort(self, segment, ip).nic

    def peer(self, name: str) -> "ServiceEngine":
        return self.registry.nodes[name]

    # -- frontend --------------------------------------------------------------

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        self.packets += 1
        self._queue()
        self._route(nic, frame, view)
        self._wait = 0  # what the SE sends later, on a timer, does not wait behind this frame

    def _route(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if nic is self.backend and self.monitor.answers(view) and self.monitor.handle(frame, view):
            return
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("se_unsupported")
            return
        if nic is self.backend:
            self._from_server(frame, view)
            return
        dst = view.dst
        if dst == self.frontend.ip and view.proto == frames.PROTO_UDP:
            if view.dport == self.tunnel_port:
                self._from_tunnel(frame, view)
            elif view.dport == self.prober.port:
                self._probe_message(frame, view)
            else:
                self.drop("se_port_closed")
        elif dst == self.vs.vip:
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
        why = vs.flow_table_note(owner) if owner is not None else None  # None: no entry, or its SE is gone
        if why is None and owner is None and (not view.flags & SYN if view.proto == frames.PROTO_TCP else now < vs.recovering_until):
            if self.nat.get(view.src, view.sport, view.proto) is not None:
                self.adopt_flow(key, self.name, [(frame, view)])  # a flow it served as a secondary
            else:
                self.prober.hold(key, frame, view)
            return
        elif why is None:
            gone = f"owner {owner} gone, " if owner else ""
            owner, bucket = vs.choose(key)
            why = f"{gone}new flow, bucket {bucket}"
            entry = None
            if not vs.flow_table.put(key, self.registry.se_index[owner], now):
                self.drop("flow_table_full")  # the flows it holds go on; a new one is refused
                if view.proto == frames.PROTO_TCP and not view.flags & RST:
                    self.reset_client(frame, view, "flow table full")
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

    def unclaimed(self, key: bytes, held: list, why: str) -> None:
        """No SE claims a held flow: reset it (TCP), or load-balance it as a new flow (UDP)."""
        frame, view = held[-1]
        if view.proto == frames.PROTO_TCP:
            self.reset_client(frame, view, why)
            return
        owner, bucket = self.vs.choose(key)
        if not self.vs.flow_table.put(key, self.registry.se_index[owner], self.sim.now):
            self.drop("flow_table_full")
            return
        for frame, view in held:
            if owner == self.name:
                self._serve(frame, view, f"{why}, new flow, bucket {bucket}, own")
            else:
                self._forward_to(owner, frame, f"{self.name} steer {view.describe()} -> {owner} ({why}, new flow, "
                                               f"bucket {bucket})")

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

    def _probe_message(self, frame: bytes, view: frames.FlowView) -> None:
        sender = self._peer_sender(frame, view)
        if sender is None:
            self.drop("flow_probe_foreign_source")
            return
        message = flow_probe.decode(view.payload(frame))
        if message is None:
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
        # RFC 7348 section 5: a hash of the inner flow in the dynamic range, so ECMP spreads the tunnel's flows.
        flow = inner[IP_ADDRESSES] + inner[IP_PROTO:IP_PROTO + 1] + inner[l4:l4 + 4]
        sport = TUNNEL_SOURCE_PORTS + flowhash.siphash24(self.vs.hash_key, flow) % (65536 - TUNNEL_SOURCE_PORTS)
        outer = frames.vxlan_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                   sport, self.tunnel_port, self.vs.vni, inner, self.next_ident())
        self.frontend.send(outer, comment)

    def _peer_sender(self, frame: bytes, view: frames.FlowView) -> str | None:
        """The SE of the group that sent ``frame`` (its address and its MAC), or None: forged SE traffic is not obeyed."""
        sender = self.registry.se_by_frontend_ip.get(view.src)
        if sender is None:
            return None
        return sender if self.peer(sender).frontend.mac == frame[ETH_SRC] else None

    def _from_tunnel(self, frame: bytes, outer: frames.FlowView) -> None:
        if self._peer_sender(frame, outer) is None:
            self.drop("tunnel_foreign_source")
            return
        inner = frames.vxlan_inner(frame, outer)
        try:
            if inner is None or frames.ethertype(inner) != frames.ETHERTYPE_IPV4:
                raise frames.Malformed("tunnel", "no IPv4 frame in the tunnel")
            view = frames.FlowView(inner)
        except frames.Malformed as defect:
            self.drop(f"tunnel_malformed_{defect.reason}")
            return
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("tunnel_unsupported")
            return
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
        nat_port = self.nat.free_port(view.proto)
        if nat_port is None:  # the SE keeps serving the connections it has; a new one is refused
            self.drop("nat_ports_exhausted")
            if view.proto == frames.PROTO_TCP:
                self.reset_client(frame, view, "no NAT port left")
            return None
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

    def _from_server(self, frame: bytes, view: frames.FlowView) -> None:
        nat = self.nat.by_port.get((view.proto, view.dport))
        if nat is None or view.src != nat.server.ip:
            self.drop("se_no_nat_entry")
            return
        nat.last_ns = self.sim.now
        nat.answered = True
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
        self.runtime.counters.reset(self.name, re.sub(r" \d+", "", why.split(":")[0]))  # "flow probe 7 ..." -> one key
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
        self.runtime.counters.reset(self.name, f"drain expired ({why.split(':')[0]})", len(entries))
        return len(entries)

    def handle_other(self, nic, frame: bytes) -> None:
        sender = self.registry.se_by_frontend_mac.get(frame[ETH_SRC])
        if frame[12:14] != _HEARTBEAT or nic is not self.frontend or sender is None:
            self.drop("unsupported_ethertype")
            return
        self.heartbeat.receive(frame, sender)

    # -- failure -----------------------------------------------------------------

    def fail(self) -> None:
        """Stop dead: frames to this SE are lost and it sends nothing more."""
        self.alive = False
        for nic in self.nics.values():
            nic.up = False
        self.note_failure(f"{self.name} failed, not yet detected")
        self.monitor.stop()

    def note_failure(self, why: str) -> None:
        """What the capture says of frames sent to this (failed) SE."""
        for nic in self.nics.values():
            nic.down_reason = why

    def recover(self) -> None:
        """Come back as after a reboot: no ARP, NAT or probe state."""
        self.alive = True
        for nic in self.nics.values():
            nic.up = True
        self.note_failure("")
        self.busy_until = self._wait = 0
        self.heartbeat.watching.clear()
        self.forget_arp()
        self.give_up_vip()
        self.nat.clear()
        self.prober.pending.clear()
        self.selector = ServerSelector(self.servers, self.pool.lb_algorithm, self.vs.hash_key)
        self.monitor = HealthMonitor(self, self.pool.health_monitor, self.servers, self.seed, self.probe_ports)
