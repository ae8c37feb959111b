"""
What Service Engines send each other: forwarded flows, the SE-to-SE tunnel, flow probes, heartbeats.

``PeerLinks`` is the part of ``ServiceEngine`` that talks to the other SEs
of its group on the frontend: a flow the primary steers to its owner
leaves with only its Ethernet addresses changed, or inside the tunnel
(VXLAN over UDP ``se_tunnel_udp_port``, the VS's VNI) where the cloud type
wants it (``PathPolicy.forward_in_tunnel``); a response returned through
the primary comes back the same way.  Flow probe messages (UDP one port
above the tunnel, ``flow_probe``) and heartbeats (their own EtherType,
``heartbeat``) arrive here too.  Only an SE of the group - its address
*and* its MAC - is obeyed: forged SE traffic is dropped and counted.
"""

from __future__ import annotations

from .. import flowhash
from ..wire import dual, frames
from ..wire.frames import ZERO_MAC
from ..wire.headers import ETH_SRC, ETHERTYPE_IPV6, ETHERTYPE_IPV6_BYTES, IP_ADDRESSES, IP_PROTO
from ..wire.ipv6 import FlowView6, ip_view
from . import flow_probe
from .context import ServedService
from .heartbeat import ETHERTYPE_HEARTBEAT

TUNNEL_SOURCE_PORTS = 49152
_HEARTBEAT = ETHERTYPE_HEARTBEAT.to_bytes(2, "big")


class PeerLinks:
    """Mixed into ``ServiceEngine``: the SE-to-SE side of its frontend."""

    # -- sending -----------------------------------------------------------------------

    def forward_to(self, vs: ServedService, owner: str, frame: bytes, comment: str) -> None:
        """Send a client's frame to the SE that owns its flow (docs/design.md, B4)."""
        target = self.peer(owner)
        inner = frames.rewrite_ethernet(frame, target.frontend.mac, self.frontend.mac)
        if self.paths.forward_in_tunnel:
            self.later(self.tunnel, vs, target, inner, comment + " in tunnel")
        else:
            self.later(self.frontend.send, inner, comment)

    def tunnel(self, vs: ServedService, target, inner: bytes, comment: str) -> None:
        # RFC 7348 section 5: a hash of the inner flow in the dynamic range, so ECMP spreads the tunnel's flows.
        if inner[12:14] == ETHERTYPE_IPV6_BYTES:
            view = FlowView6(inner)
            flow = view.src + view.dst + bytes((view.proto,)) + inner[view.l4:view.l4 + 4]
        else:
            l4 = frames.l4_offset(inner)
            flow = inner[IP_ADDRESSES] + inner[IP_PROTO:IP_PROTO + 1] + inner[l4:l4 + 4]
        sport = TUNNEL_SOURCE_PORTS + flowhash.siphash24(vs.hash_key, flow) % (65536 - TUNNEL_SOURCE_PORTS)
        outer = frames.vxlan_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                   sport, self.tunnel_port, vs.vni, inner, self.next_ident())
        self.frontend.send(outer, comment)

    def send_probe_message(self, peer: str, kind: int, probe_id: int, key: bytes, comment: str) -> None:
        target = self.peer(peer)
        frame = frames.udp_frame(target.frontend.mac, self.frontend.mac, self.frontend.ip, target.frontend.ip,
                                 self.prober.port, self.prober.port, flow_probe.encode(kind, probe_id, key),
                                 self.next_ident())
        self.later(self.frontend.send, frame, f"{self.name} {comment}")

    # -- receiving ---------------------------------------------------------------------

    def peer_message(self, frame: bytes, view: frames.FlowView) -> None:
        """A UDP frame to this SE's own frontend address: the tunnel, a flow probe, or nothing we serve."""
        if view.dport == self.tunnel_port:
            self._from_tunnel(frame, view)
        elif view.dport == self.prober.port:
            self._probe_message(frame, view)
        else:
            self.drop("se_port_closed")

    def handle_other(self, nic, frame: bytes) -> None:
        sender = self.registry.se_by_frontend_mac.get(frame[ETH_SRC])
        if frame[12:14] != _HEARTBEAT or nic is not self.frontend or sender is None:
            self.drop("unsupported_ethertype")
            return
        self.heartbeat.receive(frame, sender)

    def _peer_sender(self, frame: bytes, view: frames.FlowView) -> str | None:
        """The SE of the group that sent ``frame`` (its address and its MAC), or None: forged SE traffic is not obeyed."""
        sender = self.registry.se_by_frontend_ip.get(view.src)
        if sender is None:
            return None
        return sender if self.peer(sender).frontend.mac == frame[ETH_SRC] else None

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
        src, sport, vip, vport, proto = flow_probe.flow_of(key)
        mine = self.nat.get(src, sport, vip, vport, proto) is not None
        answer = flow_probe.CLAIM if mine else flow_probe.NOT_MINE
        self.send_probe_message(sender, answer, probe_id, key,
                                f"flow probe {probe_id} answer: {flow_probe.KIND_NAMES[answer]}"
                                f" ({dual.endpoint(src, sport)})")

    def _from_tunnel(self, frame: bytes, outer: frames.FlowView) -> None:
        if self._peer_sender(frame, outer) is None:
            self.drop("tunnel_foreign_source")
            return
        inner = frames.vxlan_inner(frame, outer)
        try:
            if inner is None or frames.ethertype(inner) not in (frames.ETHERTYPE_IPV4, ETHERTYPE_IPV6):
                raise frames.Malformed("tunnel", "no IP frame in the tunnel")
            view = ip_view(inner)
        except frames.Malformed as defect:
            self.drop(f"tunnel_malformed_{defect.reason}")
            return
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("tunnel_unsupported")
            return
        to_vip, from_vip = self.bindings.get(view.dst), self.bindings.get(view.src)
        if to_vip is not None:
            to_vip.packets += 1
            self.serve(to_vip, inner, view, "tunnelled by primary")
        elif from_vip is not None and from_vip.vs.primary == self.name:
            from_vip.packets += 1
            relay = frames.rewrite_ethernet(inner, ZERO_MAC, self.frontend.mac)
            self.later(self.send_ip, self.frontend, self.paths.next_hop(view.src), relay,
                       f"{self.name} relay {view.describe()} from tunnel to client")
        else:
            self.drop("tunnel_not_for_me")


__all__ = ["PeerLinks", "TUNNEL_SOURCE_PORTS"]
