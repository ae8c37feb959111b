"""
Per-SE series over a run, for the report: CPU, new flows and open connections.

The CPU monitor feeds one sample per SE every second; the timeline keeps at
most ``MAX_POINTS`` points per series, so a run of a year costs what a run of
an hour does: each point stands for ``bucket`` seconds (CPU is the bucket's
mean, new flows its sum, open connections its last value).  A series starts
with ``None`` where its SE did not exist yet.
"""

from __future__ import annotations

import math

MAX_POINTS = 3600
KINDS = ("cpu", "new_flows", "active_connections")


class Timeline:
    def __init__(self, duration: float):
        self.bucket = max(1, math.ceil(duration / MAX_POINTS))
        self.t: list[float] = []
        self.series: dict[str, dict[str, list[float | None]]] = {kind: {} for kind in KINDS}
        self._open: int | None = None  # index of the bucket being filled
        self._acc: dict[str, list[float]] = {}  # se -> [cpu sum, samples, new flows, open connections]

    def record(self, t: float, se: str, cpu: float, new_flows: int, active: int) -> None:
        index = max(0, math.ceil(t / self.bucket) - 1)
        if index != self._open:
            self._flush()
            self._open = index
            self.t.append(float((index + 1) * self.bucket))
        acc = self._acc.setdefault(se, [0.0, 0, 0, 0])
        acc[0] += cpu
        acc[1] += 1
        acc[2] += new_flows
        acc[3] = active

    def _flush(self) -> None:
        if self._open is None:
            return
        points = len(self.t)
        for se, (cpu, samples, new_flows, active) in self._acc.items():
            for kind, value in zip(KINDS, (round(cpu / samples, 2), new_flows, active)):
                column = self.series[kind].setdefault(se, [])
                column.extend([None] * (points - 1 - len(column)))
                column.append(value)
        self._acc = {}

    def summary(self) -> dict:
        self._flush()
        self._open = None
        points = len(self.t)
        for columns in self.series.values():
            for column in columns.values():
                column.extend([None] * (points - len(column)))
        return {"bucket_s": self.bucket, "t": self.t, **self.series}
