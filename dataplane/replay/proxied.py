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
  the server's SYN-ACK gets one (``syn_acks_added``).  Each end also sends
  again, after a retransmission timeout, what the live network lost
  (``resent_by_replay``), and acknowledges at once data the SE sends again.
- What the live connections cannot replay faithfully is counted
  (``Replayer.proxy_counts``) and said in the summary.  A recorded
  retransmission of bytes the SE has already acknowledged is withheld (it
  would be spurious), and so is a recorded duplicate ACK (it answers a loss
  of the recording, and three would trigger a fast retransmit); a recorded
  retransmission of bytes the SE has not acknowledged after a grace goes.
  Keep-alives go as recorded.  A super-segment (TSO/GRO) is cut into the
  MTU-sized segments a NIC makes before pacing, so each fits the SE's window.
  The SE negotiates no window scaling, SACK or timestamps (``TcpEndpoint``),
  so windows recorded under scaling are scaled to bytes and capped at 65535,
  SACK blocks and timestamps become NOPs, and the server's SYN-ACK drops the
  options the SE's SYN did not offer.

Sequence positions are counted from each ISN modulo 2**32: a flow carrying
more than 4 GiB in one direction is not followed past that.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any

from ..clock import NS_PER_S
from ..wire import dual
from ..wire.checksum import bad_checksum
from ..wire.headers import ACK, ETH_LEN, FIN, RST, SYN
from .flow import ReplayFlow
from .endpoints import cut_super_segment
from .fragments import MTU
from .live_end import LiveEnd, Pending
from .repair import check_checksums, fix_checksums
from .tcp_rewrite import NOT_AGREED, NOT_OFFERED, segment_of, translate, window_scale

_U16 = struct.Struct("!H")

SEQ_MASK = 0xFFFFFFFF
MAX_WINDOW = 0xFFFF        # no window scaling live: a window field holds no more
GRACE_FLOOR = NS_PER_S // 100   # an ACK waits at least 10 ms (plus two live RTTs) for bytes the SE holds back
MIN_RTO = NS_PER_S // 5    # a replayed end resends what the live network lost after this (Linux's floor)
MAX_RETRIES = 6
#: Why a recorded packet is withheld, in words (account reasons, ``report.NOT_SENT``).
WITHHELD = {
    "recorded_retransmission": "a recorded retransmission of bytes the SE had acknowledged: it would be spurious",
    "recorded_duplicate_ack": "a recorded duplicate ACK: it answers a loss of the recording, not of the live "
                              "connection",
}
#: Every reason a packet of a proxied flow is not sent, in words.
NOT_SENT_PROXY = {
    **WITHHELD,
    "proxy_never_connected": "the recorded client never completed its handshake with the SE, so the SE never "
                             "connected to the server: the recorded server packets had nothing to answer",
}


class ProxiedFlow(ReplayFlow):
    """A recorded TCP flow replayed into a TCP-proxy VS: two live connections, the module docstring's rules.

    Arrival: a segment that occupies sequence space (data, SYN, FIN) has arrived once the SE
    acknowledges it; a bare ACK or RST, which the SE never acknowledges, once it has crossed a
    captured segment toward the SE without being dropped there (``captured``, called by the
    account); what an end sent before a RST ended its connection, once that RST has.
    ``delivered`` and ``settled`` count on that.
    """

    __slots__ = ("up", "down", "counts", "sim", "vip", "vport", "bare", "verify", "unconnected")
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
        self.unconnected = 0     # server packets never sent: the SE never connected to the server
        self.counts["flows"] += 1

    def _end(self, client: bool) -> tuple[LiveEnd, Any]:
        return (self.up, self.client) if client else (self.down, self.server_side)

    def _sender(self, client: bool) -> Any:
        """The node that sends for this end: the replay clients, or the pool server the SE chose."""
        return self.replay.clients if client else self.server

    # -- reading the recording ------------------------------------------------------------------

    def from_client(self, frame: bytes, row: Any) -> None:
        self._read(frame, ETH_LEN, row, True)

    def from_server(self, packet: bytes, row: Any) -> None:
        self._read(packet, 0, row, False)

    def _read(self, packet: bytes, base: int, row: Any, client: bool) -> None:
        end, side = self._end(client)
        side.read += 1
        l4, seq, ack, flags, window, length = segment_of(packet, base)
        if client and not self.vport:
            self.vip = packet[base + 16:base + 20] if packet[base] >> 4 == 4 else packet[base + 24:base + 40]
            self.vport = _U16.unpack_from(packet, l4 + 2)[0]
        self._learn_isns(end, client, packet, l4, seq, ack, flags)
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
        end.read_end = max(end.read_end, stop)
        need = (ack - end.peer_isn) & SEQ_MASK if flags & ACK else 0
        for item in self._pieces(packet, base, end, Pending(packet, l4, flags, window, start, stop, length,
                                                            keepalive), row):
            side.queue.append((item, need, row))
        self._pump(client)

    def _learn_isns(self, end: LiveEnd, client: bool, packet: bytes, l4: int, seq: int, ack: int,
                    flags: int) -> None:
        """The recorded ISNs and window scales, from the SYNs (or, missing a SYN-ACK, from the client's ACK)."""
        peer = self.down if client else self.up
        if flags & SYN and not end.synced:
            end.synced = True
            end.isn = peer.peer_isn = seq
            end.scale = window_scale(packet, l4)
            if not client and self.up.scale is not None and end.scale is not None:   # scaling agreed
                self.up.shift, self.down.shift = self.up.scale, end.scale
        if end.isn is None:
            end.isn = peer.peer_isn = (seq - 1) & SEQ_MASK
        if flags & ACK and end.peer_isn is None:
            end.peer_isn = peer.isn = (ack - 1) & SEQ_MASK

    @staticmethod
    def _pieces(packet: bytes, base: int, end: LiveEnd, whole: Pending, row: Any) -> list[Pending]:
        """The recorded packet as it goes: whole, or a super-segment cut as a NIC's TSO cuts it, so that
        each piece can wait for the SE's window on its own."""
        ip = packet[base:]
        cut = cut_super_segment(ip, whole.l4 - base, row) if len(ip) > MTU else None
        if not cut:
            return [whole]
        pieces = []
        for number, piece in enumerate(cut, 1):
            frame = packet[:base] + piece
            _, seq, _, flags, _, length = segment_of(frame, base)
            start = (seq - end.isn) & SEQ_MASK
            pieces.append(Pending(frame, whole.l4, flags, whole.window, start, start + length + (flags & FIN),
                                  length, False, number, len(cut)))
        return pieces

    def withhold(self, side: Any, row: Any, reason: str) -> None:
        """A recorded packet the live connections must not get: read, counted, never sent."""
        side.withheld += 1
        self.counts[reason] += 1
        self.give_up(row, reason)

    # -- sending --------------------------------------------------------------------------------

    def pump_client(self) -> None:
        self._pump(True)

    def pump_server(self) -> None:
        self._pump(False)

    def _pump(self, client: bool) -> None:
        end, side = self._end(client)
        queue = side.queue
        while queue and self.outcome is None and (client or self.server is not None):
            item, need, row = queue[0]
            flags = item.flags
            if need > end.heard or flags & ACK and end.live_isn is None:   # bytes the SE has not sent here yet
                self._wait_for_se(end, client)
                return
            if item.length and not flags & SYN and item.stop - (flags & FIN) > end.acked + end.window:
                return   # beyond the SE's live window: its ACK or window update pumps again
            if item.piece > 1 and row.action == "not_sent":   # the rest of a withheld super-segment
                queue.popleft()
                continue
            again = item.piece <= 1 and not item.keepalive and item.stop > item.start \
                and end.was_sent(item.start, item.stop)
            if again and item.stop <= end.acked:   # the SE has every byte of it: it would be spurious
                queue.popleft()
                self.withhold(side, row, "recorded_retransmission")
                continue
            if again and self.sim.now - end.last_arrival < self._grace(end):
                if not end.recheck_armed:   # in flight, or lost? the SE's ACK will say
                    end.recheck_armed = True
                    self.sim.after(self._grace(end), self._recheck, client)
                return
            if again:   # not acknowledged: the live network lost it, and the recording's retransmission recovers it
                self.counts["retransmissions_sent"] += 1
            queue.popleft()
            self._send(client, end, side, item, need, row)

    def _send(self, client: bool, end: LiveEnd, side: Any, item: Pending, need: int, row: Any) -> None:
        flags = item.flags
        packet = self._live_segment(end, item, need, row)
        end.mark_sent(item.start, item.stop)
        if end.first_sent_at is None:
            end.first_sent_at = self.sim.now
        if item.piece == item.pieces:   # a whole packet, or its last piece: what the packet's arrival waits for
            if (item.length or flags & (SYN | FIN)) and not flags & RST:
                end.ends.append(item.stop)   # arrives when the SE acknowledges it
            elif not (self.verify and bad_checksum(packet, ETH_LEN if client else 0)):   # (else the SE drops it)
                self.bare[row] = client   # arrives when it is captured on its way to the SE
        if flags & RST:
            side.sent_reset = True
        elif item.length or flags & (SYN | FIN):   # resent if the live network loses it (``_resend``)
            end.unacked.append((item.stop, self._repaired(packet, client)))
            self._arm_rto(end, client)
        sender = self._sender(client)
        if item.piece > 1:
            loop = f" (loop {row.loop})" if row.loop > 1 else ""
            sender.send_piece(self, packet, f"piece {item.piece} of {item.pieces} of input frame {row.frame}{loop}")
        else:
            side.sent += 1
            if client:
                self.send_client(self, packet, row)
            else:
                self.server.send_recorded(self, packet, row)
            if row in self.bare and row.action is not None:   # settled without a capture of its own (``untold``)
                self.captured(row)
        self._acknowledged(end, side)

    def _recheck(self, client: bool) -> None:
        self._end(client)[0].recheck_armed = False
        self._pump(client)

    def _live_segment(self, end: LiveEnd, item: Pending, need: int, row: Any) -> bytes:
        """The recorded segment as the live connection takes it: ACK translated, window in bytes, options
        the SE did not agree to made NOPs; each change counted."""
        counts, flags, window = self.counts, item.flags, item.window
        if end.shift and not flags & SYN:
            window <<= end.shift
            counts["windows_scaled"] += 1
            if window > MAX_WINDOW:
                window = MAX_WINDOW
                counts["windows_capped"] += 1
        if not flags & SYN:
            removable = NOT_AGREED
        else:   # a SYN offers what it likes; a SYN-ACK answers the SE's SYN, which offered none of them
            removable = NOT_OFFERED if flags & ACK else {}
        ack = (end.live_isn + need) & SEQ_MASK if flags & ACK else None
        packet, removed = translate(item.packet, item.l4, ack, window, removable)
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

    # -- when the SE holds bytes back -------------------------------------------------------------

    def _grace(self, end: LiveEnd) -> int:
        return GRACE_FLOOR + 2 * end.rtt

    def _wait_for_se(self, end: LiveEnd, client: bool) -> None:
        if end.live_isn is not None and not end.grace_armed:
            end.grace_armed = True
            self.sim.after(self._grace(end), self._grace_over, client)

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
        self._sender(client).send_added(self, seq, ack, flags, end.sent_window or MAX_WINDOW, note)

    # -- when the live network loses what a replayed end sent ------------------------------------

    def _repaired(self, packet: bytes, client: bool) -> bytes:
        """What a resend carries: a checksum kept wrong (``--keep-checksums``) was corruption on the wire,
        and the sender's copy is right."""
        base = ETH_LEN if client else 0
        wrong = check_checksums(packet[base:]) if self.verify else None
        return packet[:base] + fix_checksums(packet[base:], wrong) if wrong else packet

    def _rto(self, end: LiveEnd) -> int:
        return max(MIN_RTO, 3 * end.rtt) << end.retries

    def _arm_rto(self, end: LiveEnd, client: bool) -> None:
        if not end.rto_armed:
            end.rto_armed = True
            self.sim.after(self._rto(end), self._resend, client, end.acked)

    def _resend(self, client: bool, acked_then: int) -> None:
        """No ACK for a retransmission timeout: send the oldest unacknowledged segment again, as the recorded
        end's own stack would (the recording cannot: its retransmissions answer its own losses)."""
        end, _ = self._end(client)
        end.rto_armed = False
        unacked = end.unacked
        while unacked and unacked[0][0] <= end.acked:
            unacked.popleft()
        if not unacked or self.outcome is not None or end.retries >= MAX_RETRIES:
            return
        if end.acked > acked_then:   # the SE is acknowledging: nothing lost yet
            end.retries = 0
        else:
            waited_ms = self._rto(end) * 1000 // NS_PER_S
            end.retries += 1
            self.counts["resent_by_replay"] += 1
            note = f"sent again by replay: no ACK from the SE for {waited_ms} ms, lost live"
            self._sender(client).send_piece(self, unacked[0][1], note)
        self._arm_rto(end, client)

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
        before = (end.heard, end.acked)
        if flags & SYN:
            if end.live_isn is None:
                end.live_isn = seq
            end.heard = max(end.heard, 1)
            end.last_arrival = self.sim.now
            if not client and not end.synced and not end.sent_end and end.isn is not None:
                self._add(False, end, SYN | ACK, "SYN-ACK added by replay: the recording has none")
        elif end.live_isn is not None:
            start = (seq - end.live_isn) & SEQ_MASK
            stop = start + view.payload_len + (flags & FIN)
            if start <= end.heard < stop:
                end.heard = stop
                end.last_arrival = self.sim.now
            elif start < stop <= end.heard and end.acked_sent:   # the SE sends again what is here: our ACK was lost
                self._add(client, end, ACK, "ACK added by replay: the SE sent again bytes that had arrived")
        if flags & ACK and end.isn is not None:
            acked = (ack - end.isn) & SEQ_MASK
            if end.acked < acked <= end.sent_end:
                end.acked = acked
                end.last_arrival = self.sim.now
        end.window = dual.window(frame, view)
        self._acknowledged(end, side)
        if (end.heard, end.acked) != before:
            self.replay.progressed(self, arrived=False)   # the live connection moves: the flow is not stalled
        if side.queue:
            self._pump(client)

    # -- arrival ----------------------------------------------------------------------------------

    def _acknowledged(self, end: LiveEnd, side: Any) -> None:
        """Count the segments of this end the SE has acknowledged as arrived."""
        ends = end.ends
        while ends and ends[0] <= end.acked:
            ends.popleft()
            if not end.rtt and end.first_sent_at is not None:
                end.rtt = self.sim.now - end.first_sent_at
            side.arrived += 1
            self.replay.progressed(self)

    def captured(self, row: Any, dropped: bool = False) -> None:
        """The account saw ``row``'s frame on a captured segment: a bare ACK or RST has arrived, unless the
        segment dropped it (``dropped``: the frame's comment says ``[DROPPED``)."""
        client = self.bare.pop(row, None)
        if client is None or dropped:
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
        if reason == "flow_stalled" and self.server is None and not self.up.acked_sent:
            self.unconnected += len(self.server_side.queue)
            for _, _, row in self.server_side.queue:   # the SE never connected: nothing to answer
                self.give_up(row, "proxy_never_connected")
            self.server_side.queue.clear()
        super().drop_queued(reason)

    @property
    def delivered(self) -> bool:
        client, server = self.client, self.server_side
        return client.arrived + client.withheld == client.read and server.arrived + server.withheld == server.read


__all__ = ["NOT_SENT_PROXY", "ProxiedFlow", "WITHHELD"]
