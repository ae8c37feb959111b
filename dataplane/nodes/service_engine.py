"""
Service Engines: steering (primary), source NAT (every owner), return paths, the CPU queue.

An SE has a ``frontend`` NIC on the VIP network and a ``backend`` NIC on the
server network, and may carry several virtual services, each by its own
rules (a ``Binding`` per VS: the pool's selector and monitor).  The frame
path, in the order a client packet meets it:

1. *Steering* (the VS's primary only): flow table hit, else Maglev choice
   over the VS members, recorded in the VS's flow table.  A flow owned by
   another SE goes to it (``se_peering``: Ethernet addresses changed,
   docs/design.md B4, or the SE-to-SE tunnel on Neutron).
2. *Service* (the owner): a NAT entry per client connection (``nat``); a new
   one picks a pool server this SE sees up and a port from this SE's range,
   which all its virtual services share.
3. *Return*: reverse NAT, then straight to the client's next hop, or back
   through the VS's primary inside the tunnel
   (``PathPolicy.return_via_primary``).
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from ..clock import NS_PER_S
from ..l2 import Segment
from ..scenario import SeGroup
from ..wire import arp, dual, frames, nd
from ..wire.checksum import bad_checksum
from ..wire.frames import ACK, FIN, RST, SYN, ZERO_MAC
from ..wire.headers import ETHERTYPE_IPV6_BYTES, PROTO_ICMPV6
from ..wire.ipv6 import NatRewrite6, bad_checksum6
from .binding import Binding
from .context import PoolServer, Runtime, ServedService
from .flow_probe import FlowProber
from .heartbeat import ETHERTYPE_HEARTBEAT, HeartbeatAgent
from .host import Node
from .management import ManagementPort
from .nat import NatEntry, NatTable, PortRing
from .se_peering import PeerLinks
from .tcp_proxy import ProxiedConnection

FLOW_TOUCH_INTERVAL = NS_PER_S
_ICMP = (frames.PROTO_ICMP, PROTO_ICMPV6)  # a health monitor's echo replies, of either family
#: Frames an SE queues when it is busier than its capacity (like a NIC's receive ring); past it, it drops.
QUEUE_FRAMES = 1024
_HEARTBEAT = ETHERTYPE_HEARTBEAT.to_bytes(2, "big")


class ServiceEngine(PeerLinks, Node):
    kind = "se"

    def __init__(self, runtime: Runtime, name: str, host: str, frontend: Segment, frontend_ip: bytes,
                 backend: Segment, backend_ip: bytes, services: Sequence[tuple[ServedService, Sequence[PoolServer]]],
                 group: SeGroup, seed: int, frontend_ip6: bytes | None = None, backend_ip6: bytes | None = None):
        super().__init__(runtime, name)
        self.host = host
        self.frontend = self.add_nic("frontend", frontend, frontend_ip, ip6=frontend_ip6)
        self.backend = self.add_nic("backend", backend, backend_ip, ip6=backend_ip6)
        self.paths = runtime.paths
        self.registry = runtime.registry
        self.delay_ns = round(group.processing_delay * 1e9)
        self.tunnel_port = group.se_tunnel_udp_port
        self.nat = NatTable(self.sim, self._nat_closed,
                            (group.ephemeral_portrange_start, group.ephemeral_portrange_end),
                            round(group.tcp_half_open_timeout * NS_PER_S))
        #: The health monitors' ports, above the NAT range (never a client connection's), shared by all pools.
        self.probe_ports = PortRing(group.ephemeral_portrange_end + 1, 65535)
        #: What this SE keeps for each virtual service it may serve, by each of its VIPs (IPv4 and IPv6).
        self.bindings: dict[bytes, Binding] = {}
        self.services = [vs for vs, _ in services]
        for vs, servers in services:
            binding = Binding(self, vs, servers, seed, self.probe_ports)
            for vip in vs.vips:
                self.bindings[vip] = binding
            if vs.vip6 is not None:
                self.join(self.frontend, vs.vip6)  # its NS arrive here; only the primary answers them
        #: ISNs of the connections this SE makes itself (the TCP proxy profile's two sides).
        self.proxy_rng = random.Random(f"{seed}:{name}:proxy")
        self.prober = FlowProber(self, group)
        self.heartbeat = HeartbeatAgent(self, group)
        self.failed_because = ""
        #: Frames offered to this SE (processed, or dropped because it was overloaded): the CPU model's work.
        self.packets = 0
        #: The CPU model as a queue: each frame takes 1/capacity_pps of the SE, and waits for the ones before it.
        self.capacity_pps = group.capacity_pps
        self.service_ns = max(1, round(NS_PER_S / group.capacity_pps))
        #: A frame that waits this long finds the queue full: the SE's NICs refuse frames until it drains.
        self.queue_full_ns = QUEUE_FRAMES * self.service_ns
        self.busy_until = 0
        self._wait = 0

    # -- roles -----------------------------------------------------------------

    def binding(self, vs: ServedService) -> Binding:
        return self.bindings[vs.vips[0]]

    def primary_for(self) -> list[ServedService]:
        """The virtual services this SE is the primary of."""
        return [vs for vs in self.services if vs.primary == self.name]

    def answers_arp_for(self, nic, ip: bytes) -> bool:
        if ip == nic.ip:
            return True
        binding = self.bindings.get(ip) if nic is self.frontend else None
        return binding is not None and binding.vs.primary == self.name

    def answers_nd_for(self, nic, ip6: bytes) -> bool:
        return ip6 == nic.ip6 or self.answers_arp_for(nic, ip6)  # a VIP6 as a VIP: the primary only

    def arp_reply_reason(self, ip: bytes) -> str:
        binding = self.bindings.get(ip)
        if binding is None:
            return ""
        vip = "VIP6" if len(ip) == 16 else "VIP"
        return f" (primary for the {vip}{' of ' + binding.vs.name if binding.vs.tag else ''})"

    def announce_vip(self, vs: ServedService, why: str) -> None:
        """Take ``vs``'s VIPs: gratuitous ARP for the IPv4 one, an unsolicited NA for the IPv6 one."""
        mac = frames.mac_text(self.frontend.mac)
        self.frontend.allowed_ips.update(vs.vips)
        if vs.vip is not None:
            self.frontend.send(arp.gratuitous_arp(self.frontend.mac, vs.vip),
                               f"{self.name} gratuitous arp {frames.ip_text(vs.vip)} is-at {mac} ({vs.tag}{why})")
        if vs.vip6 is not None:
            self.frontend.send(nd.unsolicited_advertisement(self.frontend.mac, vs.vip6),
                               f"{self.name} unsolicited nd advertisement {frames.ip_text(vs.vip6)} is-at {mac} "
                               f"({vs.tag}{why})")

    def give_up_vip(self, vs: ServedService) -> None:
        self.frontend.allowed_ips.difference_update(vs.vips)

    def start_monitoring(self, vs: ServedService) -> None:
        self.binding(vs).monitor.start()

    def stop_monitoring(self, vs: ServedService) -> None:
        self.binding(vs).monitor.stop()

    def later(self, send, *args) -> None:
        """Send after the SE's processing delay (and any queueing), so capture timestamps show the hop's cost."""
        self.sim.post(self.delay_ns + self._wait, send, args)

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
        if self.runtime.verify_checksums:  # off unless frames from outside may be wrong: the fast path skips it
            wrong = bad_checksum(frame) if view.version == 4 else bad_checksum6(frame, view)
            if wrong:
                self.drop(f"bad_{wrong}_checksum")
                return
        # This frame's share of the CPU: it waits while the frames before it are processed (inlined: every frame).
        now = self.sim.now
        start = self.busy_until if self.busy_until > now else now
        self.busy_until = start + self.service_ns
        self._wait = start - now
        if self._wait >= self.queue_full_ns:
            self.frontend.congested = self.backend.congested = True
        self._route(nic, frame, view)
        self._wait = 0  # what the SE sends later, on a timer, does not wait behind this frame

    def _route(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if nic is self.backend and (view.proto in _ICMP or view.dport >= self.probe_ports.low) \
                and self._probe_answer(frame, view):
            return
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("se_unsupported")
            return
        if nic is self.backend:
            self._from_server(frame, view)
            return
        dst = view.dst
        if dst == self.frontend.ip and view.proto == frames.PROTO_UDP:
            self.peer_message(frame, view)
            return
        binding = self.bindings.get(dst)
        if binding is None:
            self.drop("se_not_for_me")
            return
        vs = binding.vs
        binding.packets += 1
        if view.proto != vs.proto or not vs.listens[view.dport]:
            self.drop_for(vs, "vs_port_closed")
        elif vs.primary == self.name:
            self._steer(binding, frame, view)
        else:
            self.serve(binding, frame, view, "forwarded by primary")

    def _probe_answer(self, frame: bytes, view: frames.FlowView) -> bool:
        """True if one of this SE's health monitors takes the frame as the answer to its probe."""
        return any(binding.monitor.handle(frame, view) for binding in self.bindings.values())

    def drop_for(self, vs: ServedService, reason: str) -> None:
        """Count a drop that hurt ``vs`` (summary.json gives drops per virtual service too)."""
        self.runtime.counters.drop(reason, 1, vs.name)

    def _steer(self, binding: Binding, frame: bytes, view: frames.FlowView) -> None:
        vs = binding.vs
        key = vs.flow_key(view)
        entry = vs.flow_table.get(key)
        now = self.sim.now
        owner = self.registry.se_names[entry[0]] if entry is not None else None
        why = vs.flow_table_note(owner) if owner is not None else None  # None: no entry, or its SE is gone
        if why is None and owner is None and (not view.flags & SYN if view.proto == frames.PROTO_TCP
                                              else now < vs.recovering_until):
            if self.nat.get(view.src, view.sport, view.dst, view.dport, view.proto) is not None:
                self.adopt_flow(vs, key, self.name, [(frame, view)])  # a flow it served as a secondary
            else:
                self.prober.hold(vs, key, frame, view)
            return
        elif why is None:
            gone = f"owner {owner} gone, " if owner else ""
            owner, bucket = vs.choose(key)
            why = f"{gone}new flow, bucket {bucket}"
            entry = None
            if not vs.flow_table.put(key, self.registry.se_index[owner], now):
                self.drop_for(vs, "flow_table_full")  # the flows it holds go on; a new one is refused
                if view.proto == frames.PROTO_TCP and not view.flags & RST:
                    self.reset_client(vs, frame, view, "flow table full")
                return
        if view.flags & RST:
            vs.flow_table.pop(key)
        elif entry is not None and now - entry[1] > FLOW_TOUCH_INTERVAL:
            vs.flow_table.put(key, entry[0], now)  # idle expiry needs seconds, not every packet
        if owner == self.name:
            self.serve(binding, frame, view, f"{why}, own")
            return
        self.forward_to(vs, owner, frame, f"{self.name} steer {view.describe()} -> {owner} ({vs.tag}{why})")

    def unclaimed(self, vs: ServedService, key: bytes, held: list, why: str) -> None:
        """No SE claims a held flow: reset it (TCP), or load-balance it as a new flow (UDP)."""
        frame, view = held[-1]
        if view.proto == frames.PROTO_TCP:
            self.reset_client(vs, frame, view, why)
            return
        owner, bucket = vs.choose(key)
        if not vs.flow_table.put(key, self.registry.se_index[owner], self.sim.now):
            self.drop_for(vs, "flow_table_full")
            return
        self._send_held(vs, owner, held, f"{why}, new flow, bucket {bucket}")

    def adopt_flow(self, vs: ServedService, key: bytes, owner: str, held: list) -> None:
        """Record a flow a probe found and send on the packets held for it."""
        vs.flow_table.put(key, self.registry.se_index[owner], self.sim.now)
        self._send_held(vs, owner, held, "claimed by own flow probe" if owner == self.name else "flow probe claim")

    def _send_held(self, vs: ServedService, owner: str, held: list, why: str) -> None:
        for frame, view in held:
            if owner == self.name:
                self.serve(self.binding(vs), frame, view, why if why.startswith("claimed") else f"{why}, own")
            else:
                self.forward_to(vs, owner, frame, f"{self.name} steer {view.describe()} -> {owner} ({vs.tag}{why})")

    # -- service (source NAT) --------------------------------------------------

    def serve(self, binding: Binding, frame: bytes, view: frames.FlowView, why: str) -> None:
        nat = self.nat.by_client.get((view.src, view.sport, view.dst, view.dport, view.proto))
        if nat is None:
            nat = self._open(binding, frame, view, why)
            if nat is None:
                return
            why = f"{why}, new connection to {nat.server.name} by {binding.selector.algorithm}"
            if binding.proxy and view.proto == frames.PROTO_TCP:
                nat.last_ns = self.sim.now
                nat.proxy = ProxiedConnection(self, nat, self.proxy_rng, why)
                nat.proxy.accept(frame, view)
                return
        nat.last_ns = self.sim.now
        if nat.proxy is not None:
            nat.proxy.from_client_frame(frame, view)
            return
        if view.ttl <= 1:  # the SE routes what it translates: a packet at the end of its life stops here
            self.drop_for(binding.vs, "ttl_expired")
            return
        if view.flags & (FIN | RST) or nat.fin_from_server:  # the common data packet skips the close rules
            self.nat.track(nat, view.flags, from_client=True)
        if view.proto == frames.PROTO_TCP:
            nat.client_next = frames.next_sequence(view.seq, view.flags, view.payload_len)
        out = nat.to_server.apply(frame, self.arp_cache.get(nat.server.ip, ZERO_MAC), self.backend.mac)
        self.later(self.send_ip, self.backend, nat.server.ip, out,
                   f"{self.name} snat {nat.client_side} => {nat.server_side} ({binding.vs.tag}{why})")

    def _open(self, binding: Binding, frame: bytes, view: frames.FlowView, why: str) -> NatEntry | None:
        vs = binding.vs
        if view.proto == frames.PROTO_TCP and (view.flags & (SYN | ACK | RST)) != SYN:
            if not view.flags & RST:
                self.reset_client(vs, frame, view, "no connection state")
            return None
        server = binding.selector.pick(view.src)  # of the client's family: no NAT64
        mine = self.backend.ip if len(view.src) == 4 else self.backend.ip6
        if server is None or mine is None:
            self.drop_for(vs, "no_server_up")
            if view.proto == frames.PROTO_TCP:
                self.reset_client(vs, frame, view, "no pool server up")
            return None
        nat_port = self.nat.free_port(view.proto)
        if nat_port is None:  # the SE keeps serving the connections it has; a new one is refused
            self.drop_for(vs, "nat_ports_exhausted")
            if view.proto == frames.PROTO_TCP:
                self.reset_client(vs, frame, view, "no NAT port left")
            return None
        vip = view.dst
        nat = NatEntry(view.src, view.sport, vip, view.dport, view.proto, server, nat_port, self.sim.now, binding)
        nat.snat_ip = mine
        rewrite = frames.NatRewrite if len(vip) == 4 else NatRewrite6
        nat.to_server = rewrite(view.src, view.sport, vip, view.dport, mine, nat_port, server.ip, server.port)
        nat.to_client = rewrite(server.ip, server.port, mine, nat_port, vip, view.dport, view.src, view.sport)
        nat.client_side = view.describe()
        nat.server_side = f"{dual.endpoint(mine, nat_port)}>{server.endpoint}"
        nat.server_reply = f"{server.endpoint}>{dual.endpoint(mine, nat_port)}"
        nat.client_reply = f"{dual.endpoint(vip, view.dport)}>{dual.endpoint(view.src, view.sport)}"
        self.nat.add(nat)
        binding.selector.opened(server)
        vs.flows_by_se[self.name] += 1
        if len(vip) == 16:
            vs.ipv6_flows_by_se[self.name] += 1
        self.runtime.counters.flow_owned(self.name, vs.name)
        return nat

    def proxy_finished(self, proxy: ProxiedConnection) -> None:
        """Both connections of a proxied one are closed: its NAT entry and port go."""
        if not proxy.nat.closing:
            self.nat.close(proxy.nat)

    def _nat_closed(self, nat: NatEntry) -> None:
        nat.binding.selector.closed(nat.server)
        if nat.proxy is not None and not nat.proxy.finished and not nat.proxy.gone:
            nat.proxy.reset_both("idle: the connection's NAT entry expired")

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
        nat.binding.packets += 1
        nat.last_ns = self.sim.now
        nat.answered = True
        if nat.proxy is not None:
            nat.proxy.from_server_frame(frame, view)
            return
        if view.ttl <= 1:
            self.drop_for(nat.binding.vs, "ttl_expired")
            return
        if view.flags & (FIN | RST) or nat.fin_from_client:
            self.nat.track(nat, view.flags, from_client=False)
        if view.proto == frames.PROTO_TCP:
            nat.server_next = frames.next_sequence(view.seq, view.flags, view.payload_len)
        back = nat.to_client.apply(frame, self.arp_cache.get(self.paths.next_hop(nat.vip), ZERO_MAC),
                                   self.frontend.mac)
        self.to_client(nat.binding.vs, back, f"{self.name} reverse-nat {nat.server_reply} => {nat.client_reply}")

    def to_client(self, vs: ServedService, frame: bytes, comment: str) -> None:
        """Send a frame from ``vs``'s VIP toward the client by this cloud's return path (docs/design.md, B7)."""
        primary = vs.primary
        if primary is None or primary == self.name or not self.paths.return_via_primary:
            hop = self.paths.client_next_hop6 if frame[12:14] == ETHERTYPE_IPV6_BYTES else self.paths.client_next_hop
            self.later(self.send_ip, self.frontend, hop, frame, comment + " direct to client")
            return
        target = self.peer(primary)
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        self.later(self.tunnel, vs, target, inner, f"{comment} via primary {primary} in tunnel")

    # -- resets ----------------------------------------------------------------

    def reset_client(self, vs: ServedService, frame: bytes, view: frames.FlowView, why: str) -> None:
        reply = dual.reset_for(frame, self.frontend.mac)
        self.runtime.counters.reset(self.name, re.sub(r" \d+", "", why.split(":")[0]))  # "flow probe 7 ..." -> one key
        self.to_client(vs, reply, f"{self.name} reset {view.describe()} ({vs.tag}{why})")

    def reset_all(self, vs: ServedService, why: str) -> int:
        """Reset every connection of ``vs`` this SE still carries, at both ends; return how many."""
        entries = [nat for nat in self.nat.open_entries() if nat.binding.vs is vs]
        for nat in entries:
            if nat.proxy is not None:
                nat.proxy.reset_both(why)
            elif nat.proto == frames.PROTO_TCP:
                self._reset_both_ends(vs, nat, why)
            self.nat.close(nat)
        self.runtime.counters.reset(self.name, f"drain expired ({why.split(':')[0]})", len(entries))
        return len(entries)

    def _reset_both_ends(self, vs: ServedService, nat: NatEntry, why: str) -> None:
        to_client = dual.tcp(ZERO_MAC, self.frontend.mac, nat.vip, nat.client_ip, nat.vport, nat.client_port,
                             nat.server_next, nat.client_next, RST | ACK, b"", self.next_ident())
        described = f"{dual.endpoint(nat.client_ip, nat.client_port)}>{dual.endpoint(nat.vip, nat.vport)}"
        self.to_client(vs, to_client, f"{self.name} reset {described} ({vs.tag}{why})")
        server = nat.server
        to_server = dual.tcp(ZERO_MAC, self.backend.mac, nat.snat_ip, server.ip, nat.nat_port, server.port,
                             nat.client_next, nat.server_next, RST | ACK, b"", self.next_ident())
        self.later(self.send_ip, self.backend, server.ip, to_server,
                   f"{self.name} reset {dual.endpoint(nat.snat_ip, nat.nat_port)}>{server.endpoint} "
                   f"({vs.tag}{why})")

    # -- failure -----------------------------------------------------------------

    def fail(self) -> None:
        """Stop dead: frames to this SE are lost and it sends nothing more."""
        self.alive = False
        for nic in self.nics.values():
            nic.up = False
        for nat in self.nat.by_client.values():
            if nat.proxy is not None:
                nat.proxy.gone = True  # its timers may still run; it sends nothing more
        self.note_failure(f"{self.name} failed, not yet detected")
        for binding in self.bindings.values():
            binding.monitor.stop()

    def note_failure(self, why: str) -> None:
        """What the capture says of frames sent to this (failed) SE."""
        for nic in self.nics.values():
            nic.down_reason = why

    def recover(self) -> None:
        """Come back as after a reboot: no ARP, NAT, probe or health state; no VIP until one is given."""
        self.alive = True
        for nic in self.nics.values():
            nic.up = True
        self.note_failure("")
        self.busy_until = self._wait = 0
        self.heartbeat.links.clear()
        self.forget_arp()
        self.nat.clear()
        self.prober.pending.clear()
        for binding in self.bindings.values():
            self.give_up_vip(binding.vs)
            binding.fresh()
