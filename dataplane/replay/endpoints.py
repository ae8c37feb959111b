"""
Replay's two ends of every recorded flow: the clients node and the pool servers.

``ReplayClients`` is one node on the ``clients`` segment standing for every
recorded client address (proxy ARP, and proxy Neighbor Discovery for the
IPv6 client addresses of the flows it plays: it answers for any address but
the router's own); it sends client packets with the server address mapped to
the VIP (or VIP6) and VS port.  ``ReplayServer`` is a pool member that sends the recorded
server packets into the NATed connection the SE opened to it; traffic that
is not a replayed flow (health probes) gets the normal ``Server`` behaviour.
Both are put into the network by the builder's hooks (``Replayer.hooks``).

Each replayed frame is named in the comment of its first captured frame,
"recorded frame N" plus what replay repaired on the way: the router repeats
the clients' note (``Runtime.notes``; the access link is not captured), a
server writes it in its own comment.  A datagram replay reassembled enters
as fragments again when it exceeds the MTU, else whole, and says which.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..l2 import Nic, Segment
from ..nodes.context import MAX_NOTES, Runtime
from ..nodes.host import Host
from ..nodes.server import Server
from ..wire import arp, dual, frames
from ..wire.headers import ETH_LEN, ETHERTYPE_IPV4_BYTES, ETHERTYPE_IPV6_BYTES, IPV4_PROTO, PROTO_TCP, TCP_FLAGS, \
    ZERO_MAC
from ..wire.ipv6 import NatRewrite6, ip_view, link_local
from .account import mark
from .flow import ReplayFlow
from .fragments import MTU, fragment
from .input6 import tcp_flags6
from .repair import check_checksums
from .segments import segment_tcp


class FlowDirectory(Protocol):
    """What the endpoints ask the replayer: which flow a packet belongs to."""

    def flow_of_client(self, client_ip: bytes, client_port: int, proto: int) -> ReplayFlow | None: ...

    def se_by_backend_ip(self, ip: bytes) -> Any: ...

    def sending(self, row: Any, frames_sent: int) -> None: ...

    def untold(self, row: Any, why: str) -> None: ...


def note_for(row: Any) -> str:
    """What the comment of a replayed frame's first captured frame says about its input frame."""
    if row.loop == 1 and not row.detail:
        return f"recorded frame {row.frame}"
    return f"{mark(row.frame, row.loop)}, {row.detail}" if row.detail else mark(row.frame, row.loop)


def pieces_of(frame: bytes, row: Any, from_client: bool) -> list[bytes]:
    """The frames that carry ``frame`` into the network; ``row.entered`` says how, when it was over the MTU.

    A recorded TCP super-segment (TSO/GRO: a NIC cut or glued it on the other side of the
    capture point) goes as the MTU-sized segments it was on the wire; any other packet over
    the MTU (a datagram replay reassembled, or one recorded before the sender fragmented it)
    as fragments, as the sending host makes them.
    """
    if len(frame) <= WHOLE_MAX:
        row.note("entered whole")
        row.entered = "whole"
        return [frame]
    header, packet = frame[:ETH_LEN], frame[ETH_LEN:]
    view = ip_view(frame)
    if not row.parts and view.proto == PROTO_TCP and not view.fragment:
        cut = cut_super_segment(packet, view.l4 - ETH_LEN, row)
        if cut is not None:
            side = row.flow.client if from_client else row.flow.server_side
            side.extra_pieces += len(cut) - 1   # the other end counts the recorded packet once
            return [header + piece for piece in cut]
    pieces = [header + piece for piece in fragment(packet, MTU)]
    row.note(f"entered as {len(pieces)} fragments (over the {MTU}-byte MTU)")
    row.entered = "as_fragments" if row.parts else "fragmented_over_mtu"
    return pieces


def cut_super_segment(packet: bytes, l4: int, row: Any) -> list[bytes] | None:
    """The recorded TCP super-segment ``packet`` (an IP packet, TCP at ``l4``) as the MTU-sized segments a
    NIC's TSO cuts it into, said on ``row``; None when it is not cut.  A checksum kept wrong stays wrong."""
    cut = segment_tcp(packet, l4, MTU, keep_wrong_checksum=bool(check_checksums(packet)))
    if cut is not None:
        row.note(f"a {len(packet)}-byte TCP super-segment (TSO/GRO), entered as the {len(cut)} "
                 f"segments a NIC cuts it into for the {MTU}-byte MTU")
        row.entered = "tcp_super_segments"
    return cut


#: A frame longer than this is cut before it enters the network (``pieces_of``).
WHOLE_MAX = ETH_LEN + MTU


class ReplayClients(Host):
    """Every recorded client address, on the access link behind the router."""

    kind = "client"

    def __init__(self, runtime: Runtime, name: str, segment: Segment, ip: bytes, router_nic: Nic,
                 client_gateways: set[bytes], directory: FlowDirectory):
        super().__init__(runtime, name, ip, segment)
        self.nic.allowed_ips = None
        self.router_nic = router_nic
        self.directory = directory
        self._not_mine = set(client_gateways) | {router_nic.ip, router_nic.ip6}

    def answers_arp_for(self, nic, ip: bytes) -> bool:
        # Proxy ARP: recorded client addresses are arbitrary, the router must reach each of them here.
        return ip not in self._not_mine

    def answers_nd_for(self, nic, ip6: bytes) -> bool:
        return ip6 not in self._not_mine   # proxy ND, as proxy ARP

    def enable_ipv6(self, router: Any) -> None:
        """Take part in Neighbor Discovery (the VS has a VIP6).  Without an IPv6 client network in the scenario,
        this node and the router's NIC here get link-local addresses, so the router can still resolve recorded
        IPv6 clients (the access link is not captured)."""
        for node, nic in ((router, self.router_nic), (self, self.nic)):
            if nic.ip6 is None:
                nic.ip6 = link_local(nic.mac)
                node.join(nic, nic.ip6)
        self._not_mine.add(self.router_nic.ip6)

    def serve6(self, client_ip: bytes) -> None:
        """Receive the Neighbor Solicitations for an IPv6 client address (its solicited-node group)."""
        self.join(self.nic, client_ip)

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

    def send(self, flow: ReplayFlow, frame: bytes, row: Any) -> None:
        # The access link is not captured: the router names the input frame in its own comment, and
        # this frame's own comment is seen by nobody (it says who sent it, cheaply).  Notes are keyed
        # by the IP packet (the router rewrites the MACs), as Runtime.note keys them.
        notes = self.runtime.notes
        if len(notes) >= MAX_NOTES:  # frames that never reached the router: forget the oldest note
            del notes[next(iter(notes))]
        key = frame[ETH_LEN:]
        if not row.parts and key not in notes and len(frame) <= WHOLE_MAX:   # the common frame: no loop
            notes[key] = f"recorded frame {row.frame}" if row.loop == 1 and not row.detail else note_for(row)
            self.nic.send(frame, self.name)
            self.directory.sending(row, 1)
            return
        pieces = pieces_of(frame, row, True) if row.parts or len(frame) > WHOLE_MAX else (frame,)
        note = note_for(row)
        for piece in pieces:
            key = piece[ETH_LEN:]
            if key in notes:  # the same bytes still on their way to the router: it names the first only
                self.directory.untold(row, f"byte-identical to the frame of {notes[key].split(',')[0]}, "
                                           "still in flight: the router's comment names that one")
                note = ""
            elif note:
                notes[key] = note
            self.nic.send(piece, self.name)
        if note:
            self.directory.sending(row, len(pieces))

    def send_added(self, flow: Any, seq: int, ack: int, flags: int, window: int, note: str) -> None:
        """Send an ACK the recording does not have (``proxied``); the router's comment gives ``note``."""
        self.send_piece(flow, dual.tcp(self.router_nic.mac, self.nic.mac, flow.client_ip, flow.vip, flow.client_port,
                                       flow.vport, seq, ack, flags, b"", 0, None, window), note)

    def send_piece(self, flow: Any, frame: bytes, note: str) -> None:
        """Send a frame that is no recorded packet of its own (``proxied``: a piece of a cut super-segment,
        an added ACK); the router's comment gives ``note``."""
        notes = self.runtime.notes
        if len(notes) >= MAX_NOTES:
            del notes[next(iter(notes))]
        notes[frame[ETH_LEN:]] = note
        self.nic.send(frame, self.name)

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("replay_client_unsupported")
            return
        flow = self.directory.flow_of_client(view.dst, view.dport, view.proto)
        if flow is None or flow.outcome is not None:
            self.drop("replay_client_no_flow")
            return
        flow.arrived_at_client(frame, view)


class ReplayServer(Server):
    """A pool member that plays the recorded server side of the flows the SEs bring to it."""

    def __init__(self, *args: Any, directory: FlowDirectory, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.directory = directory
        self.peers: dict[tuple[bytes, int, int], ReplayFlow] = {}
        self.v6 = len(self.ip) == 16
        self.header = ZERO_MAC + self.nic.mac + (ETHERTYPE_IPV6_BYTES if self.v6 else ETHERTYPE_IPV4_BYTES)

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if not self.failed and not view.fragment and view.proto in (frames.PROTO_TCP, frames.PROTO_UDP) \
                and view.dst == self.ip:
            if view.dport == self.port:
                flags = view.flags
                flow = self.peers.get((view.src, view.sport, view.proto))
                if flow is None or flags & frames.SYN and flow.client.arrived:
                    flow = self._flow_for(view)
                if flow is not None:
                    if flow.outcome is None:
                        flow.arrived_at_server(frame, view)
                    return
        super().handle_ip(nic, frame, view)

    def _flow_for(self, view: frames.FlowView) -> ReplayFlow | None:
        """The flow a first packet from an SE address and port carries (a new NATed connection)."""
        key = (view.src, view.sport, view.proto)
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
        flow.peer_text = dual.endpoint(view.src, view.sport)
        (client_ip, client_port), (server_ip, server_port) = flow.rec_client, flow.rec_server
        if self.v6:
            flow.to_peer = NatRewrite6(server_ip, server_port, client_ip, client_port, self.ip, self.port,
                                       view.src, view.sport, hop_decrement=0)
        else:
            flow.to_peer = frames.NatRewrite(server_ip, server_port, client_ip, client_port, self.ip, self.port,
                                             view.src, view.sport, ttl_decrement=0)
        self.peers[key] = flow
        return flow

    def forget(self, flow: ReplayFlow) -> None:
        if self.peers.get((flow.peer_ip, flow.peer_port, flow.proto)) is flow:
            del self.peers[(flow.peer_ip, flow.peer_port, flow.proto)]

    def send_added(self, flow: Any, seq: int, ack: int, flags: int, window: int, note: str) -> None:
        """Send a segment the recording does not have into the SE's connection (``proxied``): an ACK, or the
        SYN-ACK of a recording that lacks it (with the MSS this server's family allows)."""
        mss = dual.mss_for(self.ip) if flags & frames.SYN else None
        frame = dual.tcp(ZERO_MAC, self.nic.mac, self.ip, flow.peer_ip, self.port, flow.peer_port, seq, ack,
                         flags, b"", 0, mss, window)
        self._send_unrecorded(flow, frame, note)

    def send_piece(self, flow: Any, packet: bytes, note: str) -> None:
        """Send a piece of a recorded super-segment into the SE's connection (``proxied``), named by ``note``."""
        next_hop = self.arp_cache.get(flow.peer_ip, ZERO_MAC)
        self._send_unrecorded(flow, flow.to_peer.apply(self.header + packet, next_hop, self.nic.mac), note)

    def _send_unrecorded(self, flow: Any, frame: bytes, note: str) -> None:
        """A frame that is no recorded packet of its own, commented as ``send_recorded`` comments (which
        builds its comment inline: it runs for every recorded server packet)."""
        self.send_ip(self.nic, flow.peer_ip, frame, f"{self.name} {note} (flow {flow.number}) "
                                                    f"{self.endpoint}>{flow.peer_text}")

    def send_recorded(self, flow: ReplayFlow, packet: bytes, row: Any) -> None:
        if self.v6:
            if tcp_flags6(packet) & frames.RST:
                flow.server_side.sent_reset = True
        elif packet[IPV4_PROTO] == PROTO_TCP and packet[(packet[0] & 0x0F) * 4 + TCP_FLAGS] & frames.RST:
            flow.server_side.sent_reset = True
        # The next hop's MAC written now saves send_ip a copy of the frame.
        frame = flow.to_peer.apply(self.header + packet, self.arp_cache.get(flow.peer_ip, ZERO_MAC), self.nic.mac)
        pieces = pieces_of(frame, row, False) if row.parts or len(frame) > WHOLE_MAX else (frame,)
        note = f"recorded frame {row.frame}" if row.loop == 1 and not row.detail else note_for(row)
        comment = f"{self.name} {note} (flow {flow.number}) {self.endpoint}>{flow.peer_text}"
        self.directory.sending(row, len(pieces))
        if len(pieces) == 1 and not frame.startswith(ZERO_MAC):   # next hop resolved: send_ip's own fast path
            self.nic.send(frame, comment)
            return
        for piece in pieces:
            self.send_ip(self.nic, flow.peer_ip, piece, comment)
