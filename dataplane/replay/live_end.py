"""
The state of one recorded end of a flow replayed into the TCP proxy (``proxied``), and what waits to go.

``LiveEnd`` holds what an end (the recorded client, or the recorded server)
knows of its own recording and of the SE's live connection it faces: the
ISNs that translate its ACK numbers, what it has heard from the SE, what the
SE acknowledged, the ranges it has sent, and the timers it runs.  Positions
are relative to an ISN (the SYN counts one).  ``Pending`` is one recorded
segment, or one MTU-sized piece of a recorded super-segment, waiting in its
end's queue.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_RANGES = 64            # sent ranges remembered per end (more only with a recording full of holes)


@dataclass(slots=True)
class LiveEnd:
    """One recorded end (client or server) and the SE's live connection it faces."""

    isn: int | None = None        # this end's recorded ISN: its sequence numbers go out as recorded
    peer_isn: int | None = None   # the recorded peer's ISN, which this end's recorded ACKs count from
    live_isn: int | None = None   # the SE's ISN on this live connection, which the ACKs sent count from
    synced: bool = False          # this end's SYN (or SYN-ACK) was read from the recording
    scale: int | None = None      # the window scale this end's SYN offered in the recording
    shift: int = 0                # the recorded scale of this end's windows (both SYNs offered one)
    heard: int = 0                # the SE's sequence space arrived here in order (its SYN counts one)
    acked: int = 0                # this end's sequence space the SE acknowledged
    window: int = 0               # the SE's last advertised window
    read_end: int = 0             # the furthest sequence position of this end read from the recording
    last: tuple | None = None     # (ack, window) of this end's previous recorded packet
    sent: list = field(default_factory=list)     # [start, stop) ranges sent, merged, in order
    sent_end: int = 0             # the furthest sequence position sent
    sent_window: int = 0          # the window field last sent
    acked_sent: int = 0           # the furthest position of the SE's stream this end has acknowledged
    ends: deque = field(default_factory=deque)   # positions sent that the SE has not acknowledged yet
    last_arrival: int = 0
    first_sent_at: int | None = None
    rtt: int = 0
    grace_armed: bool = False
    recheck_armed: bool = False   # a recorded retransmission waits to see whether the SE acknowledges its bytes
    noted: bool = False
    unacked: deque = field(default_factory=deque)   # (stop, frame or packet) sent and not acknowledged
    rto_armed: bool = False
    retries: int = 0

    def mark_sent(self, start: int, stop: int) -> None:
        self.sent_end = max(self.sent_end, stop)
        if stop <= start:
            return
        ranges = self.sent
        if ranges and ranges[-1][1] >= start >= ranges[-1][0]:   # the common case: it continues the last one
            ranges[-1][1] = max(ranges[-1][1], stop)
            return
        ranges.append([start, stop])
        ranges.sort()
        merged = [ranges[0]]
        for low, high in ranges[1:]:
            if low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self.sent = merged[-MAX_RANGES:]

    def was_sent(self, start: int, stop: int) -> bool:
        return any(low <= start and stop <= high for low, high in self.sent)


@dataclass(slots=True)
class Pending:
    """A recorded segment waiting to go, or one MTU-sized piece of a recorded super-segment."""

    packet: bytes
    l4: int
    flags: int
    window: int
    start: int                    # its sequence range, relative to the end's ISN
    stop: int
    length: int
    keepalive: bool = False
    piece: int = 0                # 0: a whole recorded packet; k: the k-th of ``pieces``
    pieces: int = 0


__all__ = ["LiveEnd", "Pending"]
