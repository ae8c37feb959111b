"""
Virtual time: an integer nanosecond clock and a deterministic event queue.

The queue is a heap of ``(time_ns, priority, seq, callback, args)``; ``seq``
comes from a counter so that events at the same time and priority run in the
order they were scheduled and callbacks are never compared (the SimPy
``core.py`` scheme).  Nothing here reads the wall clock.

Two kinds of events share the queue.  *Frames in flight* are scheduled with
``post``: a frame crossing a segment, or a node sending one after its
processing delay.  *Timers* are scheduled with ``at``, ``after`` and
``every``: retransmissions, health probes, drains, idle sweeps.  The clock
remembers the latest time any frame is due (``frame_horizon``), which is
what lets ``settle`` run "until nothing is in flight" without running
periodic timers for ever.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from typing import Any, Callable

NS_PER_S = 1_000_000_000

#: Control-plane actions run before packets that arrive at the same instant.
URGENT = 0
NORMAL = 1


def seconds(value: float) -> int:
    """Convert seconds to integer nanoseconds (rounded, never float drift later)."""
    return round(value * NS_PER_S)


class Timer:
    """A handle on one scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("entry",)

    def __init__(self, entry: list):
        self.entry = entry

    def cancel(self) -> None:
        self.entry[3] = None

    @property
    def active(self) -> bool:
        return self.entry[3] is not None


class Simulator:
    """Run callbacks in virtual-time order."""

    def __init__(self) -> None:
        self._now = 0
        self._queue: list[list] = []
        self._seq = itertools.count()
        self.events_run = 0
        #: The latest time a frame in flight is due; no frame is in flight once the clock has passed it.
        self.frame_horizon = 0

    #: The current virtual time in nanoseconds; only running events moves it.  (A C-level getter:
    #: the forwarding path reads it for every frame, and a Python-level property costs a frame each time.)
    now = property(operator.attrgetter("_now"))

    def at(self, time_ns: int, callback: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Timer:
        if time_ns < self._now:
            raise ValueError(f"cannot schedule in the past ({time_ns} < {self._now})")
        entry = [time_ns, priority, next(self._seq), callback, args]
        heapq.heappush(self._queue, entry)
        return Timer(entry)

    def after(self, delay_ns: int, callback: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Timer:
        return self.at(self._now + delay_ns, callback, *args, priority=priority)

    def post(self, delay_ns: int, callback: Callable[..., Any], args: tuple) -> None:
        """Schedule a frame in flight: ``callback(*args)`` after ``delay_ns``, no handle (the forwarding fast path)."""
        time_ns = self._now + delay_ns
        if time_ns > self.frame_horizon:
            self.frame_horizon = time_ns
        heapq.heappush(self._queue, [time_ns, NORMAL, next(self._seq), callback, args])

    def every(self, interval_ns: int, callback: Callable[[], Any], start_ns: int | None = None,
              until_ns: int | None = None) -> None:
        """Call ``callback`` every ``interval_ns`` from ``start_ns`` until ``until_ns`` (exclusive)."""
        def tick() -> None:
            callback()
            following = self._now + interval_ns
            if until_ns is None or following < until_ns:
                self.at(following, tick)
        first = self._now + interval_ns if start_ns is None else start_ns
        if until_ns is None or first < until_ns:
            self.at(first, tick)

    def peek(self) -> int | None:
        """The time of the next event, or None when the queue is empty."""
        return self._queue[0][0] if self._queue else None

    def in_flight(self) -> bool:
        """True while a frame is still due: the next event is no later than the frame horizon."""
        return bool(self._queue) and self._queue[0][0] <= self.frame_horizon

    def step(self) -> bool:
        """Run the next event (a cancelled one counts); return False if the queue was empty."""
        if not self._queue:
            return False
        time_ns, _, _, callback, args = heapq.heappop(self._queue)
        if callback is not None:  # a cancelled timer does not move the clock
            self._now = time_ns
            self.events_run += 1
            callback(*args)
        return True

    def settle(self, limit_ns: int | None = None) -> bool:
        """Run until no frame is in flight (see ``in_flight``), but not past ``limit_ns``.

        Timers due before the last frame run in their turn; the clock never moves
        past the last frame event for a timer's sake.  Returns True if it settled,
        False if it stopped at ``limit_ns`` with frames still in flight.
        """
        queue = self._queue
        while queue and queue[0][0] <= self.frame_horizon:
            if limit_ns is not None and queue[0][0] > limit_ns:
                return False
            self.step()
        return True

    def run(self, until_ns: int | None = None) -> None:
        """Run events in order; stop when the queue drains or before the first event after ``until_ns``.

        With ``until_ns`` the clock then stands at ``until_ns`` even if the queue drained earlier.
        """
        queue = self._queue
        pop = heapq.heappop
        while queue:
            if until_ns is not None and queue[0][0] > until_ns:
                break
            time_ns, _, _, callback, args = pop(queue)
            if callback is None:
                continue
            self._now = time_ns
            self.events_run += 1
            callback(*args)
        if until_ns is not None:
            self._now = max(self._now, until_ns)
