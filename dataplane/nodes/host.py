"""
Nodes: anything with NICs, a neighbor cache and an IP send path, IPv4 and IPv6.

``Node`` owns real next-hop resolution on a segment: ARP for IPv4, Neighbor
Discovery for IPv6 (RFC 4861: a Neighbor Solicitation to the target's
solicited-node group, answered by a Neighbor Advertisement).  A frame for a
next hop whose MAC is unknown waits while a request is out, is sent when
the answer arrives, and is dropped (and counted) after three unanswered
requests one second apart.  One cache holds both families (4- and 16-byte
keys).  Subclasses decide what to do with IP frames addressed to them
(``handle_ip``, given the parsed view of either family) and which addresses
they answer ARP and NS for.  A NIC receives its own MAC, broadcast, and the
IPv6 multicast groups it is in.  ``Host`` is a node with a single NIC,
``eth0``: clients, servers, replay's clients.  No Duplicate Address
Detection: the scenario gives every address once, so there is nothing to
detect.
"""

from __future__ import annotations

from ..clock import NS_PER_S
from ..l2 import Nic, Segment
from ..wire import arp, nd
from ..wire.frames import FlowView, Malformed, ip_text, mac_text
from ..wire.headers import (BROADCAST, ETH_TYPE, ETHERTYPE_ARP_BYTES, ETHERTYPE_IPV4_BYTES, ETHERTYPE_IPV6_BYTES,
                            PROTO_ICMPV6, ZERO_MAC)
from ..wire.icmpv6 import NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION
from ..wire.ipv6 import FlowView6, mac_for_ipv6
from .context import Runtime

ARP_RETRIES = 3
#: Bounds as Linux's neighbour table has them: frames queued per unresolved address (unres_qlen), addresses
#: being resolved at once, and entries kept (the oldest learned goes first).
ARP_QUEUE = 101
ARP_PENDING = 1024
ARP_CACHE = 65536


def mac_for(ip: bytes, nic_index: int = 0) -> bytes:
    """Return a locally administered MAC that spells the NIC's IPv4 address (readable in Wireshark).

    An IPv6-only NIC's is ``06:<nic>:<CRC-32 of its IPv6 address>`` (``ipv6.mac_for_ipv6``).
    """
    return bytes((0x02, nic_index)) + ip if len(ip) == 4 else mac_for_ipv6(ip, nic_index)


class Node:
    """A host on one or more segments."""

    kind = "host"

    def __init__(self, runtime: Runtime, name: str):
        self.runtime = runtime
        self.sim = runtime.clock
        self.name = name
        self.nics: dict[str, Nic] = {}
        self.arp_cache: dict[bytes, bytes] = {}
        self._arp_waiting: dict[bytes, list[tuple[Nic, bytes, str]]] = {}
        self.ip_ident = 0
        self.alive = True

    # -- wiring ----------------------------------------------------------------

    def add_nic(self, name: str, segment: Segment, ip: bytes | None, mac: bytes | None = None,
                ip6: bytes | None = None) -> Nic:
        """A NIC with an IPv4 address, an IPv6 one (``ip``: None for IPv6 only), or both."""
        nic = Nic(self, name, mac or mac_for(ip if ip is not None else ip6), ip, segment, ip6=ip6)
        if ip6 is not None:
            self.join(nic, ip6)
        self.nics[name] = nic
        return nic

    def join(self, nic: Nic, address: bytes) -> None:
        """Receive on ``nic`` the solicited-node group of IPv6 ``address`` (and all-nodes)."""
        nic.groups.add(nd.multicast_mac(nd.solicited_node(address)))
        nic.groups.add(nd.ALL_NODES_MAC)

    def next_ident(self) -> int:
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        return self.ip_ident

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` frames this node dropped for ``reason`` (summary.json's ``drops``)."""
        self.runtime.counters.drop(reason, count)

    # -- receive ---------------------------------------------------------------

    def receive(self, nic: Nic, frame: bytes) -> None:
        if not self.alive:
            return
        if not frame.startswith(nic.mac) and not frame.startswith(BROADCAST) and frame[:6] not in nic.groups:
            return
        kind = frame[ETH_TYPE]
        if kind == ETHERTYPE_IPV4_BYTES:
            try:
                view = FlowView(frame)  # the one bounds-checked parse: everything after it may trust the view
            except Malformed as defect:
                self.drop(f"malformed_{defect.reason}")
                return
            self.handle_ip(nic, frame, view)
        elif kind == ETHERTYPE_ARP_BYTES:
            self.handle_arp(nic, frame)
        elif kind == ETHERTYPE_IPV6_BYTES:
            self._receive6(nic, frame)
        else:
            self.handle_other(nic, frame)

    def _receive6(self, nic: Nic, frame: bytes) -> None:
        try:
            view = FlowView6(frame)
            neighbor = nd.parse_nd(frame, view) if view.proto == PROTO_ICMPV6 else None
        except Malformed as defect:
            self.drop(f"malformed_{defect.reason}")
            return
        if neighbor is not None:
            self.handle_nd(nic, neighbor)
        elif frame[0] & 1:  # multicast that is not ND: nothing here listens to it
            self.drop("ipv6_multicast_unhandled")
        else:
            self.handle_ip(nic, frame, view)

    def handle_other(self, nic: Nic, frame: bytes) -> None:
        """A frame of another EtherType (an SE's heartbeats, say); hosts have no use for them."""
        self.drop("unsupported_ethertype")

    def handle_ip(self, nic: Nic, frame: bytes, view: FlowView) -> None:
        self.drop("no_listener")

    def answers_arp_for(self, nic: Nic, ip: bytes) -> bool:
        return ip == nic.ip

    def answers_nd_for(self, nic: Nic, ip6: bytes) -> bool:
        return ip6 == nic.ip6

    #: A router sets the Router flag in its advertisements (RFC 4861 4.4).
    is_router = False

    def handle_nd(self, nic: Nic, neighbor: nd.Neighbor) -> None:
        """An NS for one of our addresses is answered; an NA for an address we wait for or know is learnt."""
        if neighbor.kind == NEIGHBOR_SOLICITATION:
            if not self.answers_nd_for(nic, neighbor.target) or nic.ip6 is None:
                return
            if neighbor.src != nd.UNSPECIFIED and neighbor.link_address is not None:
                self.learn(neighbor.src, neighbor.link_address)
            reply = nd.advertisement_for(neighbor, nic.mac, router=self.is_router)
            nic.send(reply, f"{self.name} nd advertisement {ip_text(neighbor.target)} is-at {mac_text(nic.mac)}"
                            f"{self.arp_reply_reason(neighbor.target)}")
        elif neighbor.kind == NEIGHBOR_ADVERTISEMENT and neighbor.link_address is not None:
            target = neighbor.target
            # RFC 4861 7.2.5 (simplified): an NA fills an entry being resolved, and with Override replaces a
            # known one (how an unsolicited NA moves a VIP6); it creates none.
            if target in self._arp_waiting or (neighbor.override and target in self.arp_cache):
                self.learn(target, neighbor.link_address)

    def handle_arp(self, nic: Nic, frame: bytes) -> None:
        parsed = arp.parse_arp(frame)
        if parsed is None:
            self.drop("malformed_arp")
            return
        op, sender_mac, sender_ip, _, target_ip = parsed
        mine = self.answers_arp_for(nic, target_ip)
        # Learn as Linux does: from anything addressed to us, and refresh an entry we
        # already hold (that is how a gratuitous ARP moves a VIP).
        if mine or sender_ip in self.arp_cache:
            self.learn(sender_ip, sender_mac)
        if op == arp.REQUEST and mine and sender_ip != target_ip:
            reply = arp.arp_frame(arp.REPLY, nic.mac, target_ip, sender_mac, sender_ip)
            nic.send(reply, f"{self.name} arp reply {ip_text(target_ip)} is-at {mac_text(nic.mac)}"
                            f"{self.arp_reply_reason(target_ip)}")

    def arp_reply_reason(self, ip: bytes) -> str:
        return ""

    def learn(self, ip: bytes, mac: bytes) -> None:
        cache = self.arp_cache
        if ip not in cache and len(cache) >= ARP_CACHE:
            del cache[next(iter(cache))]
        cache[ip] = mac
        waiting = self._arp_waiting.pop(ip, None)
        for nic, frame, comment in waiting or ():
            nic.send(mac + frame[6:], comment)

    # -- send ------------------------------------------------------------------

    def send_ip(self, nic: Nic, next_hop: bytes, frame: bytes, comment: str) -> None:
        """Send ``frame`` to ``next_hop`` on ``nic``, filling in the destination MAC (ARP if needed)."""
        mac = self.arp_cache.get(next_hop)
        if mac is not None:
            # A caller that already wrote the resolved MAC (a NAT rewrite) saves a copy here.
            nic.send(frame if frame.startswith(mac) else mac + frame[6:], comment)
            return
        waiting = self._arp_waiting.get(next_hop)
        if waiting is not None:
            if len(waiting) >= ARP_QUEUE:
                waiting.pop(0)
                self.drop(_resolution(next_hop, "queue_overflow"))
            waiting.append((nic, frame, comment))
            return
        if len(self._arp_waiting) >= ARP_PENDING:
            self.drop(_resolution(next_hop, "table_full"))
            return
        self._arp_waiting[next_hop] = [(nic, frame, comment)]
        self._ask(nic, next_hop, 1)

    def _ask(self, nic: Nic, next_hop: bytes, attempt: int) -> None:
        if next_hop not in self._arp_waiting or not self.alive:
            return
        if attempt > ARP_RETRIES:
            dropped = self._arp_waiting.pop(next_hop)
            self.drop(_resolution(next_hop, "unresolved"), len(dropped))
            return
        if len(next_hop) == 16:
            request = nd.neighbor_solicitation(nic.mac, nic.ip6, next_hop)
            nic.send(request, f"{self.name} nd solicitation who-has {ip_text(next_hop)} (attempt {attempt})")
        else:
            request = arp.arp_frame(arp.REQUEST, nic.mac, nic.ip, ZERO_MAC, next_hop)
            nic.send(request, f"{self.name} arp who-has {ip_text(next_hop)} (attempt {attempt})")
        self.sim.after(NS_PER_S, self._ask, nic, next_hop, attempt + 1)

    def forget_arp(self) -> None:
        self.arp_cache.clear()
        self._arp_waiting.clear()


def _resolution(next_hop: bytes, what: str) -> str:
    """A drop reason of address resolution: ARP for IPv4 (``arp_unresolved``), Neighbor Discovery for IPv6."""
    return f"{'nd' if len(next_hop) == 16 else 'arp'}_{what}"


class Host(Node):
    """A node with one NIC, ``eth0``, and one address: IPv4 (4 bytes) or IPv6 (16 bytes)."""

    def __init__(self, runtime: Runtime, name: str, ip: bytes, segment: Segment):
        super().__init__(runtime, name)
        self.ip = ip
        if len(ip) == 16:
            self.nic = self.add_nic("eth0", segment, None, ip6=ip)
        else:
            self.nic = self.add_nic("eth0", segment, ip)


__all__ = ["Host", "Node", "mac_for"]
