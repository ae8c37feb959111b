"""
Nodes: anything with NICs, an ARP cache and an IPv4 send path.

``Node`` owns real ARP resolution on a segment: a frame for a next hop whose
MAC is unknown waits while an ARP request is out, is sent when the reply
arrives, and is dropped (and counted) after three unanswered requests one
second apart.  Subclasses decide what to do with IPv4 frames addressed to
them (``handle_ip``) and which addresses they answer ARP for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import frames
from .l2 import Nic, Segment
from .sim import NS_PER_S

if TYPE_CHECKING:
    from .network import Network

ARP_RETRIES = 3


def mac_for(ip: bytes, nic_index: int = 0) -> bytes:
    """Return a locally administered MAC that spells the NIC's IPv4 address (readable in Wireshark)."""
    return bytes((0x02, nic_index)) + ip


class Node:
    """A host on one or more segments."""

    kind = "host"

    def __init__(self, net: "Network", name: str):
        self.net = net
        self.sim = net.sim
        self.name = name
        self.nics: dict[str, Nic] = {}
        self.arp_cache: dict[bytes, bytes] = {}
        self._arp_waiting: dict[bytes, list[tuple[Nic, bytes, str]]] = {}
        self.ip_ident = 0
        self.alive = True

    # -- wiring ----------------------------------------------------------------

    def add_nic(self, name: str, segment: Segment, ip: bytes, mac: bytes | None = None) -> Nic:
        nic = Nic(self, name, mac or mac_for(ip), ip, segment)
        self.nics[name] = nic
        return nic

    def next_ident(self) -> int:
        self.ip_ident = (self.ip_ident + 1) & 0xFFFF
        return self.ip_ident

    # -- receive ---------------------------------------------------------------

    def receive(self, nic: Nic, frame: bytes) -> None:
        if not self.alive:
            return
        if not frame.startswith(nic.mac) and not frame.startswith(frames.BROADCAST):
            return
        kind = frame[12:14]
        if kind == b"\x08\x00":
            self.handle_ip(nic, frame)
        elif kind == b"\x08\x06":
            self.handle_arp(nic, frame)

    def handle_ip(self, nic: Nic, frame: bytes) -> None:
        self.net.count_drop("no_listener")

    def answers_arp_for(self, nic: Nic, ip: bytes) -> bool:
        return ip == nic.ip

    def handle_arp(self, nic: Nic, frame: bytes) -> None:
        parsed = frames.parse_arp(frame)
        if parsed is None:
            return
        op, sender_mac, sender_ip, _, target_ip = parsed
        mine = self.answers_arp_for(nic, target_ip)
        # Learn as Linux does: from anything addressed to us, and refresh an entry we
        # already hold (that is how a gratuitous ARP moves a VIP).
        if mine or sender_ip in self.arp_cache:
            self.learn(sender_ip, sender_mac)
        if op == 1 and mine and sender_ip != target_ip:
            reply = frames.arp_frame(2, nic.mac, target_ip, sender_mac, sender_ip)
            nic.send(reply, f"{self.name} arp reply {frames.ip_text(target_ip)} is-at {frames.mac_text(nic.mac)}"
                            f"{self.arp_reply_reason(target_ip)}")

    def arp_reply_reason(self, ip: bytes) -> str:
        return ""

    def learn(self, ip: bytes, mac: bytes) -> None:
        self.arp_cache[ip] = mac
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
            waiting.append((nic, frame, comment))
            return
        self._arp_waiting[next_hop] = [(nic, frame, comment)]
        self._ask(nic, next_hop, 1)

    def _ask(self, nic: Nic, next_hop: bytes, attempt: int) -> None:
        if next_hop not in self._arp_waiting or not self.alive:
            return
        if attempt > ARP_RETRIES:
            dropped = self._arp_waiting.pop(next_hop)
            self.net.count_drop("arp_unresolved", len(dropped))
            return
        request = frames.arp_frame(1, nic.mac, nic.ip, b"\x00" * 6, next_hop)
        nic.send(request, f"{self.name} arp who-has {frames.ip_text(next_hop)} (attempt {attempt})")
        self.sim.after(NS_PER_S, self._ask, nic, next_hop, attempt + 1)

    def forget_arp(self) -> None:
        self.arp_cache.clear()
        self._arp_waiting.clear()
