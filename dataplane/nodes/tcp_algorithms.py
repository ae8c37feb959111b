"""
The textbook parts of a TCP endpoint, kept apart from its state machine (``tcp_endpoint``).

Owns: sequence-number arithmetic modulo 2**32 (``unwrap``), the out-of-order
reassembly queue, the RFC 6298 retransmission timeout and the RFC 5681 /
RFC 6582 (NewReno) congestion window with the RFC 6928 initial window.

Sequence numbers: the endpoint keeps every sequence number as an unbounded
Python int that starts at the 32-bit ISN and only grows, so comparisons
inside it are plain ``<`` and wrap-around cannot bite.  A 32-bit number
from the wire is turned into that space with ``unwrap`` against a number
known to be close to it (the next expected sequence number, the oldest
unacknowledged one); numbers go back to the wire with ``& SEQ_MASK``.  Both
ends can then never be more than 2**31 apart, which RFC 9293 assumes too.
"""

from __future__ import annotations

from bisect import bisect_right

from ..clock import NS_PER_S

SEQ_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_WRAP = 1 << 32

#: RFC 6298 clock granularity G: 1 ms, the resolution of a Linux jiffy at HZ=1000.
CLOCK_GRANULARITY = NS_PER_S // 1000


def unwrap(wire: int, near: int) -> int:
    """The unbounded sequence number whose low 32 bits are ``wire`` and that lies within 2**31 of ``near``."""
    return near + ((wire - near + _HALF) & SEQ_MASK) - _HALF


class Reassembly:
    """Segments that arrived ahead of a gap, held (not dropped) until the gap fills.

    Holding them means one retransmission repairs a lost segment instead of
    the whole window after it, as every modern stack does.  Chunks are kept
    sorted and never overlapping: a new segment is trimmed against what is
    held, so a retransmission with other boundaries costs no extra memory.
    The endpoint only adds data inside its receive window, which bounds the
    memory held here by the window.
    """

    __slots__ = ("_starts", "_chunks", "fin_at")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._chunks: list[bytes] = []
        #: The sequence number of a FIN that arrived out of order, or None.
        self.fin_at: int | None = None

    def __bool__(self) -> bool:
        return bool(self._starts) or self.fin_at is not None

    @property
    def held(self) -> int:
        """Bytes waiting for the gap before them."""
        return sum(map(len, self._chunks))

    def add(self, start: int, data: bytes) -> None:
        """Hold ``data`` (sequence numbers from ``start``), keeping only bytes not held already."""
        end = start + len(data)
        starts, chunks = self._starts, self._chunks
        before = bisect_right(starts, start) - 1
        if before >= 0:
            before_end = starts[before] + len(chunks[before])
            if before_end >= end:
                return  # a duplicate of what is held
            if before_end > start:
                data, start = data[before_end - start:], before_end
        first = last = before + 1
        while last < len(starts) and starts[last] + len(chunks[last]) <= end:
            last += 1  # wholly covered by the new data: replaced by it
        if last < len(starts) and starts[last] < end:
            data, end = data[:starts[last] - start], starts[last]
        if not data:
            return
        starts[first:last] = [start]
        chunks[first:last] = [data]

    def pop_ready(self, rcv_nxt: int) -> list[bytes]:
        """Remove and return, in order, the held bytes that continue the stream at ``rcv_nxt``."""
        starts, chunks = self._starts, self._chunks
        ready = []
        while starts and starts[0] <= rcv_nxt:
            start, data = starts.pop(0), chunks.pop(0)
            if start + len(data) > rcv_nxt:
                data = data[rcv_nxt - start:] if start < rcv_nxt else data
                ready.append(data)
                rcv_nxt += len(data)
        return ready


class RetransmitTimeout:
    """RFC 6298: smoothed RTT, its variation, the RTO with exponential back-off."""

    __slots__ = ("srtt", "rttvar", "_base", "backoff", "min_rto", "max_rto")

    def __init__(self, initial_ns: int, min_ns: int, max_ns: int):
        self.srtt: int | None = None
        self.rttvar = 0
        self._base = initial_ns
        self.backoff = 0
        self.min_rto, self.max_rto = min_ns, max_ns

    @property
    def current(self) -> int:
        """The timeout to arm now: the base RTO doubled once per unanswered expiry, at most ``max_rto``."""
        return min(self._base << self.backoff, self.max_rto)

    def handshake_unmeasured(self, fallback_ns: int) -> None:
        """The handshake ended with no RTT measured (its SYN went again): RFC 6298 5.7, 3 s as Linux does."""
        if self.srtt is None:
            self._base = max(self._base, fallback_ns)

    def sample(self, rtt_ns: int) -> None:
        """Take one RTT measurement (never of a retransmitted segment: Karn's algorithm, RFC 6298 section 3)."""
        if self.srtt is None:
            self.srtt, self.rttvar = rtt_ns, rtt_ns // 2
        else:
            self.rttvar += (abs(self.srtt - rtt_ns) - self.rttvar) // 4  # beta = 1/4
            self.srtt += (rtt_ns - self.srtt) // 8  # alpha = 1/8
        rto = self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar)
        self._base = min(max(rto, self.min_rto), self.max_rto)


class Congestion:
    """The congestion window: slow start, congestion avoidance, fast retransmit and NewReno recovery.

    RFC 5681 (Reno) with RFC 6582 (NewReno partial acknowledgements) and the
    RFC 6928 initial window of ``initial_segments``.  Not modelled: SACK,
    restart after idle, CUBIC (Linux's default); they change timing under
    loss, never correctness.
    """

    __slots__ = ("mss", "cwnd", "ssthresh", "dupacks", "recover", "in_recovery")

    def __init__(self, mss: int, initial_segments: int):
        self.mss = mss
        # RFC 6928: min(10*MSS, max(2*MSS, 14600)), read for any number of segments.
        self.cwnd = min(initial_segments * mss, max(2 * mss, initial_segments * 1460))
        self.ssthresh = 1 << 62  # "arbitrarily high" until the first loss (RFC 5681 3.1)
        self.dupacks = 0
        self.recover = -1  # below every sequence number: the first three duplicates may start a recovery
        self.in_recovery = False

    def on_new_ack(self, acked: int, ack: int, flight_before: int) -> bool:
        """Grow or deflate the window for ``acked`` new bytes; True if the segment at ``ack`` must go again now."""
        self.dupacks = 0
        if self.in_recovery:
            if ack >= self.recover:  # full acknowledgement: recovery is over (RFC 6582 3.2 step 3)
                self.in_recovery = False
                self.cwnd = min(self.ssthresh, max(flight_before - acked, 0) + self.mss)
                return False
            self.cwnd = max(self.cwnd - acked + self.mss, self.mss)  # partial: deflate, resend the next hole
            return True
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)  # slow start
        else:
            self.cwnd += max(self.mss * self.mss // self.cwnd, 1)  # congestion avoidance
        return False

    def on_duplicate_ack(self, flight: int, snd_max: int, snd_una: int) -> bool:
        """Count a duplicate ACK; True if it is the third and the segment at ``snd_una`` must go again now."""
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss  # each duplicate means one segment left the network
            return False
        if self.dupacks != 3 or snd_una <= self.recover:  # RFC 6582 4.1: not for losses a timeout repairs
            return False
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss
        self.recover, self.in_recovery = snd_max, True
        return True

    def on_timeout(self, flight: int, snd_max: int) -> None:
        """A retransmission timeout: back to one segment and slow start (RFC 5681 3.1, the loss window)."""
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.dupacks = 0
        self.recover, self.in_recovery = snd_max, False
