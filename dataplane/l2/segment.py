"""
Layer 2: NICs and segments (one learning switch per segment).

A ``Segment`` floods broadcast and unknown unicast, learns source MACs per
port, delays delivery by the link latency and hands each frame that crosses
it to its tap (the capture) exactly once.  With port security on (Neutron),
a frame whose source IP (IPv4 or IPv6 source, or ARP sender address) is not allowed
on the sending port is dropped and counted by reason, as Neutron's
anti-spoofing rules do.

A segment carries Ethernet frames of 14 to ``MAX_FRAME`` bytes (a jumbo MTU,
so that the SE-to-SE tunnel's 50 bytes of VXLAN fit around a full-size
frame); anything else is dropped at the port, captured with the reason.

Like a hypervisor's virtual switch, it knows the MAC of every NIC attached to
it (static entries), so a frame that forges a NIC's source MAC cannot draw
that NIC's traffic to another port; it learns only other addresses (a test
port's), at most ``MAC_TABLE_SIZE`` of them, and like a switch whose table is
full it floods frames for addresses it could not learn.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Protocol

from ..clock import Simulator
from ..wire.frames import ethertype, ip_text
from ..wire.headers import (ARP_SENDER_IP, ETH_DST, ETH_LEN, ETH_SRC, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                             ETHERTYPE_IPV6, IP_SRC, IPV6_SRC)

MAX_FRAME = 9014  # a 9000-byte MTU plus the Ethernet header
MAC_TABLE_SIZE = 8192


class Receiver(Protocol):
    name: str

    def receive(self, nic: "Nic", frame: bytes) -> None: ...


#: tap(capture interface or -1 for "not captured", virtual time, frame, comment)
Tap = Callable[[int, int, bytes, str], None]


class Nic:
    """One network interface: a MAC, an IPv4 address, an IPv6 address (either may be None), a port on one segment."""

    __slots__ = ("node", "name", "mac", "ip", "ip6", "groups", "segment", "allowed_ips", "up", "down_reason",
                 "congested")

    def __init__(self, node: Receiver, name: str, mac: bytes, ip: bytes | None, segment: "Segment",
                 static: bool = True, ip6: bytes | None = None):
        self.node = node
        self.name = name
        self.mac = mac
        self.ip = ip
        #: The NIC's IPv6 address (dual stack, or IPv6 only when ``ip`` is None).
        self.ip6 = ip6
        #: IPv6 multicast MACs this NIC receives besides its own and broadcast (its solicited-node groups).
        self.groups: set[bytes] = set()
        self.segment = segment
        #: Source IPs port security lets out of this port; None means any (a router port).
        self.allowed_ips: set[bytes] | None = {a for a in (ip, ip6) if a is not None}
        self.up = True
        #: Why the NIC is down ("se-2 failed, not yet detected"): frames sent to it are captured with it.
        self.down_reason = ""
        #: Set by a node whose input queue is full: the segment then asks ``node.admit(frame)`` before delivering.
        self.congested = False
        segment.attach(self, static=static)

    @property
    def label(self) -> str:
        return f"{self.node.name}.{self.name}"

    def send(self, frame: bytes, comment: str, captured: bool = True) -> None:
        if self.up:
            self.segment.transmit(self, frame, comment, captured)


class Segment:
    """A virtual L2 segment: a learning switch with a tap."""

    def __init__(self, sim: Simulator, name: str, index: int, latency_ns: int,
                 port_security: bool = False, tap: Tap | None = None):
        self.sim = sim
        self.name = name
        self.index = index
        self.latency_ns = latency_ns
        self.port_security = port_security
        self.tap = tap
        self.ports: list[Nic] = []
        self.mac_table: dict[bytes, Nic] = {}
        self.static: set[bytes] = set()
        self.frames = 0
        self.drops: Counter[str] = Counter()

    def attach(self, nic: Nic, static: bool = True) -> None:
        self.ports.append(nic)
        if static:
            self.static.add(nic.mac)
            self.mac_table[nic.mac] = nic

    def detach(self, nic: Nic) -> None:
        self.ports.remove(nic)
        self.static.discard(nic.mac)
        for mac in [m for m, port in self.mac_table.items() if port is nic]:
            del self.mac_table[mac]

    def transmit(self, sender: Nic, frame: bytes, comment: str, captured: bool = True) -> None:
        """Put ``frame`` on the segment; ``captured=False`` keeps it out of the capture (observers still see it)."""
        self.frames += 1  # every frame put on the wire is captured, a dropped one too
        if not ETH_LEN <= len(frame) <= MAX_FRAME:
            self._drop("frame_size", frame, f"{comment} [DROPPED: a {len(frame)}-byte frame does not fit "
                                            f"Ethernet ({ETH_LEN}..{MAX_FRAME} bytes)]")
            return
        if self.port_security and sender.allowed_ips is not None:
            spoofed = self._spoofed_source(sender, frame)
            if spoofed is not None:
                self._drop("port_security", frame, f"{comment} [DROPPED by port security: source {spoofed} "
                                                   f"not allowed on port {sender.label}]")
                return
        table = self.mac_table
        src = frame[ETH_SRC]
        if table.get(src) is not sender and src not in self.static and (len(table) < MAC_TABLE_SIZE or src in table):
            table[src] = sender
        dst = frame[ETH_DST]
        port = table.get(dst)
        index = self.index if captured else -1
        if port is not None and not dst[0] & 1:
            if port is not sender and not port.up:
                self._drop("lost_to_failed_node", frame, f"{comment} [LOST: {port.down_reason or 'receiver down'}]",
                           index)
                return
            if port.congested:
                refusal = port.node.admit(frame)
                if refusal is not None:
                    self._drop(f"overload_{port.node.name}", frame, f"{comment} [DROPPED: {refusal}]", index)
                    return
            if self.tap:
                self.tap(index, self.sim.now, frame, comment)
            if port is not sender:
                self.sim.post(self.latency_ns, port.node.receive, (port, frame))
            return
        if self.tap:
            self.tap(index, self.sim.now, frame, comment)
        post = self.sim.post
        latency = self.latency_ns
        for port in self.ports:
            if port is not sender and port.up:
                post(latency, port.node.receive, (port, frame))

    def _drop(self, reason: str, frame: bytes, comment: str, index: int | None = None) -> None:
        self.drops[reason] += 1
        if self.tap:
            self.tap(self.index if index is None else index, self.sim.now, frame, comment)

    @staticmethod
    def _spoofed_source(sender: Nic, frame: bytes) -> str | None:
        kind = ethertype(frame)
        if kind == ETHERTYPE_IPV4:
            source = frame[IP_SRC]
        elif kind == ETHERTYPE_IPV6:
            source = frame[IPV6_SRC]
            if len(source) != 16:
                source = b""
        elif kind == ETHERTYPE_ARP:
            source = frame[ARP_SENDER_IP]
        else:
            return None
        if source in sender.allowed_ips:
            return None
        return ip_text(source) if len(source) in (4, 16) else "(none: the frame is too short to carry one)"
