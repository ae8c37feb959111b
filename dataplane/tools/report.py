"""
A run's report: ``report.html``, one self-contained page (``dataplane report OUT_DIR``).

This module owns reading a run's outputs for the report (``summary.json``
and ``events.jsonl``, each checked: bad input is a ``ReportError`` naming
the file and key or line) and the page: key numbers, the plots of
``plots`` embedded as SVG data URIs (new flows per SE with the
control-plane events marked, open connections per SE, CPU per SE with the
alert thresholds, drops by reason), the flows of each phase per SE, and the
events, numbered as the marks on the plots.  The page loads nothing from
anywhere (no script, no font, no style sheet): it can be mailed or
archived as one file.  It is written all or nothing.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .. import __version__
from ..files import write_atomically
from . import plots
from .colours import se_colour

REPORT = "report.html"
MAX_EVENT_ROWS = 400
_KINDS = ("cpu", "new_flows", "active_connections")


class ReportError(Exception):
    """A run's outputs cannot be reported on (one line naming the file and what is wrong)."""


@dataclass(frozen=True)
class Run:
    """What the report reads from an output folder."""
    folder: Path
    summary: dict
    events: list[dict]

    @property
    def thresholds(self) -> dict | None:
        """max_cpu_usage / min_cpu_usage: from summary.json, else from the alert events that carry them."""
        found = self.summary.get("cpu_thresholds")
        if isinstance(found, dict) and {"max_cpu_usage", "min_cpu_usage"} <= found.keys():
            return found
        levels = {e["type"]: e.get("threshold") for e in self.events if e.get("type", "").startswith("alert.cpu")}
        if isinstance(levels.get("alert.cpu_high"), (int, float)) and isinstance(levels.get("alert.cpu_low"),
                                                                                  (int, float)):
            return {"max_cpu_usage": levels["alert.cpu_high"], "min_cpu_usage": levels["alert.cpu_low"]}
        return None


# -- reading -----------------------------------------------------------------------------------------------

def load_run(folder: str | os.PathLike) -> Run:
    out = Path(folder)
    if not out.is_dir():
        raise ReportError(f"{out}: no such output folder")
    summary_path, events_path = out / "summary.json", out / "events.jsonl"
    for path in (summary_path, events_path):
        if not path.is_file():
            raise ReportError(f"{path}: missing (run dataplane run, replay or demo into {out} first)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{summary_path}: not JSON: {error}") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: not a JSON object")
    _check_summary(summary_path, summary)
    return Run(out, summary, _read_events(events_path))


def _read_events(path: Path) -> list[dict]:
    events = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                raise ReportError(f"{path} line {number}: not JSON: {error}") from None
            if not isinstance(event, dict) or not isinstance(event.get("t"), (int, float)) \
                    or not isinstance(event.get("type"), str):
                raise ReportError(f'{path} line {number}: an event needs a number "t" and a string "type"')
            events.append(event)
    return events


def _need(path: Path, data: dict, key: str, kind, where: str = ""):
    value = data.get(key)
    if not isinstance(value, kind):
        name = f"{where}.{key}" if where else key
        what = "missing" if key not in data else f"not {'a list' if kind is list else 'an object'}"
        raise ReportError(f'{path}: "{name}" is {what} (written by an older dataplane? run it again)')
    return value


def _check_summary(path: Path, summary: dict) -> None:
    for key in ("flows", "flows_by_se", "drops", "timeline"):
        _need(path, summary, key, dict)
    timeline = summary["timeline"]
    t = _need(path, timeline, "t", list, "timeline")
    if not isinstance(timeline.get("bucket_s"), (int, float)):
        raise ReportError(f'{path}: "timeline.bucket_s" is missing')
    for kind in _KINDS:
        for se, values in _need(path, timeline, kind, dict, "timeline").items():
            if not isinstance(values, list) or len(values) != len(t):
                raise ReportError(f'{path}: "timeline.{kind}.{se}" should have {len(t)} points, like timeline.t')
    phases = summary.get("flows_by_phase", [])
    if not isinstance(phases, list):
        raise ReportError(f'{path}: "flows_by_phase" is not a list')
    for number, phase in enumerate(phases):
        if not isinstance(phase, dict) or not isinstance(phase.get("flows"), dict) or not all(
                isinstance(phase.get(key), (int, float)) for key in ("from", "until")):
            raise ReportError(f'{path}: "flows_by_phase[{number}]" needs from, until and flows')


# -- the page ----------------------------------------------------------------------------------------------

def write_report(folder: str | os.PathLike) -> Path:
    """Write ``folder``/report.html from the run's outputs there; return its path."""
    run = load_run(folder)
    path = run.folder / REPORT
    write_atomically(path, render(run).encode("utf-8"))
    return path


def render(run: Run) -> str:
    s = run.summary
    duration = float(s.get("duration") or (s["timeline"]["t"][-1] if s["timeline"]["t"] else 1.0))
    marks = plots.markers(run.events, duration)
    timeline = s["timeline"]
    sections = [_overview(s)]
    if timeline["t"]:
        sections += [
            _figure(plots.new_flows(timeline, marks, duration), "New flows per SE over time",
                    "Flows each SE took; dashed lines are control-plane events (numbers as in "
                    "the event table)."),
            _figure(plots.active_connections(timeline, marks, duration), "Open connections per SE",
                    "Connections each SE was translating at each sample."),
            _figure(plots.cpu(timeline, run.thresholds, marks, duration), "CPU per SE",
                    "Frames each SE processed over its capacity_pps, sampled each second; the controller "
                    "raises an alert above max_cpu_usage or below min_cpu_usage."
                    + ("" if run.thresholds else " The thresholds are not in summary.json (an older run).")),
        ]
    else:
        sections.append("<section><h2>Over time</h2><p>The run has no samples (it lasted under a second).</p>"
                        "</section>")
    drops = {str(k): v for k, v in s["drops"].items() if isinstance(v, (int, float)) and v}
    sections.append(_figure(plots.drops(drops), "Drops", "Every frame a node or a segment dropped, by reason.")
                    if drops else "<section><h2>Drops</h2><p class=note>No frame was dropped.</p></section>")
    sections += [_phases(s), _events(run.events, marks), _files(run.folder, s)]
    title = f"dataplane report: {s.get('scenario', run.folder.name)}"
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head>"
            f"<body><main><h1>{escape(title)}</h1>{''.join(sections)}"
            f"<footer>Written by dataplane {escape(__version__)} from {escape(str(run.folder))}.</footer>"
            "</main></body></html>\n")


def _figure(svg: str, title: str, caption: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f"<section><h2>{escape(title)}</h2><figure><img src='data:image/svg+xml;base64,{data}' "
            f"alt='{escape(title)}'><figcaption>{escape(caption)}</figcaption></figure></section>")


def _overview(s: dict) -> str:
    flows = s["flows"]
    facts = [("cloud", s.get("cloud")), ("seed", s.get("seed")), ("virtual time", _seconds(s.get("duration"))),
             ("primary at the end", s.get("primary")), ("return path", s.get("return_path")),
             ("SEs serving at the end", ", ".join(s.get("service_engines") or []) or None)]
    cards = [("flows", flows.get("total")), ("completed", flows.get("completed")), ("reset", flows.get("reset")),
             ("failed", flows.get("failed")), ("still open", flows.get("open")),
             ("frames dropped", sum(v for v in s["drops"].values() if isinstance(v, (int, float))))]
    cells = "".join(f"<div class=card><b>{escape(_text(v))}</b><span>{escape(k)}</span></div>" for k, v in cards)
    facts_html = " · ".join(f"{escape(k)} <b>{escape(_text(v))}</b>" for k, v in facts if v not in (None, ""))
    per_se = ", ".join(f"<span class=se style='border-color:{se_colour(se, i)}'>{escape(se)} {escape(_text(n))}</span>"
                       for i, (se, n) in enumerate(s["flows_by_se"].items()))
    segments = ", ".join(f"{escape(k)} {escape(_text(v))}" for k, v in s.get("frames_by_segment", {}).items())
    refusals = "".join(f"<li>at {_seconds(r.get('t'))}: {escape(_text(r.get('action')))}: "
                       f"{escape(_text(r.get('reason')))}</li>" for r in s.get("refusals", []))
    return (f"<section><p class=facts>{facts_html}</p><div class=cards>{cells}</div>"
            f"<p>Flows by SE: {per_se or 'none'}.</p>"
            + (f"<p>Frames captured per segment: {segments}.</p>" if segments else "")
            + (f"<p>Refused operations:</p><ul>{refusals}</ul>" if refusals else "") + "</section>")


def _phases(s: dict) -> str:
    phases = s.get("flows_by_phase") or []
    if not phases:
        return "<section><h2>Flows by phase</h2><p class=note>summary.json has no phases.</p></section>"
    ses = sorted({se for phase in phases for se in phase["flows"]},
                 key=lambda se: list(s["flows_by_se"]).index(se) if se in s["flows_by_se"] else len(s["flows_by_se"]))
    head = "".join(f"<th class=num>{escape(se)}</th>" for se in ses)
    body = "".join(
        f"<tr><td>{phase_label(phase)}</td><td>{escape(str(phase.get('after', '')))}</td>"
        + "".join(f"<td class=num>{escape(_text(phase['flows'].get(se, '')))}</td>" for se in ses)
        + f"<td class=num><b>{sum(v for v in phase['flows'].values() if isinstance(v, (int, float)))}</b></td></tr>"
        for phase in phases)
    return ("<section><h2>Flows by phase</h2><p>New flows each SE took in each phase of the run (a phase "
            f"starts with a change of the VS's SEs).</p><table><thead><tr><th>time</th><th>after</th>{head}"
            f"<th class=num>total</th></tr></thead><tbody>{body}</tbody></table></section>")


def phase_label(phase: dict) -> str:
    return escape(f"{phase['from']:.1f} s – {phase['until']:.1f} s")


def _events(events: list[dict], marks: list[plots.Marker]) -> str:
    if not events:
        return "<section><h2>Control-plane events</h2><p class=note>No event was logged.</p></section>"
    number = {id(e): m.number for m in marks for e in m.events}
    rows = []
    for event in events[:MAX_EVENT_ROWS]:
        details = ", ".join(f"{k} {_text(v)}" for k, v in event.items() if k not in ("t", "type"))
        mark = number.get(id(event), "")
        rows.append(f"<tr><td class=num>{mark}</td><td class=num>{event['t']:.3f}</td>"
                    f"<td><code>{escape(event['type'])}</code></td><td>{escape(details)}</td></tr>")
    more = (f"<p class=note>… and {len(events) - MAX_EVENT_ROWS} more events in events.jsonl.</p>"
            if len(events) > MAX_EVENT_ROWS else "")
    return ("<section><h2>Control-plane events</h2><p>From events.jsonl; the first column is the number of the "
            "mark on the plots (events less than about 1 % of the run apart share a mark).</p><table><thead><tr>"
            "<th class=num>mark</th><th class=num>t (s)</th><th>event</th><th>details</th></tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table>{more}</section>")


def _files(folder: Path, s: dict) -> str:
    capture = folder / "capture.pcapng"
    return ("<section><h2>Files</h2><ul><li><a href='capture.pcapng'>capture.pcapng</a>: open it with the "
            "Wireshark profile (<code>dataplane wireshark-profile --install</code>, then "
            f"<code>wireshark -C dataplane {escape(str(capture))}</code>); one hop at a time: "
            f"<code>dataplane split {escape(str(capture))} --by hop</code></li>"
            "<li><a href='events.jsonl'>events.jsonl</a>: one control-plane event per line</li>"
            "<li><a href='summary.json'>summary.json</a>: everything counted</li></ul></section>")


def _text(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _seconds(value) -> str:
    return f"{value:g} s" if isinstance(value, (int, float)) else "–"


CSS = """
body{margin:0;background:#f6f7f9;color:#1d1f23;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 40px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:4px 0 6px}h2{font-size:19px;margin:30px 0 8px;border-bottom:1px solid #e3e5e8;padding-bottom:4px}
.facts{color:#444}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #e3e5e8;border-radius:8px;padding:8px 14px;min-width:92px;background:#fafbfc}
.card b{display:block;font-size:22px}.card span{color:#555;font-size:13px}
.se{border-left:4px solid;padding-left:5px;white-space:nowrap}
figure{margin:0}figure img{width:100%;height:auto;display:block}
figcaption{color:#555;font-size:13px;margin-top:4px}.note{color:#555}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{padding:4px 8px;border-bottom:1px solid #eceef1;
text-align:left;vertical-align:top}th{background:#f2f4f7}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}code{font-size:13px}
footer{margin-top:36px;color:#777;font-size:12px}
"""
