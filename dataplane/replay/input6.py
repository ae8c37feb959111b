"""
Replay input, IPv6: the IPv6 packet inside a frame, its extension headers, fragments, and its flow.

The replayer branches on the IP version once, after the link layer
(``input``) has been stripped: an IPv4 packet stays on its own (hot) path,
an IPv6 one comes here (``Input6.handle``).  This module owns:

1. *What IPv6 packet is this?*  ``ipv6_packet`` cuts the packet to its
   payload length (link-layer padding goes), fills a snap-length cut with
   zeros (its headers must be whole), and walks the extension headers by
   ``wire.ipv6.FlowView6``'s rules: Hop-by-Hop, Routing and Destination
   Options are walked, a Fragment header makes the packet a fragment, a
   routing header with segments left (``ipv6_routing_header``), a jumbogram
   (``ipv6_jumbogram``) and an upper layer other than TCP or UDP
   (``ipv6_other_protocol``: ICMPv6, ESP, ...) are skipped with their own
   reasons.  A zero UDP checksum is not a parse error here: it is an
   offloaded checksum that ``repair`` fixes (over IPv6 it is mandatory).
2. *Fragments* go to the same ``fragments.Reassembler`` as IPv4 ones (same
   bounds, overlap policy and reasons), and the whole datagram is parsed again.
3. *Its flow*: ``RecordedFlows.lookup6``, then the replayer's own ``_feed``.
   A flow the VS would take when it has no ``vip6`` is skipped
   (``ipv6_no_vip6``; ``recorded_flows``).

``transport6`` finds the TCP/UDP header of an IPv6 packet this module has
already accepted (``repair`` and ``recorded_flows`` use it).
"""

from __future__ import annotations

import struct
from typing import Any

from ..wire.frames import Malformed
from ..wire.headers import EXT_DESTINATION, EXT_FRAGMENT, EXT_HOP_BY_HOP, EXT_ROUTING, PROTO_TCP, PROTO_UDP
from ..wire.ipv6 import FlowView6, NatRewrite6

_U16 = struct.Struct("!H")
#: The Ethernet header ``FlowView6`` parses an IPv6 packet behind (its offsets are frame offsets).
_ETH6 = bytes(12) + b"\x86\xdd"
_WALKED = (EXT_HOP_BY_HOP, EXT_ROUTING, EXT_DESTINATION, EXT_FRAGMENT)

#: Why an IPv6 packet was not replayed (keys of ``skipped``), with the text the CLI prints.
IPV6_REASONS = {
    "ipv6_other_protocol": "IPv6 but neither TCP nor UDP (ICMPv6, ...)",
    "ipv6_jumbogram": "IPv6 jumbogram (payload length 0 with a Hop-by-Hop header, RFC 2675)",
    "ipv6_routing_header": "IPv6 routing header with segments left (not for the VIP)",
    "ipv6_no_vip6": "IPv6 flow, but the virtual service has no vip6",
}
#: FlowView6's reasons that keep their own key; every other one is "malformed".
_OWN_REASONS = {"ipv6_jumbogram": "ipv6_jumbogram", "ipv6_routing_header": "ipv6_routing_header"}

#: (packet, skip reason, bytes filled, transport offset, upper-layer protocol, Fragment header offset or 0)
Packet6 = tuple[bytes | None, str | None, int, int, int, int]


def ipv6_packet(raw: bytes, cut: bool, skip_cut: bool = False) -> Packet6:
    """Check the IPv6 packet at the start of ``raw``: (packet, None, filled, l4, proto, frag_at) or
    (None, reason, 0, 0, 0, 0).  Offsets are from the IPv6 header; ``frag_at`` is non-zero for a fragment
    (its ``l4`` is where the fragment's data starts)."""
    size = len(raw)
    if size < 40:
        return None, ("snaplen_headers" if cut else "malformed"), 0, 0, 0, 0
    plen = _U16.unpack_from(raw, 4)[0]
    if plen == 0 and raw[6] == EXT_HOP_BY_HOP:
        return None, "ipv6_jumbogram", 0, 0, 0, 0
    total = 40 + plen
    filled = 0
    if size < total:
        if not cut:
            return None, "malformed", 0, 0, 0, 0   # a payload length past the frame that the capture did not cut
        if skip_cut:
            return None, "snaplen_truncated", 0, 0, 0, 0
        filled = total - size
        packet = raw + bytes(filled)
    else:
        packet = raw if size == total else raw[:total]
    try:
        view = FlowView6(_ETH6 + packet)
        l4, proto, frag_at = view.l4 - 14, view.proto, (view.frag_at - 14 if view.fragment else 0)
    except Malformed as defect:
        if defect.reason == "ipv6_routing_header":
            return None, "ipv6_routing_header", 0, 0, 0, 0
        if filled:
            return None, "snaplen_headers", 0, 0, 0, 0
        if defect.reason != "udp_zero_checksum":   # fixed later, as any offloaded checksum
            return None, _OWN_REASONS.get(defect.reason, "malformed"), 0, 0, 0, 0
        l4, proto = transport6(packet)
        frag_at = 0
    if proto not in (PROTO_TCP, PROTO_UDP):
        return None, "ipv6_other_protocol", 0, 0, 0, 0
    if filled:
        headers = frag_at + 8 if frag_at else l4 + (8 if proto == PROTO_UDP else (packet[l4 + 12] >> 4) * 4)
        if headers > size:
            return None, "snaplen_headers", 0, 0, 0, 0
    return packet, None, filled, l4, proto, frag_at


def transport6(packet: bytes) -> tuple[int, int]:
    """(offset of the upper-layer header, its protocol) of an IPv6 packet ``ipv6_packet`` accepted."""
    header, at = packet[6], 40
    while header in _WALKED:
        following = packet[at]
        at += 8 if header == EXT_FRAGMENT else (packet[at + 1] + 1) * 8
        header = following
    return at, header


def tcp_flags6(packet: bytes, base: int = 0) -> int:
    """The TCP flags of the IPv6 TCP segment at ``packet[base:]`` (0 for UDP)."""
    l4, proto = transport6(packet[base:])
    return packet[base + l4 + 13] if proto == PROTO_TCP else 0


def client_address_problem6(ip: bytes, frontend6: Any, reserved: set[bytes]) -> bool:
    """True for an IPv6 client address the emulated router cannot route to the clients side: unspecified,
    loopback, IPv4-mapped or -compatible, link-local, multicast, on the frontend network or reserved."""
    value = int.from_bytes(ip, "big")
    return (value >> 32 in (0, 0xFFFF) or ip[0] == 0xFF or (ip[0] == 0xFE and ip[1] & 0xC0 == 0x80)
            or ip in reserved or (frontend6 is not None and frontend6.first <= value <= frontend6.last))


class ToVip6(NatRewrite6):
    """A recorded IPv6 client packet, behind the replay clients' (IPv4) access-link header, NATed to the VIP6."""

    __slots__ = ()

    def apply(self, frame: bytes, eth_dst: bytes, eth_src: bytes) -> bytes:
        return super().apply(frame[:12] + b"\x86\xdd" + frame[14:], eth_dst, eth_src)


class Input6:
    """The replayer's IPv6 branch: from a recorded IPv6 packet to its flow's end (or its skip reason)."""

    def __init__(self, replayer: Any):
        self.replayer = replayer

    def handle(self, loop: int, record: Any, row: Any, raw: bytes) -> None:
        r = self.replayer
        packet, reason, row.filled, l4, proto, frag_at = ipv6_packet(raw, record.orig_len > len(record.data),
                                                                     r.options.skip_truncated_frames)
        if packet is None:
            r.skip(row, reason)
            return
        rec = self._recorded_time(loop, record.time_ns)
        parts = ()
        if frag_at:
            packet, parts = r.took_fragment(r.reassembler.add6(packet, frag_at, rec, row, loop), row)
            if packet is None:
                return
            packet, reason, _, l4, proto, frag_at = ipv6_packet(packet, False)
            if packet is None or frag_at:
                r.skip(row, reason or "malformed")
                return
        found = r.flows.lookup6(packet, l4, proto, loop, rec, row)
        if found is not None:
            flow, from_client, flags, key = found
            for part in parts:
                part.flow = flow
            r._feed(flow, key, packet, flags, from_client, row, rec)

    def _recorded_time(self, loop: int, time_ns: int) -> int:
        """The frame's recorded time (never backwards within a loop); flows and fragments expire by it, the
        steps ``Replayer._handle`` inlines for IPv4."""
        r = self.replayer
        rec = time_ns if loop != r._rec_loop else max(time_ns, r._last_rec)
        r._last_rec, r._rec_loop = rec, loop
        if rec > r.flows.next_expiry:
            r.flows.expire(rec)
        if r.reassembler.queues:
            for outcome in r.reassembler.expire(rec):
                r._discard_fragments(outcome.tokens, outcome.reason)
        return rec
