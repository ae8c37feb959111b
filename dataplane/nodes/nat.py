"""
Source NAT state of one Service Engine: an entry per client connection, its port ring, the close rules.

A ``NatEntry`` ties a client's address and port to the pool server the SE
chose and to the SE's own port on the server network; its two
``NatRewrite`` directions carry the checksum deltas, computed once.  The
``NatTable`` finds entries from either side, tracks FIN and RST from both
ends (``track``), keeps a closed entry ``NAT_LINGER`` for the stray last
ACKs a real close still carries, and expires idle entries.  ``PortRing``
hands out ports in turn from a range; the health monitor uses one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..clock import NS_PER_S, Simulator
from ..wire.frames import NatRewrite
from ..wire.headers import ACK, FIN, PROTO_UDP, RST

NAT_LINGER = 2 * NS_PER_S
#: Idle timeouts of NAT entries (Avi's defaults: UDP flows 30 s, TCP connections 10 min).
UDP_IDLE = 30 * NS_PER_S
TCP_IDLE = 600 * NS_PER_S


class PortRing:
    """Ports handed out in turn from ``low..high``, wrapping around, skipping those still in use."""

    __slots__ = ("low", "high", "_next")

    def __init__(self, low: int, high: int):
        self.low, self.high, self._next = low, high, low

    def take(self, in_use: Callable[[int], bool] | None = None) -> int | None:
        """Return the next port not ``in_use`` (any port if no test is given), or None if all are."""
        for _ in range(self.high - self.low + 1):
            port = self._next
            self._next = self.low if port >= self.high else port + 1
            if in_use is None or not in_use(port):
                return port
        return None


@dataclass(eq=False, slots=True)
class NatEntry:
    client_ip: bytes
    client_port: int
    vip: bytes
    vport: int
    proto: int
    server: Any  # the pool server (``context.PoolServer``)
    nat_port: int
    opened_ns: int
    #: The SE's state for the virtual service this connection is to (``binding.Binding``).
    binding: Any = None
    #: Under the TCP proxy profile: the two connections the SE keeps for this one (``tcp_proxy``).
    proxy: Any = None
    #: The SE's own server-network address this connection leaves from (IPv4 or IPv6, as the client's).
    snat_ip: bytes = b""
    fin_from_client: bool = False
    fin_from_server: bool = False
    #: Next sequence number each side will send, so a drain can reset both ends in-window.
    client_next: int = 0
    server_next: int = 0
    to_server: NatRewrite | None = None
    to_client: NatRewrite | None = None
    closing: bool = False
    #: Virtual time of the last packet either way: idle entries are expired (``NatTable.expire_idle``).
    last_ns: int = 0
    #: The server has sent something: until then a TCP entry is half-open and expires sooner.
    answered: bool = False
    #: The two sides in text, for the frame comments (built once, not per frame).
    client_side: str = ""
    server_side: str = ""
    server_reply: str = ""
    client_reply: str = ""


class NatTable:
    """One SE's NAT entries, by client flow (address, port, VIP, VIP port, protocol) and by (protocol, NAT port)."""

    def __init__(self, clock: Simulator, on_closed: Callable[[NatEntry], None], ports: tuple[int, int],
                 half_open_ns: int):
        self.clock = clock
        self.on_closed = on_closed
        self.by_client: dict[tuple[bytes, int, bytes, int, int], NatEntry] = {}
        self.by_port: dict[tuple[int, int], NatEntry] = {}
        self.ports = PortRing(*ports)
        self.half_open_ns = half_open_ns
        self._in_use: dict[int, int] = {}  # protocol -> ports taken, so a full range is known without a scan

    def __len__(self) -> int:
        return len(self.by_client)

    def get(self, client_ip: bytes, client_port: int, vip: bytes, vport: int, proto: int) -> NatEntry | None:
        return self.by_client.get((client_ip, client_port, vip, vport, proto))

    def for_port(self, proto: int, nat_port: int) -> NatEntry | None:
        return self.by_port.get((proto, nat_port))

    def free_port(self, proto: int) -> int | None:
        """A port of this SE's range free for ``proto``, or None when every one is taken."""
        if self._in_use.get(proto, 0) >= self.ports.high - self.ports.low + 1:
            return None
        return self.ports.take(lambda candidate: (proto, candidate) in self.by_port)

    def add(self, nat: NatEntry) -> None:
        self.by_client[(nat.client_ip, nat.client_port, nat.vip, nat.vport, nat.proto)] = nat
        self.by_port[(nat.proto, nat.nat_port)] = nat
        self._in_use[nat.proto] = self._in_use.get(nat.proto, 0) + 1

    def track(self, nat: NatEntry, flags: int, from_client: bool) -> None:
        """Follow a connection's close from either end: a RST ends it, a FIN exchange ends it after
        the ACK that completes it (then the entry lingers for stray last ACKs)."""
        if flags & RST:
            self.close(nat)
        elif flags & FIN:
            if from_client:
                nat.fin_from_client = True
            else:
                nat.fin_from_server = True
        elif nat.fin_from_client and nat.fin_from_server and flags & ACK and not nat.closing:
            self.close(nat, linger=True)

    def close(self, nat: NatEntry, linger: bool = False) -> None:
        """End a connection; after a FIN exchange keep its entry ``NAT_LINGER`` for stray last ACKs.

        Like TIME_WAIT: a real close may still carry a final ACK either way after
        the ACK that completes it, and that must not meet "no connection state".
        """
        if not nat.closing:
            nat.closing = True
            self.on_closed(nat)
        if linger:
            self.clock.after(NAT_LINGER, self._forget, nat)  # a timer, not a frame in flight
        else:
            self._forget(nat)

    def open_entries(self) -> list[NatEntry]:
        return [nat for nat in self.by_client.values() if not nat.closing]

    def expire_idle(self) -> int:
        """Forget connections idle longer than their protocol's timeout; return how many."""
        now = self.clock.now
        idle = [nat for nat in self.by_client.values() if now - nat.last_ns > self._timeout(nat)]
        for nat in idle:
            self.close(nat)
        return len(idle)

    def _timeout(self, nat: NatEntry) -> int:
        if nat.proto == PROTO_UDP:
            return UDP_IDLE
        return TCP_IDLE if nat.answered else self.half_open_ns

    def clear(self) -> None:
        self.by_client.clear()
        self.by_port.clear()
        self._in_use.clear()

    def _forget(self, nat: NatEntry) -> None:
        key = (nat.client_ip, nat.client_port, nat.vip, nat.vport, nat.proto)
        if self.by_client.get(key) is nat:
            del self.by_client[key]
            del self.by_port[(nat.proto, nat.nat_port)]
            self._in_use[nat.proto] -= 1
