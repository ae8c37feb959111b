"""
The report's plots, drawn with matplotlib and returned as SVG text.

Each function takes plain data (lists and dicts out of summary.json and
events.jsonl) and returns one self-contained SVG (text as paths, no
external font or file).  Figures are made with ``matplotlib.figure.Figure``,
never pyplot, so no global state and no display are involved; the SVG's
date is left out and its ids are salted with a constant, so the same run
gives the same report.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .colours import DROP, se_colour

WIDTH, HEIGHT = 10.5, 3.9  # inches
MARKER_COLOUR = "#444444"
STYLE = {"svg.hashsalt": "dataplane", "svg.fonttype": "path", "font.size": 9.5, "axes.titlesize": 11.5,
         "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "axes.grid.axis": "y", "grid.color": "#e4e4e4", "grid.linewidth": 0.7}


@dataclass(frozen=True)
class Marker:
    """One numbered mark on the time axis: one control-plane event, or several close together."""
    number: int
    t: float
    events: tuple[dict, ...]

    @property
    def label(self) -> str:
        return str(self.number)


def markers(events: list[dict], duration: float, most: int = 40) -> list[Marker]:
    """Number the events in time order, one mark for events closer than ~1 % of the run.

    The gap grows until there are at most ``most`` marks, so labels never pile up.
    """
    ordered = sorted((e for e in events if isinstance(e.get("t"), (int, float))), key=lambda e: e["t"])
    gap = max(duration, 1.0) / 60
    while True:
        groups: list[list[dict]] = []
        for event in ordered:
            if groups and event["t"] - groups[-1][0]["t"] <= gap:
                groups[-1].append(event)
            else:
                groups.append([event])
        if len(groups) <= most:
            return [Marker(i, g[0]["t"], tuple(g)) for i, g in enumerate(groups, 1)]
        gap *= 2


def _styled(draw):
    """Run a whole drawing, savefig included (it reads the svg.* settings), in the report's style."""
    @functools.wraps(draw)
    def styled(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return styled


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def _figure(title: str, ylabel: str):
    fig = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", pad=30)  # room for two rows of event numbers above the plot
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel(ylabel)
    return fig, ax


def _mark(ax, marks: list[Marker], duration: float, labelled: bool = True) -> None:
    """Dashed vertical lines at the events; numbered boxes above the plot area (they match the table).

    A number that would touch the previous one goes up a row.
    """
    last_x = [-math.inf, -math.inf]  # per row, the last label's time
    room = max(duration, 1e-9) * 0.028
    for mark in marks:
        ax.axvline(mark.t, color=MARKER_COLOUR, linestyle=(0, (4, 3)), linewidth=0.8, alpha=0.7, zorder=1)
        if labelled:
            row = 0 if mark.t - last_x[0] >= room else 1 if mark.t - last_x[1] >= room else 0
            last_x[row] = mark.t
            ax.annotate(mark.label, xy=(mark.t, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2 + 13 * row),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7.5, color="#222222",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": MARKER_COLOUR, "lw": 0.6},
                        annotation_clip=False)
    ax.set_xlim(0, max(duration, 1e-9))


def _series(values: list) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _per_se(ax, t: list[float], series: dict[str, list], step: bool) -> None:
    """One line per SE; ``step``: each value holds from its own time to the next one's."""
    for index, (se, values) in enumerate(series.items()):
        ys = _series(values)
        colour = se_colour(se, fallback=index)
        if step:
            ax.step(t, ys, where="post", color=colour, linewidth=1.3, label=se)
        else:
            ax.plot(t, ys, color=colour, linewidth=1.3, label=se)


def _legend(ax, title: str = "SE", **extra) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False,
                  **extra)


def rebin(t: list[float], bucket: float, series: dict[str, list], points: int = 45):
    """New flows per second, averaged over bins of a round width, so about ``points`` bins span the run.

    Per-second counts of a few flows are mostly noise; the mean over a few seconds shows the share.
    Returns the bins' start times (and the end of the last), the width and the rates, for a step plot.
    """
    factor = 1
    while len(t) / factor > points:
        factor = next(f for f in (2, 5, 10, 20, 50, 100, 200, 500, 1000) if f > factor) if factor < 1000 \
            else factor * 10
    width = bucket * factor
    starts = [t[i] - bucket for i in range(0, len(t), factor)]
    binned = {}
    for se, values in series.items():
        column = []
        for i in range(0, len(values), factor):
            chunk = [v for v in values[i:i + factor] if v is not None]
            column.append(sum(chunk) / (len(values[i:i + factor]) * bucket) if chunk else None)
        binned[se] = column + column[-1:]  # repeated at the end, so the last bin gets its width
    return starts + [t[-1]], width, binned


@_styled
def new_flows(timeline: dict, marks: list[Marker], duration: float) -> str:
    t, width, rates = rebin(timeline["t"], timeline["bucket_s"], timeline["new_flows"])
    fig, ax = _figure("New flows per SE, with the control-plane events (numbered as in the table below)",
                      "new flows per second" + (f"\n(mean over {width:g} s)" if width != 1 else ""))
    _per_se(ax, t, rates, step=True)
    _mark(ax, marks, duration)
    ax.set_ylim(bottom=0)
    _legend(ax)
    return _svg(fig)


@_styled
def active_connections(timeline: dict, marks: list[Marker], duration: float) -> str:
    fig, ax = _figure("Open connections per SE (the SE's NAT table at each sample)", "open connections")
    _per_se(ax, timeline["t"], timeline["active_connections"], step=False)
    _mark(ax, marks, duration)
    ax.set_ylim(bottom=0)
    _legend(ax)
    return _svg(fig)


@_styled
def cpu(timeline: dict, thresholds: dict | None, marks: list[Marker], duration: float) -> str:
    fig, ax = _figure("CPU per SE, with the autoscale alert thresholds", "CPU utilisation (%)")
    _per_se(ax, timeline["t"], timeline["cpu"], step=False)
    _mark(ax, marks, duration)
    peak = max((v for values in timeline["cpu"].values() for v in values if v is not None), default=0.0)
    top = max(peak, thresholds["max_cpu_usage"] if thresholds else 0.0)
    ax.set_ylim(0, max(top * 1.12, 1.0))
    if thresholds:
        for key, text, colour in (("max_cpu_usage", "alert.cpu_high above", DROP),
                                  ("min_cpu_usage", "alert.cpu_low below", "#1f4e9c")):
            level = thresholds[key]
            ax.axhline(level, color=colour, linewidth=1.1, linestyle=(0, (6, 2)), zorder=2)
            ax.annotate(f"{key} {level:g} %: {text}", xy=(1.0, level), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8.5,
                        color=colour)
        if 0 < peak < thresholds["min_cpu_usage"] / 5:
            _zoom(ax, timeline, peak)
    _legend(ax)
    return _svg(fig)


def _zoom(ax, timeline: dict, peak: float) -> None:
    """The SEs' lines hug zero next to the thresholds: show them again, magnified, in an inset."""
    inset = ax.inset_axes([0.07, 0.4, 0.5, 0.32])
    for index, (se, values) in enumerate(timeline["cpu"].items()):
        inset.plot(timeline["t"], _series(values), color=se_colour(se, fallback=index), linewidth=1.0)
    inset.set_xlim(ax.get_xlim())
    inset.set_ylim(0, peak * 1.15)
    inset.set_title(f"the same, magnified: 0 to {peak * 1.15:.2g} %", fontsize=8, loc="left")
    inset.tick_params(labelsize=7)
    inset.grid(True, color="#eeeeee")
    inset.set_facecolor("#fbfbfb")


@_styled
def drops(counts: dict[str, int]) -> str:
    reasons = sorted(counts, key=lambda reason: (-counts[reason], reason))
    height = min(0.42 * len(reasons) + 1.2, 9)
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False, axis="y")
    bars = ax.barh(reasons[::-1], [counts[r] for r in reasons[::-1]], color=DROP, height=0.55)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # frames come whole
    ax.bar_label(bars, padding=3, fontsize=8.5)
    ax.set_title("Frames dropped, by reason", loc="left")
    ax.set_xlabel("frames dropped")
    ax.margins(x=0.08)
    return _svg(fig)
