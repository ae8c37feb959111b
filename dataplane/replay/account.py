"""
The replay's per-frame account: ``replay.csv``, one row per input frame, and ``replay-flows.csv``.

Every frame read from the capture gets exactly one row in ``replay.csv``
(``FRAME_COLUMNS``), in input order: what happened to it (``replayed`` as
output frame N of capture.pcapng, ``skipped`` with a reason,
``reassembled`` into a later frame's datagram, ``not_sent`` because its
flow was reset or stalled first, or ``lost``: sent but never seen on a
captured segment), what was repaired on the way (checksums, snap-length
cuts), its flow and the SE that owned the flow.  ``replay-flows.csv``
has one row per replayed flow with its outcome (``FLOW_COLUMNS``).

The output frame number is Wireshark's: the count of frames written to
capture.pcapng, learnt by watching the wire (``observe``, a
``Network.observers`` entry): the first captured frame whose comment names
"recorded frame N" (the router's, or a replay server's) is frame N's.

Rows complete out of order (a frame's fate is known when its output frame
crosses the wire, its SE when the flow reaches a server), so they wait in
input order and are written as soon as the oldest is complete.  Memory
stays bounded: when more than ``MAX_WAITING`` rows wait, the oldest
incomplete ones are set aside (they are frames held by a stalled flow,
already in memory) and merged back into place when the file is finished.
"""

from __future__ import annotations

import csv
import heapq
import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable

from ..clock import NS_PER_S

FRAME_COLUMNS = ("loop", "frame", "time", "action", "output_frame", "output_time", "reason", "detail", "flow",
                 "se")
FLOW_COLUMNS = ("flow", "loop", "recorded", "client", "protocol", "se", "server", "outcome", "reason",
                "client_packets", "server_packets", "first_frame", "last_frame")
ACTIONS = ("replayed", "skipped", "reassembled", "not_sent", "lost")
MAX_WAITING = 65536
_MARK = re.compile(r"recorded frame (\d+)(?: of loop (\d+))?")


def seconds_text(ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds (a float would lose the nanoseconds of an epoch time)."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // NS_PER_S}.{ns % NS_PER_S:09d}"


def mark(number: int, loop: int) -> str:
    """How a comment names input frame ``number`` of 1-based ``loop``; ``observe`` reads it back."""
    return f"recorded frame {number}" if loop == 1 else f"recorded frame {number} of loop {loop}"


class Row:
    """One input frame's line in replay.csv while its fate is not yet written."""

    __slots__ = ("loop", "frame", "time", "action", "output", "output_time", "reason", "detail", "flow", "parts",
                 "filled")

    def __init__(self, loop: int, frame: int, time: int):
        self.loop = loop
        self.frame = frame
        self.time = time
        self.action: str | None = None
        self.output = self.output_time = None
        self.reason = ""
        self.detail = ""
        self.flow: Any = None
        self.parts = 0       # input fragments its datagram was reassembled from (0: not a reassembled datagram)
        self.filled = 0      # bytes the snap length cut, filled with zeros

    def note(self, text: str) -> None:
        self.detail = f"{self.detail}; {text}" if self.detail else text

    @property
    def complete(self) -> bool:
        flow = self.flow
        return self.action is not None and (flow is None or flow.se is not None or flow.accounted)

    def cells(self) -> list:
        flow = self.flow
        return [self.loop, self.frame, seconds_text(self.time), self.action, self.output or "",
                "" if self.output_time is None else seconds_text(self.output_time), self.reason, self.detail,
                flow.number if flow is not None else "", (flow.se or "") if flow is not None else ""]


class OrderedRows:
    """Writes rows in input order although they complete out of order, holding at most ``limit``."""

    def __init__(self, path: Path, columns: Iterable[str], key: Callable[[Any], tuple], limit: int | None = None):
        self.path = path
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(columns)
        self.key = key
        self.limit = MAX_WAITING if limit is None else limit
        self.waiting: deque = deque()
        self.set_aside: list = []

    def add(self, row) -> None:
        self.waiting.append(row)

    def flush(self) -> None:
        waiting, write = self.waiting, self.writer.writerow
        while waiting and waiting[0].complete:
            write(waiting.popleft().cells())
        while len(waiting) > self.limit:
            row = waiting.popleft()
            if row.complete:
                write(row.cells())
            else:
                self.set_aside.append(row)

    def close(self) -> None:
        """Write what waits (every row is complete by now) and merge the rows set aside into place."""
        for row in self.waiting:
            self.writer.writerow(row.cells())
        self.waiting.clear()
        self.handle.close()
        if self.set_aside:
            self._merge()

    def _merge(self) -> None:
        late = sorted(self.set_aside, key=self.key)
        self.set_aside = []
        merged = self.path.with_name(self.path.name + ".merge")
        try:
            with open(self.path, newline="", encoding="utf-8") as main, \
                    open(merged, "w", newline="", encoding="utf-8") as out:
                reader, writer = csv.reader(main), csv.writer(out)
                writer.writerow(next(reader))
                late_rows = ((self.key(row), row.cells()) for row in late)
                main_rows = ((tuple(int(v) for v in cells[:2]), cells) for cells in reader)
                for _, cells in heapq.merge(main_rows, late_rows, key=lambda pair: pair[0]):
                    writer.writerow(cells)
            os.replace(merged, self.path)
        finally:
            if merged.exists():
                merged.unlink()


class FlowRow:
    """A settled flow's line in replay-flows.csv."""

    __slots__ = ("values",)
    complete = True

    def __init__(self, values: list):
        self.values = values

    def cells(self) -> list:
        return self.values


class Account:
    """replay.csv and replay-flows.csv of one replay, written as the replay runs."""

    def __init__(self, frames_path: Path, flows_path: Path):
        self.frames = OrderedRows(frames_path, FRAME_COLUMNS, lambda row: (row.loop, row.frame))
        self.flows = OrderedRows(flows_path, FLOW_COLUMNS, lambda row: (row.values[0],))
        self.sent: dict[tuple[int, int], Row] = {}
        self.actions = dict.fromkeys(ACTIONS, 0)
        self.output_frames = 0
        self.captured: set[str] = set()

    # -- rows --------------------------------------------------------------------------

    def row(self, loop: int, frame: int, time: int) -> Row:
        """A new input frame: its row waits in input order until its fate is known."""
        row = Row(loop, frame, time)
        self.frames.add(row)
        return row

    def settle(self, row: Row, action: str, reason: str = "", detail: str = "") -> None:
        """``row``'s fate is known now (any but ``replayed``, which ``observe`` settles)."""
        row.action = action
        row.reason = reason
        if detail:
            row.note(detail)
        self.actions[action] += 1

    def sending(self, row: Row) -> None:
        """``row``'s frame leaves its end now: the first captured frame that names it is its output."""
        self.sent[(row.loop, row.frame)] = row
        row.flow.unseen += 1

    def observe(self, segment: str, time_ns: int, frame: bytes, comment: str) -> None:
        """``Network.observers`` entry: count captured frames; settle the input frame a comment names."""
        if segment not in self.captured:
            return
        self.output_frames += 1
        if "recorded frame " not in comment:
            return
        found = _MARK.search(comment)
        row = self.sent.pop((int(found.group(2) or 1), int(found.group(1))), None) if found else None
        if row is None:
            return
        row.flow.unseen -= 1
        row.output, row.output_time = self.output_frames, time_ns
        if "[DROPPED" in comment:
            row.note("dropped on the wire by port security")
        self.settle(row, "replayed")

    def flow_settled(self, flow, values: list) -> None:
        """``flow`` is over: frames it sent that never crossed a captured segment are lost."""
        if flow.unseen:
            for key, row in [(k, r) for k, r in self.sent.items() if r.flow is flow]:
                del self.sent[key]
                self.settle(row, "lost", "not_captured", "sent, but never crossed a captured segment")
            flow.unseen = 0
        flow.accounted = True
        self.flows.add(FlowRow(values))

    def flush(self) -> None:
        self.frames.flush()
        self.flows.flush()

    def close(self) -> None:
        for row in list(self.sent.values()):
            self.settle(row, "lost", "not_captured", "sent, but never crossed a captured segment")
        self.sent.clear()
        self.frames.close()
        self.flows.close()

    def abandon(self) -> None:
        """Close the files if a failure left them open (write_outputs then removes them)."""
        for rows in (self.frames, self.flows):
            rows.handle.close()


def skipped_by_reason(path: Path, limit: int = 10_000) -> dict[str, tuple[int, list[tuple[int, int, int]]]]:
    """Read replay.csv back: reason -> (frames skipped, runs of (loop, first, last) frame numbers).

    At most ``limit`` runs are kept per reason (the count stays exact), so a capture of millions of
    scattered skipped frames is listed in bounded memory.
    """
    groups: dict[str, tuple[int, list]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for cells in reader:
            if cells["action"] != "skipped":
                continue
            loop, frame = int(cells["loop"]), int(cells["frame"])
            count, runs = groups.get(cells["reason"], (0, []))
            if runs and runs[-1][0] == loop and runs[-1][2] == frame - 1:
                runs[-1] = (loop, runs[-1][1], frame)
            elif len(runs) < limit:
                runs.append((loop, frame, frame))
            groups[cells["reason"]] = (count + 1, runs)
    return groups
