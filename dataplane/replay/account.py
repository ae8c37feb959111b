"""
The replay's per-frame account: ``replay.csv``, one row per input frame, and ``replay-flows.csv``.

Every frame read from the capture gets exactly one row in ``replay.csv``
(``FRAME_COLUMNS``), in input order: what happened to it (``replayed`` as
output frame N of capture.pcapng, ``skipped`` with a reason,
``reassembled`` into a later frame's datagram, ``not_sent`` because its
flow was reset or stalled first, or ``lost``: sent but never seen on a
captured segment), what was repaired on the way (checksums, snap-length
cuts), its flow, the SE that owned the flow and the virtual service it
was replayed to (``vs``, last: the columns before it keep their order).  ``replay-flows.csv``
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

import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable


#: Times are integer nanoseconds: exact, and a tenth of the cost of decimal seconds to write per frame.
FRAME_COLUMNS = ("loop", "frame", "time_ns", "action", "output_frame", "output_time_ns", "reason", "detail",
                 "flow", "se", "vs")
FLOW_COLUMNS = ("flow", "loop", "recorded", "client", "protocol", "se", "server", "outcome", "reason",
                "client_packets", "server_packets", "first_frame", "last_frame", "vs")
ACTIONS = ("replayed", "skipped", "reassembled", "not_sent", "lost")
MAX_WAITING = 65536
_MARK = re.compile(r"recorded frame (\d+)(?: of loop (\d+))?")


def mark(number: int, loop: int) -> str:
    """How a comment names input frame ``number`` of 1-based ``loop``; ``observe`` reads it back."""
    return f"recorded frame {number}" if loop == 1 else f"recorded frame {number} of loop {loop}"


class Row:
    """One input frame's line in replay.csv while its fate is not yet written.

    No ``__slots__``: the fields most frames never set (an output, a reason, repairs) are read from
    the class defaults, so a row costs three assignments to make.
    """

    action: str | None = None
    output: int | None = None
    output_time: int | None = None
    reason = ""
    detail = ""
    flow: Any = None
    parts = 0       # input fragments its datagram was reassembled from (0: not a reassembled datagram)
    filled = 0      # bytes the snap length cut, filled with zeros
    entered = ""    # how a packet over the MTU entered the network (``endpoints.pieces_of``), else ""

    def __init__(self, loop: int, frame: int, time: int):
        self.loop = loop
        self.frame = frame
        self.time = time

    def note(self, text: str) -> None:
        self.detail = f"{self.detail}; {text}" if self.detail else text

    @property
    def complete(self) -> bool:
        flow = self.flow
        return self.action is not None and (flow is None or flow.se is not None or flow.accounted)

    def line(self) -> str:
        """The row as a line of replay.csv (only ``detail`` can hold a comma: ``_csv_field`` quotes it)."""
        flow = self.flow
        output_time = self.output_time
        flow_cells = ",,," if flow is None else f",{flow.number},{flow.se or ''},{flow.vs}"
        return (f"{self.loop},{self.frame},{self.time},{self.action},{self.output or ''},"
                f"{'' if output_time is None else output_time},{self.reason},"
                f"{_csv_field(self.detail) if self.detail else ''}{flow_cells}\n")


def _csv_field(value) -> str:
    """``value`` as one CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break."""
    if not isinstance(value, str):
        return str(value)
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class OrderedRows:
    """Writes rows in input order although they complete out of order, holding at most ``limit``.

    Rows are written a batch at a time (``BATCH``): one check per row added, one loop per batch.
    """

    BATCH = 64

    def __init__(self, path: Path, columns: Iterable[str], key: Callable[[Any], tuple], limit: int | None = None):
        self.path = path
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.handle.write(",".join(columns) + "\n")
        self.key = key
        self.limit = MAX_WAITING if limit is None else limit
        self.waiting: deque = deque()
        self.set_aside: list = []

    def add(self, row) -> None:
        self.waiting.append(row)

    def flush(self) -> None:
        waiting = self.waiting
        write = self.handle.write
        lines = []
        while waiting:
            row = waiting[0]
            # Row.complete, inlined for the common row (a flow row is always complete).
            flow = row.flow
            if row.action is None or not (flow is None or flow.se is not None or flow.accounted):
                break
            lines.append(waiting.popleft().line())
        write("".join(lines))   # one write a batch: the text layer's cost is per call
        while len(waiting) > self.limit:
            row = waiting.popleft()
            if row.complete:
                write(row.line())
            else:
                self.set_aside.append(row)

    def close(self) -> None:
        """Write what waits (every row is complete by now) and merge the rows set aside into place."""
        for row in self.waiting:
            self.handle.write(row.line())
        self.waiting.clear()
        self.handle.close()
        if self.set_aside:
            self._merge()

    def _merge(self) -> None:
        import heapq  # only a replay that set rows aside merges
        late = sorted(self.set_aside, key=self.key)
        self.set_aside = []
        merged = self.path.with_name(self.path.name + ".merge")
        try:
            with open(self.path, newline="", encoding="utf-8") as main, \
                    open(merged, "w", newline="", encoding="utf-8") as out:
                out.write(main.readline())
                # Every line of a row set aside comes from line(), and the key columns come first and
                # are plain integers: merging needs no CSV parsing.
                late_rows = ((self.key(row), row.line()) for row in late)
                main_rows = ((tuple(int(v) for v in line.split(",", len(self.key(late[0])))[:-1]), line)
                             for line in main)
                out.writelines(line for _, line in heapq.merge(main_rows, late_rows, key=lambda pair: pair[0]))
            os.replace(merged, self.path)
        finally:
            if merged.exists():
                merged.unlink()


class FlowRow:
    """A settled flow's line in replay-flows.csv."""

    __slots__ = ("values",)
    complete = True
    action = "settled"
    flow = None

    def __init__(self, values: list):
        self.values = values

    def line(self) -> str:
        return ",".join(_csv_field(value) for value in self.values) + "\n"


class Account:
    """replay.csv and replay-flows.csv of one replay, written as the replay runs."""

    def __init__(self, frames_path: Path, flows_path: Path):
        self.frames = OrderedRows(frames_path, FRAME_COLUMNS, lambda row: (row.loop, row.frame))
        self.flows = OrderedRows(flows_path, FLOW_COLUMNS, lambda row: (row.values[0],))
        self.sent: dict[tuple[int, int], Row] = {}
        self.actions = dict.fromkeys(ACTIONS, 0)
        #: Segments written to capture.pcapng (set by the replayer), and how many frames crossed them so far.
        self.output_frames = 0
        self.waiting = self.frames.waiting

    # -- rows --------------------------------------------------------------------------

    def row(self, loop: int, frame: int, time: int) -> Row:
        """A new input frame: its row waits in input order until its fate is known (the replayer
        does the same inline, appending to ``waiting``)."""
        row = Row(loop, frame, time)
        self.waiting.append(row)
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

    def observe(self, segment: str, interface: int, time_ns: int, frame: bytes, comment: str) -> None:
        """``Network.observers`` entry: counts the captured frames (Wireshark's numbers); the first
        whose comment names a sent input frame is that frame's output."""
        if interface < 0:  # not captured: the access link
            return
        self.output_frames += 1
        if "recorded frame " not in comment:
            return
        found = _MARK.search(comment)
        row = self.sent.pop((int(found.group(2) or 1), int(found.group(1))), None) if found else None
        if row is None:
            return
        flow = row.flow
        flow.unseen -= 1
        row.output, row.output_time = self.output_frames, time_ns
        dropped = "[DROPPED" in comment
        if dropped:   # "[DROPPED: why]" or "[DROPPED by port security: why]"
            at = comment.index("[DROPPED")
            row.note("dropped on the wire" + comment[at + 8:comment.find("]", at)].replace(": ", " (", 1) + ")")
        row.action = "replayed"
        self.actions["replayed"] += 1
        if flow.watches_capture:
            flow.captured(row, dropped)

    def flow_settled(self, flow, values: list) -> None:
        """``flow`` is over: frames it sent that never crossed a captured segment are lost."""
        if flow.unseen:
            for key, row in [(k, r) for k, r in self.sent.items() if r.flow is flow]:
                del self.sent[key]
                self.settle(row, "lost", "not_captured", "sent, but never crossed a captured segment")
            flow.unseen = 0
        flow.accounted = True
        self.flows.add(FlowRow(values))
        self.flows.flush()

    def flush(self, now: bool = False) -> None:
        """Write the rows that are complete, once a batch of them waits (or ``now``)."""
        if now or len(self.frames.waiting) >= OrderedRows.BATCH:
            self.frames.flush()

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
    import csv  # only --list-skipped reads the account back
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
