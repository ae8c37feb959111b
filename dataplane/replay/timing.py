"""
When each recorded frame enters the emulated network, in virtual time: tcpreplay's four paces.

``Pacer.due(record_time, length)`` answers for one input frame, in file
order, the earliest virtual time it may be replayed; the flow then holds
it until the packets it answers have arrived.  The paces are tcpreplay's:

- *recorded* (``--speed X``, tcpreplay ``-x``): recorded gaps divided by X;
- *topspeed* (``-t``): no gaps, every frame as soon as it is read;
- ``--pps N`` (``-p``): input frame k (from 0) at k / N s;
- ``--mbps N`` (``-M``): each frame when the bits of it and of every frame
  before it would have left a link of N Mbit/s (tcpreplay counts the
  captured bytes of every frame it sends).

Like tcpreplay, ``--pps`` and ``--mbps`` give every input frame its slot,
replayed or not: a frame replay skips leaves its slot empty.  Loops follow
one another: each starts where the previous one's last frame was due, and
rate paces count frames across loops as tcpreplay does.
"""

from __future__ import annotations

from ..clock import NS_PER_S
from .options import ReplayOptions


class Pacer:
    """Maps input frames, in file order, to virtual times (integer ns)."""

    def __init__(self, options: ReplayOptions, start_ns: int):
        self.options = options
        self.recorded = not options.topspeed and options.pps is None and options.mbps is None
        self.start = start_ns
        self.frames = 0            # input frames paced so far, every loop
        self.bits = 0              # their captured bits (``--mbps``)
        self.loop_base = start_ns  # virtual time the current loop's first frame is due
        self.loop_first: int | None = None   # that frame's recorded time
        self.last_recorded = 0
        self.last_due = start_ns

    def new_loop(self) -> None:
        """The capture starts over: recorded time restarts from the next frame."""
        self.loop_first = None

    def due(self, recorded_ns: int, length: int) -> int:
        """Virtual time the next input frame (recorded at ``recorded_ns``, ``length`` bytes) is due."""
        opts = self.options
        if self.recorded:
            # Recorded time never runs backwards within a loop (a capture merged out of order is
            # replayed in file order, each frame no earlier than the one before it).
            if self.loop_first is None:
                self.loop_first = self.last_recorded = recorded_ns
                self.loop_base = self.last_due
            if recorded_ns > self.last_recorded:
                self.last_recorded = recorded_ns
            at = self.loop_base + int((self.last_recorded - self.loop_first) / opts.speed)
        elif opts.pps is not None:
            at = self.start + round(self.frames * NS_PER_S / opts.pps)
        elif opts.mbps is not None:
            self.bits += 8 * length
            at = self.start + round(self.bits * 1000 / opts.mbps)   # bits / (mbps * 1e6) s, in ns
        else:   # topspeed
            at = self.last_due
        self.frames += 1
        if at > self.last_due:
            self.last_due = at
        return self.last_due
