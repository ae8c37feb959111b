"""
The two directions of a TCP connection as sequence spaces, for ``tcp_endpoint``.

``SendStream`` owns our bytes from the oldest unacknowledged one to the last
queued, and the peer's window over them; ``ReceiveStream`` owns the peer's
bytes: the next one expected, the window promised, what waits beyond a gap
and what the owner has not consumed yet.  Neither knows states, timers or
callbacks: the endpoint asks them what to send or deliver and tells them
what happened.  Sequence numbers are unbounded ints (``tcp_algorithms``).
Bytes are moved by slicing, never one at a time.
"""

from __future__ import annotations

from ..wire.headers import ACK, FIN, PSH
from .tcp_algorithms import Congestion, Reassembly


class SendStream:
    """Our direction: queued bytes, what was sent and acknowledged, and the windows that bound sending."""

    __slots__ = ("una", "nxt", "max", "_buf", "_buf_seq", "capacity", "fin_queued", "fin_seq", "wnd", "max_wnd",
                 "_wl1", "_wl2", "mss", "cc")

    def __init__(self, isn: int, capacity: int, mss: int, initial_window: int):
        #: The oldest unacknowledged sequence number, the next to send, and the highest sent (``nxt`` falls
        #: behind ``max`` after a retransmission timeout: sending goes back to ``una``).
        self.una = self.nxt = self.max = isn
        self._buf = bytearray()  # the bytes from _buf_seq on: unacknowledged, then not sent yet
        self._buf_seq = isn + 1  # the SYN takes the ISN
        self.capacity = capacity
        self.fin_queued = False  # the owner closed: a FIN follows the last queued byte
        self.fin_seq: int | None = None  # the FIN's sequence number, once sent
        self.wnd = self.max_wnd = 0  # the peer's window, and the largest it ever offered
        self._wl1 = self._wl2 = -1  # the segment that last set the window (RFC 9293 SND.WL1, SND.WL2)
        self.mss = mss
        self.cc = Congestion(mss, initial_window)

    @property
    def end(self) -> int:
        """The sequence number after the last queued byte (where the FIN goes)."""
        return self._buf_seq + len(self._buf)

    def space(self) -> int:
        return self.capacity - len(self._buf)

    def queue(self, data: bytes) -> int:
        taken = min(len(data), self.capacity - len(self._buf))
        self._buf += data if taken == len(data) else data[:taken]
        return taken

    def start(self, initial_window: int) -> None:
        """The handshake is done (``mss`` is final): the congestion window starts."""
        self.cc = Congestion(self.mss, initial_window)

    def acknowledge(self, ack: int) -> int:
        """The peer acknowledged up to ``ack`` (more than ``una``): free those bytes, return how many."""
        acked = min(ack, self._buf_seq + len(self._buf)) - self._buf_seq
        if acked > 0:
            del self._buf[:acked]  # O(1) at the front of a bytearray
            self._buf_seq += acked
        self.una = ack
        if self.nxt < ack:
            self.nxt = ack
        return max(acked, 0)

    def update_window(self, seq: int, ack: int, window: int, advanced: bool) -> bool:
        """Take the window of a segment newer than the last that set it; True if it opens a zero window.

        Newer: RFC 9293's SND.WL1/WL2 test, or, as Linux reads it, any segment
        whose ACK ``advanced`` ``una``: the window counts from ``una``, so it
        must move with it (a retransmitted FIN carries an older sequence number
        than the ACKs sent after the lost original).
        """
        if ack < self.una or not advanced and (seq < self._wl1 or (seq == self._wl1 and ack < self._wl2)):
            return False
        opened = window > 0 and self.wnd == 0
        self.wnd, self._wl1, self._wl2 = window, seq, ack
        if window > self.max_wnd:
            self.max_wnd = window
        return opened

    def force_window(self, seq: int, ack: int, window: int) -> None:
        """The handshake's segment sets the window whatever came before (RFC 9293 3.10.7.3-4)."""
        self.update_window(seq, ack, window, True)

    def next_segment(self) -> tuple[int, int, int] | None:
        """(seq, length, fin) of the next segment the windows allow, or None.

        Never beyond the peer's window or the congestion window, never more
        than one MSS, and no small segment while more data waits and the
        window will grow (RFC 1122 4.2.3.4, Nagle off as a proxy runs).  A
        bare FIN goes even into a zero window, as Linux sends it.
        """
        end, nxt, mss = self._buf_seq + len(self._buf), self.nxt, self.mss
        length = min(end, self.una + min(self.wnd, self.cc.cwnd)) - nxt
        length = mss if length > mss else max(length, 0)
        fin = 1 if self.fin_queued and nxt + length == end else 0
        if not length and not fin:
            return None
        if length < mss and nxt + length < end and nxt >= self.max and 2 * length < self.max_wnd:
            return None
        return nxt, length, fin

    def head(self, limit: int) -> tuple[int, int, int] | None:
        """(seq, length, fin) of the oldest unacknowledged bytes, at most ``limit``, to send again.

        Only bytes sent before: what follows them may lie beyond the peer's window.
        """
        length = min(limit, min(self.max, self._buf_seq + len(self._buf)) - self.una)
        fin = 1 if self.fin_seq is not None and self.una + length == self.fin_seq else 0
        return (self.una, length, fin) if length or fin else None

    def take(self, seq: int, length: int, fin: int) -> tuple[bytes, int]:
        """Book the segment as sent; return its payload and flags."""
        start = seq - self._buf_seq
        payload = bytes(self._buf[start:start + length]) if length else b""
        flags = ACK | FIN if fin else ACK
        if length and start + length == len(self._buf):
            flags |= PSH  # the last queued byte: the peer should not wait for more before delivering
        end = seq + length + fin
        if end > self.max:
            self.max = end
            if fin:
                self.fin_seq = end - 1
        return payload, flags

    def acceptable_seq(self) -> int:
        """The sequence number for a segment without data: ``max``, unless that lies beyond the peer's window.

        A zero-window probe byte the peer refused must not make our ACKs
        unacceptable to it (Linux's ``tcp_acceptable_seq``).
        """
        edge = self.una + self.wnd
        return edge if self.max > edge and self.max_wnd else self.max  # (no window known yet: the handshake)


class ReceiveStream:
    """The peer's direction: what arrived, what the owner holds, and the window that follows from it."""

    __slots__ = ("nxt", "edge", "buffer", "unconsumed", "_ooo", "fin_received", "unacked", "ack_now", "_mss", "_sws")

    def __init__(self, buffer: int, mss: int):
        self.nxt = 0  # the next sequence number expected (known once the peer's SYN arrived)
        self.edge = buffer  # the right edge promised to the peer: data up to it is accepted
        self.buffer = buffer
        self.unconsumed = 0  # delivered, not consumed by the owner yet: it holds the window shut
        self._ooo = Reassembly()
        self.fin_received = False
        self.unacked = 0  # in-order bytes since our last ACK
        self.ack_now = False  # something needs an ACK before the delayed-ACK timer
        self.set_mss(mss)

    def synchronize(self, seq: int) -> None:
        """The peer's SYN took ``seq``."""
        self.nxt = seq + 1
        self.edge = self.nxt + self.buffer

    def set_mss(self, mss: int) -> None:
        """The size of a full segment from the peer: it paces our ACKs and the window's steps."""
        self._mss = mss
        self._sws = min(self.buffer >> 1, mss)

    def window(self) -> int:
        """The window to advertise.  The right edge moves only by a worthwhile amount (receiver SWS
        avoidance, RFC 9293 3.8.6.2.2) and never back."""
        free_edge = self.nxt + self.buffer - self.unconsumed
        if free_edge - self.edge >= self._sws:
            self.edge = free_edge
        return self.edge - self.nxt

    def acceptable(self, seq: int, length: int) -> bool:
        """RFC 9293 3.10.7.4 first check, as Linux reads it: some of it is new and it starts in the window."""
        return seq + length >= self.nxt and seq <= self.edge

    def accept(self, seq: int, payload: bytes, fin: int) -> tuple[list[bytes], bool]:
        """Take an acceptable segment's data and FIN; return the bytes now in order and whether the FIN is."""
        nxt, end = self.nxt, seq + len(payload)
        if end > self.edge:  # keep what fits; the FIN goes with the part cut off
            payload, fin, self.ack_now = payload[:max(self.edge - seq, 0)], 0, True
            end = seq + len(payload)
        if seq < nxt:  # the head arrived before
            payload, seq, self.ack_now = payload[nxt - seq:], nxt, True
            if end < nxt:
                return [], False
        if seq > nxt:  # ahead of a gap: hold it and say at once what is missing (a duplicate ACK)
            if payload:
                self._ooo.add(seq, payload)
            if fin:
                self._ooo.fin_at = end
            self.ack_now = True
            return [], False
        ready = [payload] if payload else []
        end = nxt + len(payload)
        if self._ooo:
            ready += self._ooo.pop_ready(end)
            end = nxt + sum(map(len, ready))
            fin = fin or self._ooo.fin_at == end
            self.ack_now = True  # it filled (part of) a gap: acknowledge at once (RFC 5681 4.2)
        received = end - nxt
        self.nxt, self.unconsumed, self.unacked = end, self.unconsumed + received, self.unacked + received
        if fin:
            self.nxt += 1
            self.edge = max(self.edge, self.nxt)  # a FIN accepted into a zero window takes one past its edge
            self.fin_received, self.ack_now, self._ooo = True, True, Reassembly()
        elif self.unacked > self._mss:
            self.ack_now = True  # a second full-sized segment: ACK it now (RFC 1122 4.2.3.2, as Linux counts)
        return ready, bool(fin)

    def consume(self, count: int) -> bool:
        """The owner released ``count`` bytes; True if the window grew enough to tell the peer now.

        Linux's rule (``tcp_cleanup_rbuf``): when the promised window has
        fallen to half the buffer or less and the new one is at least twice it.
        """
        if not 0 <= count <= self.unconsumed:
            raise ValueError(f"consume({count}): {self.unconsumed} bytes are delivered and not consumed")
        self.unconsumed -= count
        promised = self.edge - self.nxt
        return not self.fin_received and 2 * promised <= self.buffer and self.window() >= max(2 * promised, 1)
