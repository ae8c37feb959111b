"""
Replay into the TCP proxy's two live connections, as tcpliveplay replays a client against a live server.

Under ``network_profile = "tcp-proxy"`` the owner SE answers the recorded
client's SYN with its own ISN and opens its own connection, with another
ISN, to the pool server.  ``ProxiedFlow`` plays one recorded TCP flow into
those two live connections (README, "Replay under the TCP proxy"; the why in
docs/design.md, "Replay into a `tcp-proxy` VS"):

- Each recorded end keeps its own sequence numbers (the client's SYN and the
  server's SYN-ACK go out as recorded).  Its acknowledgement numbers are
  translated from the recorded peer's ISN to the SE's ISN on that end's live
  connection.  The proxy relays the bytes it receives, so both live byte
  streams are the recorded ones and a recorded ACK of byte N acknowledges live
  byte N.
- Pacing follows the live connections: a recorded packet leaves its end no
  earlier than its recorded time, once every byte it acknowledges has arrived
  there from the SE, and once its data fits the window the SE last advertised.
  When it has arrived is said in ``ProxiedFlow``'s docstring.  When a
  recorded packet waits for bytes the SE does not send (its congestion
  window or the recorded window is smaller than the recorded sender's was,
  or the recording acknowledged a whole GRO super-segment at once), the end
  adds an ACK of what did arrive after a grace period, as a live stack would
  (``acks_added``, each named in its frame's comment); a recording without
  the server's SYN-ACK gets one (``syn_acks_added``).
- What the live connections cannot replay faithfully is counted
  (``Replayer.proxy_counts``) and said in the summary.  Recorded
  retransmissions and duplicate ACKs are withheld: nothing is lost here, so
  they would be spurious and three duplicates would trigger a fast retransmit
  (unless a segment of that end went with a kept wrong checksum, which the SE
  drops: then the recorded retransmissions go).  Keep-alives go as recorded.
  The SE negotiates no window scaling, SACK or timestamps (``TcpEndpoint``),
  so windows recorded under scaling are scaled to bytes and capped at 65535,
  SACK blocks and timestamps become NOPs, and the server's SYN-ACK drops the
  options the SE's SYN did not offer.

Sequence positions are counted from each ISN modulo 2**32: a flow carrying
more than 4 GiB in one direction is not followed past that.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ..clock import NS_PER_S
from ..wire import dual
from ..wire.checksum import apply_delta, bad_checksum, checksum_delta
from ..wire.headers import ACK, ETH_LEN, FIN, RST, SYN
from .flow import ReplayFlow
from .input6 import transport6

SEQ_MASK = 0xFFFFFFFF
MAX_WINDOW = 0xFFFF        # no window scaling live: a window field holds no more
GRACE_FLOOR = NS_PER_S // 100   # an ACK waits at least 10 ms (plus two live RTTs) for bytes the SE holds back
NOP = 1
_ACK_FIELD = struct.Struct("!I")
_SEQ_ACK = struct.Struct("!II")
_U16 = struct.Struct("!H")
#: Options the SE's TCP endpoint never negotiates, by kind: in a SYN-ACK answering its SYN, and later.
_NOT_OFFERED = {3: "window_scale", 4: "sack_permitted", 8: "timestamps"}
_NOT_AGREED = {5: "sack_blocks", 8: "timestamps"}
#: Why a recorded packet is withheld, in words (account reasons, ``report.NOT_SENT``).
WITHHELD = {
    "recorded_retransmission": "a recorded retransmission: the live connection lost nothing, it would be spurious",
    "recorded_duplicate_ack": "a recorded duplicate ACK: the live connection lost nothing, it would be spurious",
}
#: Every reason a packet of a proxied flow is not sent, in words.
NOT_SENT_PROXY = {
    **WITHHELD,
    "proxy_never_connected": "the SE never opened its connection to the server (it does once the client's "
                             "handshake completes): the recorded server packets had nothing to answer",
}


@dataclass(slots=True)
class LiveEnd:
    """One recorded end (client or server) and the SE's live connection it faces."""

    isn: int | None = None        # this end's recorded ISN: its sequence numbers go out as recorded
    peer_isn: int | None = None   # the recorded peer's ISN, which this end's recorded ACKs count from
    live_isn: int | None = None   # the SE's ISN on this live connection, which the ACKs sent count from
    scale: int | None = None      # the window scale this end's SYN offered in the recording
    shift: int = 0                # the recorded scale of this end's windows (both SYNs offered one)
    heard: int = 0                # the SE's sequence space arrived here in order (its SYN counts one)
    acked: int = 0                # this end's sequence space the SE acknowledged
    window: int = 0               # the SE's last advertised window
    read_end: int = 0             # the furthest sequence position of this end read from the recording
    last: tuple | None = None     # (ack, window) of this end's previous recorded packet
    ends: deque = field(default_factory=deque)   # positions sent that the SE has not acknowledged yet
    last_arrival: int = 0
    first_sent_at: int | None = None
    rtt: int = 0
    grace_armed: bool = False
    synced: bool = False          # this end's SYN (or SYN-ACK) was read from the recording
    damaged: bool = False         # a segment of this end went with a kept wrong checksum (the SE dropped it)
    sent_end: int = 0             # the furthest sequence position this end has sent
    sent_window: int = 0          # the window field this end last sent
    acked_sent: int = 0           # the furthest position of the SE's stream this end has acknowledged
    noted: bool = False


def tcp_offset(packet: bytes, base: int) -> int:
    """The offset of the TCP header in the IP packet at ``packet[base:]``, of either family."""
    if packet[base] >> 4 == 4:
        return base + (packet[base] & 0x0F) * 4
    return base + transport6(packet[base:])[0]


def segment_of(packet: bytes, base: int) -> tuple[int, int, int, int, int, int]:
    """(TCP offset, seq, ack, flags, window, payload length) of the TCP segment in the IP packet at ``base``."""
    l4 = tcp_offset(packet, base)
    if packet[base] >> 4 == 4:
        end = base + _U16.unpack_from(packet, base + 2)[0]
    else:
        end = base + 40 + _U16.unpack_from(packet, base + 4)[0]
    seq, ack = _SEQ_ACK.unpack_from(packet, l4 + 4)
    return l4, seq, ack, packet[l4 + 13], _U16.unpack_from(packet, l4 + 14)[0], end - l4 - (packet[l4 + 12] >> 4) * 4


def window_scale(packet: bytes, l4: int) -> int | None:
    """The window scale option of the TCP segment at ``l4`` (RFC 7323), or None."""
    at, end = l4 + 20, l4 + (packet[l4 + 12] >> 4) * 4
    while at < end and packet[at]:
        if packet[at] == NOP:
            at += 1
            continue
        if at + 1 >= end or packet[at + 1] < 2:
            return None
        if packet[at] == 3 and packet[at + 1] == 3 and at + 2 < end:
            return min(packet[at + 2], 14)
        at += packet[at + 1]
    return None


def translate(packet: bytes, l4: int, ack: int | None, window: int, removable: dict) -> tuple[bytes, list[str]]:
    """``packet`` with its ACK number and window replaced and the ``removable`` options made NOPs; the TCP
    checksum is updated incrementally (RFC 1624), so one kept wrong stays as wrong."""
    buf = bytearray(packet)
    header_end = l4 + (buf[l4 + 12] >> 4) * 4
    old = bytes(buf[l4:header_end])
    if ack is not None:
        _ACK_FIELD.pack_into(buf, l4 + 8, ack)
    _U16.pack_into(buf, l4 + 14, window)
    removed = []
    at = l4 + 20
    while at < header_end and buf[at]:
        if buf[at] == NOP:
            at += 1
            continue
        length = buf[at + 1] if at + 1 < header_end else 0
        if length < 2 or at + length > header_end:
            break
        if buf[at] in removable:
            removed.append(removable[buf[at]])
            buf[at:at + length] = bytes([NOP]) * length
        at += length
    new = bytes(buf[l4:header_end])
    if new != old:
        delta = checksum_delta(old[:16] + old[18:], new[:16] + new[18:])
        _U16.pack_into(buf, l4 + 16, apply_delta(_U16.unpack_from(old, 16)[0], delta))
    return bytes(buf), removed


class ProxiedFlow(ReplayFlow):
    """A recorded TCP flow replayed into a TCP-proxy VS: two live connections, the module docstring's rules.

    Arrival: a segment that occupies sequence space (data, SYN, FIN) has arrived once the SE
    acknowledges it; a bare ACK or RST, which the SE never acknowledges, once it has crossed a
    captured segment toward the SE (``captured``, called by the account); what an end sent before
    a RST ended its connection, once that RST has.  ``delivered`` and ``settled`` count on that.
    """

    __slots__ = ("up", "down", "counts", "sim", "vip", "vport", "bare", "verify")
    watches_capture = True

    def __init__(self, replay: Any, *args: Any):
        super().__init__(replay, *args)
        self.up = LiveEnd()      # the recorded client, facing the SE's client-side connection
        self.down = LiveEnd()    # the recorded server, facing the SE's server-side connection
        self.counts: Counter[str] = replay.proxy_counts
        self.sim = replay.sim
        self.vip, self.vport = b"", 0   # where the client's packets go (its first packet says)
        self.bare: dict[Any, bool] = {}   # bare ACKs and RSTs sent and not yet captured: row -> from the client
        self.verify = replay.options.keep_checksums   # a wrong checksum was kept: the SE drops that segment
        self.counts["flows"] += 1

    def _end(self, client: bool) -> tuple[LiveEnd, Any]:
        return (self.up, self.client) if client else (self.down, self.server_side)

    # -- reading the recording ------------------------------------------------------------------

    def from_client(self, frame: bytes, row: Any) -> None:
        self._read(frame, ETH_LEN, row, True)

    def from_server(self, packet: bytes, row: Any) -> None:
        self._read(packet, 0, row, False)

    def _read(self, packet: bytes, base: int, row: Any, client: bool) -> None:
        end, side = self._end(client)
        peer = self.down if client else self.up
        side.read += 1
        l4, seq, ack, flags, window, length = segment_of(packet, base)
        if client and not self.vport:
            self.vip = packet[base + 16:base + 20] if packet[base] >> 4 == 4 else packet[base + 24:base + 40]
            self.vport = _U16.unpack_from(packet, l4 + 2)[0]
        if flags & SYN and not end.synced:
            end.synced = True
            end.isn = peer.peer_isn = seq
            end.scale = window_scale(packet, l4)
            if not client and self.up.scale is not None and end.scale is not None:   # scaling agreed
                self.up.shift, self.down.shift = self.up.scale, end.scale
        if end.isn is None:   # no recorded SYN-ACK: the client's ACK says what the server's ISN was
            end.isn = peer.peer_isn = (seq - 1) & SEQ_MASK
        if flags & ACK and end.peer_isn is None:
            end.peer_isn = peer.isn = (ack - 1) & SEQ_MASK
        start = (seq - end.isn) & SEQ_MASK
        stop = start + length + (1 if flags & SYN else 0) + (flags & FIN)
        # A keep-alive (one below the next sequence number, at most one byte) goes as recorded.
        keepalive = start == end.read_end - 1 and length <= 1 and not flags & (SYN | FIN | RST)
        duplicate = (end.last == (ack, window) and window and stop == start and flags & (ACK | RST) == ACK
                     and not keepalive)   # Wireshark's duplicate ACK, as the sender of the ACK recorded it
        end.last = (ack, window) if flags & ACK else None
        if duplicate:
            self.withhold(side, row, "recorded_duplicate_ack")
            return
        again = start < stop <= end.read_end and not keepalive   # all of it was read before: a retransmission
        end.read_end = max(end.read_end, stop)
        need = (ack - end.peer_isn) & SEQ_MASK if flags & ACK else 0
        side.queue.append(((packet, l4, flags, window, stop, length, again), need, row))
        self._pump(client)

    def withhold(self, side: Any, row: Any, reason: str) -> None:
        """A recorded packet the live connections must not get: read, counted, never sent."""
        side.withheld += 1
        self.unsent += 1
        self.replay.unsent_total += 1
        self.counts[reason] += 1
        self.replay.not_sent(row, reason)

    # -- sending --------------------------------------------------------------------------------

    def pump_client(self) -> None:
        self._pump(True)

    def pump_server(self) -> None:
        self._pump(False)

    def _pump(self, client: bool) -> None:
        end, side = self._end(client)
        queue = side.queue
        while queue and self.outcome is None and (client or self.server is not None):
            (packet, l4, flags, window, stop, length, again), need, row = queue[0]
            if need > end.heard or flags & ACK and end.live_isn is None:   # bytes the SE has not sent here yet
                if end.live_isn is not None and not end.grace_armed:
                    end.grace_armed = True
                    self.sim.after(self._grace(end), self._grace_over, client)
                return
            if length and not flags & SYN and stop - (flags & FIN) > end.acked + end.window:
                return   # beyond the SE's live window
            queue.popleft()
            if again and not end.damaged:   # the SE has had every byte of it: it would be spurious
                self.withhold(side, row, "recorded_retransmission")
                continue
            self._send(client, end, side, packet, l4, flags, window, need, stop, length, row)

    def _send(self, client: bool, end: LiveEnd, side: Any, packet: bytes, l4: int, flags: int, window: int,
              need: int, stop: int, length: int, row: Any) -> None:
        packet = self._live_segment(end, packet, l4, flags, window, need, row)
        end.sent_end = max(end.sent_end, stop)
        if end.first_sent_at is None:
            end.first_sent_at = self.sim.now
        if self.verify and bad_checksum(packet, ETH_LEN if client else 0) is not None:
            end.damaged = True   # the SE drops it: it never arrives, and this end's recorded retransmissions go
        elif (length or flags & (SYN | FIN)) and not flags & RST:
            end.ends.append(stop)   # arrives when the SE acknowledges it
        else:
            self.bare[row] = client   # arrives when it is captured on its way to the SE
        if flags & RST:
            side.sent_reset = True
        side.sent += 1
        if client:
            self.send_client(self, packet, row)
        else:
            self.server.send_recorded(self, packet, row)
        if row in self.bare and row.action is not None:   # settled without a capture of its own (``untold``)
            self.captured(row)
        self._acknowledged(end, side)

    def _live_segment(self, end: LiveEnd, packet: bytes, l4: int, flags: int, window: int, need: int,
                      row: Any) -> bytes:
        """The recorded segment as the live connection takes it: ACK translated, window in bytes, options
        the SE did not agree to made NOPs; each change counted."""
        counts = self.counts
        if end.shift and not flags & SYN:
            window <<= end.shift
            counts["windows_scaled"] += 1
            if window > MAX_WINDOW:
                window = MAX_WINDOW
                counts["windows_capped"] += 1
        if not flags & SYN:
            removable = _NOT_AGREED
        else:   # a SYN offers what it likes; a SYN-ACK answers the SE's SYN, which offered none of them
            removable = _NOT_OFFERED if flags & ACK else {}
        ack = (end.live_isn + need) & SEQ_MASK if flags & ACK else None
        packet, removed = translate(packet, l4, ack, window, removable)
        for name in removed:
            counts[f"options_removed_{name}"] += 1
        end.sent_window = window
        if ack is not None:
            end.acked_sent = max(end.acked_sent, need)
            counts["acks_translated"] += 1
            if not end.noted:
                end.noted = True
                row.note("its ACK number and those after it translated to the proxy's live connection (tcp-proxy)")
        return packet

    def _grace(self, end: LiveEnd) -> int:
        return GRACE_FLOOR + 2 * end.rtt

    def _grace_over(self, client: bool) -> None:
        """A recorded packet has waited for bytes the SE holds back: acknowledge what did arrive, as a live
        end would (the SE's window is waiting for an ACK the recording only sends later)."""
        end, side = self._end(client)
        end.grace_armed = False
        if self.outcome is not None or not side.queue or side.queue[0][1] <= end.heard:
            return
        idle = self.sim.now - end.last_arrival
        if idle < self._grace(end):   # the SE is still sending: look again once it has been quiet long enough
            end.grace_armed = True
            self.sim.after(self._grace(end) - idle, self._grace_over, client)
        elif end.heard > end.acked_sent:
            self._add(client, end, ACK, f"ACK added by replay: the SE had sent {end.heard - 1} bytes and stopped, "
                                        f"the recording's next packet acknowledges {side.queue[0][1] - 1}")

    def _add(self, client: bool, end: LiveEnd, flags: int, note: str) -> None:
        """Send a segment the recording does not have (an ACK, or a SYN-ACK it lacks); it is no recorded packet."""
        self.counts["syn_acks_added" if flags & SYN else "acks_added"] += 1
        end.acked_sent = end.heard
        seq, ack = (end.isn + end.sent_end) & SEQ_MASK, (end.live_isn + end.heard) & SEQ_MASK
        if flags & SYN:
            seq, end.sent_end, end.first_sent_at = end.isn, 1, self.sim.now
        sender = self.replay.clients if client else self.server
        sender.send_added(self, seq, ack, flags, end.sent_window or MAX_WINDOW, note)

    # -- what the SE sends ----------------------------------------------------------------------

    def arrived_at_client(self, frame: bytes, view: Any) -> None:
        self._from_se(frame, view, True)

    def arrived_at_server(self, frame: bytes, view: Any) -> None:
        self._from_se(frame, view, False)

    def _from_se(self, frame: bytes, view: Any, client: bool) -> None:
        end, side = self._end(client)
        other = self.server_side if client else self.client
        flags = view.flags
        if flags & RST:
            if not other.sent_reset and not side.sent_reset:
                self.reset(f"reset toward the {'client' if client else 'server'} by the emulated network")
            else:   # the recording's own reset, passed on by the proxy: what this end sent got there
                self._ended(end, side)
            return
        seq, ack = dual.seq_ack(frame, view)
        now = self.sim.now
        before = (end.heard, end.acked)
        if flags & SYN:
            if end.live_isn is None:
                end.live_isn = seq
            end.heard = max(end.heard, 1)
            end.last_arrival = now
            if not client and not end.synced and not end.sent_end and end.isn is not None:
                self._add(False, end, SYN | ACK, "SYN-ACK added by replay: the recording has none")
        elif end.live_isn is not None:
            start = (seq - end.live_isn) & SEQ_MASK
            stop = start + view.payload_len + (flags & FIN)
            if start <= end.heard < stop:
                end.heard = stop
                end.last_arrival = now
        if flags & ACK and end.isn is not None:
            acked = (ack - end.isn) & SEQ_MASK
            if end.acked < acked <= end.read_end:
                end.acked = acked
        end.window = dual.window(frame, view)
        self._acknowledged(end, side)
        if (end.heard, end.acked) != before:
            self.replay.progressed(self, arrived=False)   # the live connection moves: the flow is not stalled
        if side.queue:
            self._pump(client)

    def _acknowledged(self, end: LiveEnd, side: Any) -> None:
        """Count the segments of this end the SE has acknowledged as arrived."""
        ends = end.ends
        while ends and ends[0] <= end.acked:
            ends.popleft()
            if not end.rtt and end.first_sent_at is not None:
                end.rtt = self.sim.now - end.first_sent_at
            side.arrived += 1
            self.replay.progressed(self)

    def captured(self, row: Any) -> None:
        """The account saw ``row``'s frame on a captured segment: a bare ACK or RST has arrived."""
        client = self.bare.pop(row, None)
        if client is None:
            return
        end, side = self._end(client)
        side.arrived += 1
        self.replay.progressed(self)
        if side.sent_reset and client not in self.bare.values():
            self._ended(end, side)

    def _ended(self, end: LiveEnd, side: Any) -> None:
        """A RST ended this end's live connection: what it sent before crossed into the SE, unacknowledged."""
        while end.ends:
            end.ends.popleft()
            side.arrived += 1
            self.replay.progressed(self)

    def drop_queued(self, reason: str) -> None:
        if reason == "flow_stalled" and self.server is None and self.server_side.queue:
            reason_server = "proxy_never_connected"   # nothing for the recorded server to answer
            for _, _, row in self.server_side.queue:
                self.unsent += 1
                self.replay.unsent_total += 1
                self.replay.not_sent(row, reason_server)
            self.server_side.queue.clear()
        super().drop_queued(reason)

    @property
    def delivered(self) -> bool:
        client, server = self.client, self.server_side
        return client.arrived + client.withheld == client.read and server.arrived + server.withheld == server.read


__all__ = ["NOT_SENT_PROXY", "ProxiedFlow", "WITHHELD", "segment_of", "translate", "window_scale"]
