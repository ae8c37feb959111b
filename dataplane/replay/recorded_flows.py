"""
The recorded flows of a capture while their input lasts: who opened each, which are replayed, when each ends.

``RecordedFlows`` splits every recorded packet into a flow (by its
4-tuple and protocol, per replay loop) and a side the way tcpprep's
automatic modes do: the sender of the first SYN, or of the first UDP
datagram, is the client.  A new flow is replayed if a virtual service takes
it (``services.Services.assign``, once per flow: its VS, VIP and port) and
its client address can sit behind the router; otherwise it is remembered as
a ``SkippedFlow`` so its later packets are counted under the same reason.
IPv6 flows (``lookup6``) follow the same rules, with ``ipv6_no_vip6`` for a
flow a VS would take if it had a ``vip6`` (and ``ipv4_no_vip`` for an IPv4
flow to an IPv6-only VS).

It keeps a flow only while its input lasts: a flow leaves the tables when
it closes in the recording (both FINs acknowledged, at once; both FINs or a
RST, after ``CLOSE_LINGER`` of recorded time for the last ACKs) or idles for
``IDLE_TIMEOUT``; skipped flows are forgotten oldest first beyond
``MAX_IGNORED``.  So memory follows the live flows, not the capture.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any, Protocol

import netaddr

from ..clock import NS_PER_S
from ..wire import frames
from ..wire.frames import ACK, FIN, RST, SYN
from ..wire.headers import IPV4_DST, IPV4_PROTO, IPV4_SRC, TCP_FLAGS, TCP_SEQ
from .flow import ReplayFlow, SkippedFlow
from .input import client_address_problem
from .input6 import client_address_problem6
from .services import Services, Target
from .tcp_rewrite import tcp_offset

IDLE_TIMEOUT = 300 * NS_PER_S         # recorded time without a packet before an open flow is forgotten
CLOSE_LINGER = 2 * NS_PER_S           # recorded time a closed flow keeps collecting its last ACKs
MAX_IGNORED = 100_000
_PORTS = struct.Struct("!HH")
_SEQ_ACK = struct.Struct("!II")


class FlowOwner(Protocol):
    """What the flow tables ask of the replayer."""

    def skip(self, row: Any, reason: str) -> None: ...

    def open_flow(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int, client_ip: bytes,
                  loop: int, row: Any, target: Target) -> ReplayFlow: ...

    def input_finished(self, flow: ReplayFlow) -> None: ...


class RecordedFlows:
    """Recorded flows by 4-tuple: replayed (``ReplayFlow``) or skipped (``SkippedFlow``)."""

    def __init__(self, owner: FlowOwner, services: Services, frontend: netaddr.IPNetwork, reserved: set[bytes],
                 frontend6: netaddr.IPNetwork | None = None):
        self.owner = owner
        self.services = services
        self.frontend = frontend
        self.frontend6 = frontend6
        self.reserved = reserved
        self.open: OrderedDict = OrderedDict()     # key -> ReplayFlow or SkippedFlow, least recent first
        self.closing: OrderedDict = OrderedDict()  # key -> ReplayFlow closed in the recording
        #: No entry can expire before this recorded time: the oldest entries' deadlines when last looked
        #: at (entries only ever join at the recent end, so the bound holds until they are looked at again).
        self.next_expiry = 0

    def lookup(self, packet: bytes, loop: int, rec: int, row: Any):
        """The replayed flow ``packet`` belongs to, as (flow, from_client, flags, key), or None when the
        packet is skipped (the owner has been told why)."""
        proto = packet[IPV4_PROTO]
        ihl = (packet[0] & 0x0F) * 4
        src, dst = packet[IPV4_SRC], packet[IPV4_DST]
        sport, dport = _PORTS.unpack_from(packet, ihl)
        flags = packet[ihl + TCP_FLAGS] if proto == frames.PROTO_TCP else 0
        return self.find(proto, src, sport, dst, dport, flags, loop, rec, row)

    def lookup6(self, packet: bytes, l4: int, proto: int, loop: int, rec: int, row: Any):
        """``lookup`` for an IPv6 packet whose TCP/UDP header is at ``l4`` (``input6.ipv6_packet``)."""
        sport, dport = _PORTS.unpack_from(packet, l4)
        flags = packet[l4 + TCP_FLAGS] if proto == frames.PROTO_TCP else 0
        return self.find(proto, packet[8:24], sport, packet[24:40], dport, flags, loop, rec, row)

    def find(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int, flags: int, loop: int, rec: int,
             row: Any):
        """The replayed flow of a packet of either family, as ``lookup`` returns it."""
        key = (proto, src, sport, dst, dport, loop) if (src, sport) <= (dst, dport) else \
            (proto, dst, dport, src, sport, loop)
        table = self.open
        entry = table.get(key)
        if entry is None:
            entry = self.closing.get(key)
            table = self.closing
        opening = proto != frames.PROTO_TCP or flags & (SYN | ACK | RST) == SYN
        if entry is not None and opening and proto == frames.PROTO_TCP and (
                isinstance(entry, SkippedFlow) or entry.close.closed):
            del table[key]   # a new connection on a recorded 4-tuple that was closed or skipped
            if isinstance(entry, ReplayFlow):
                self.owner.input_finished(entry)
            entry = None
        if entry is None:
            entry = self._classify(key, proto, flags, src, sport, dst, dport, loop, rec, row)
            if entry is None:
                return None
        elif isinstance(entry, SkippedFlow):
            entry.last_input = rec
            table.move_to_end(key)
            self.owner.skip(row, entry.reason)
            return None
        else:
            table.move_to_end(key)
        return entry, src == entry.rec_client[0] and sport == entry.rec_client[1], flags, key

    def _classify(self, key, proto, flags, src, sport, dst, dport, loop, rec, row) -> ReplayFlow | None:
        services = self.services
        target = None
        if proto == frames.PROTO_TCP and flags & (SYN | ACK | RST) != SYN:
            reason = "mid_flow" if services.could_be_server_port(dport) or services.could_be_server_port(sport) \
                else "not_selected"
        else:
            target = services.assign(proto, src, sport, dst, dport)
            reason = target if isinstance(target, str) else None
        client_ip = self._client_address(src, loop) if reason is None else None
        if reason is None and client_ip is None:
            reason = "client_address_unusable"
        if reason is not None:
            self.owner.skip(row, reason)
            self.open[key] = SkippedFlow(reason, rec)
            if len(self.open) > MAX_IGNORED:
                self._evict_one()
            return None
        flow = self.owner.open_flow(proto, src, sport, dst, dport, client_ip, loop, row, target)
        self.open[key] = flow
        return flow

    def _client_address(self, ip: bytes, loop: int) -> bytes | None:
        if loop:  # later loops need distinct flows (tcpreplay --unique-ip): move the client's first octet
            ip = bytes(((ip[0] + loop) & 0xFF,)) + ip[1:]
        if len(ip) == 16:
            return None if client_address_problem6(ip, self.frontend6, self.reserved) else ip
        if client_address_problem(ip, self.frontend, self.reserved):
            return None
        return ip

    def _evict_one(self) -> None:
        for key, entry in self.open.items():
            if isinstance(entry, SkippedFlow):
                del self.open[key]
                return

    # -- how a flow closes in the recording ---------------------------------------------

    def closing_flags(self, key, flow: ReplayFlow, from_client: bool, flags: int) -> None:
        """A FIN or RST of ``flow`` was read: a flow closed both ways moves to the closing table."""
        close = flow.close
        if not flags & FIN:
            close.reset = True
        elif from_client:
            close.client_fin = True
        else:
            close.server_fin = True
        if close.closed and self.open.get(key) is flow:
            del self.open[key]
            self.closing[key] = flow

    def track_close(self, key, flow: ReplayFlow, from_client: bool, packet: bytes, flags: int) -> None:
        """Forget a flow's input as soon as both FINs are acknowledged in the recording (its last
        packet), rather than after CLOSE_LINGER: short connections then hold no state at all."""
        ihl = tcp_offset(packet, 0)
        seq, ack = _SEQ_ACK.unpack_from(packet, ihl + TCP_SEQ)
        close = flow.close
        if flags & FIN:
            end = (seq + len(packet) - ihl - (packet[ihl + 12] >> 4) * 4 + 1) & 0xFFFFFFFF
            if from_client:
                close.client_fin_end = end
            else:
                close.server_fin_end = end
        other = close.server_fin_end if from_client else close.client_fin_end
        if flags & ACK and other is not None and (ack - other) & 0xFFFFFFFF < 0x80000000:
            if from_client:
                close.client_acked_server_fin = True
            else:
                close.server_acked_client_fin = True
        if close.finished and self.closing.pop(key, None) is flow:
            self.owner.input_finished(flow)

    # -- forgetting ----------------------------------------------------------------------

    def expire(self, rec: int) -> None:
        """Forget closed flows past their linger and idle flows past the idle timeout (recorded time);
        callers may skip the call while ``rec <= next_expiry``."""
        deadline = rec + CLOSE_LINGER
        for table, linger in ((self.closing, CLOSE_LINGER), (self.open, IDLE_TIMEOUT)):
            while table:
                key, entry = next(iter(table.items()))
                if entry.last_input + linger >= rec:
                    deadline = min(deadline, entry.last_input + linger)
                    break
                del table[key]
                if isinstance(entry, ReplayFlow):
                    self.owner.input_finished(entry)
        self.next_expiry = deadline

    def clear(self) -> None:
        """The input of this loop is over: every flow's input is finished."""
        self.next_expiry = 0
        for table in (self.closing, self.open):
            for entry in table.values():
                if isinstance(entry, ReplayFlow):
                    self.owner.input_finished(entry)
            table.clear()
