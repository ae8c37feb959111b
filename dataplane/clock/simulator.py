"""
Virtual time: an integer nanosecond clock and a deterministic event queue.

The queue is a heap of ``(time_ns, priority, seq, callback, args)``; ``seq``
comes from a counter so that events at the same time and priority run in the
order they were scheduled and callbacks are never compared (the SimPy
``core.py`` scheme).  Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
import itertools
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
        self.now = 0
        self._queue: list[list] = []
        self._seq = itertools.count()
        self.events_run = 0

    def at(self, time_ns: int, callback: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Timer:
        if time_ns < self.now:
            raise ValueError(f"cannot schedule in the past ({time_ns} < {self.now})")
        entry = [time_ns, priority, next(self._seq), callback, args]
        heapq.heappush(self._queue, entry)
        return Timer(entry)

    def after(self, delay_ns: int, callback: Callable[..., Any], *args: Any, priority: int = NORMAL) -> Timer:
        return self.at(self.now + delay_ns, callback, *args, priority=priority)

    def post(self, delay_ns: int, callback: Callable[..., Any], args: tuple) -> None:
        """Schedule ``callback(*args)`` after ``delay_ns`` with no handle: the forwarding fast path."""
        heapq.heappush(self._queue, [self.now + delay_ns, NORMAL, next(self._seq), callback, args])

    def every(self, interval_ns: int, callback: Callable[[], Any], start_ns: int | None = None,
              until_ns: int | None = None) -> None:
        """Call ``callback`` every ``interval_ns`` from ``start_ns`` until ``until_ns`` (exclusive)."""
        def tick() -> None:
            callback()
            following = self.now + interval_ns
            if until_ns is None or following < until_ns:
                self.at(following, tick)
        first = self.now + interval_ns if start_ns is None else start_ns
        if until_ns is None or first < until_ns:
            self.at(first, tick)

    def peek(self) -> int | None:
        return self._queue[0][0] if self._queue else None

    def run(self, until_ns: int | None = None) -> None:
        """Run events in order; stop when the queue drains or before the first event after ``until_ns``."""
        queue = self._queue
        pop = heapq.heappop
        while queue:
            if until_ns is not None and queue[0][0] > until_ns:
                self.now = until_ns
                return
            time_ns, _, _, callback, args = pop(queue)
            if callback is None:
                continue
            self.now = time_ns
            self.events_run += 1
            callback(*args)
        if until_ns is not None:
            self.now = max(self.now, until_ns)
