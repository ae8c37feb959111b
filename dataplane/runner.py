"""
Run a scenario into an output folder, all or nothing.

``run_scenario`` writes ``capture.pcapng``, ``events.jsonl`` and
``summary.json`` under temporary names in the output folder and renames
them only when the run has finished, so an interrupted or failed run never
leaves a half-written file behind a good name.  ``format_summary`` renders
the short human summary the CLI prints.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, Callable

from . import __version__
from .network import Network

OUTPUTS = ("capture.pcapng", "events.jsonl", "summary.json")


def run_scenario(scenario, out_dir: str | os.PathLike) -> dict:
    """Run ``scenario`` and write its three output files into ``out_dir``; return the summary."""
    def run(capture: BinaryIO, on_event: Callable[[dict], None], stack: ExitStack) -> dict:
        net = Network(scenario, capture, on_event=on_event, application=f"dataplane {__version__}")
        summary = net.run()
        net.capture.close()
        return summary
    return write_outputs(out_dir, run)


def write_outputs(out_dir: str | os.PathLike,
                  run: Callable[[BinaryIO, Callable[[dict], None], ExitStack], dict]) -> dict:
    """Call ``run(capture_file, on_event, stack)`` with the outputs open under temporary names.

    Only when ``run`` returns are the files renamed into place (with the summary it
    returned); if it raises, every temporary file is removed and no good name is touched.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    temps = {name: temp_output_path(out, name) for name in OUTPUTS}
    try:
        with ExitStack() as stack:
            capture = stack.enter_context(open(temps["capture.pcapng"], "wb", buffering=1 << 20))
            events = stack.enter_context(open(temps["events.jsonl"], "w", encoding="utf-8"))
            summary = run(capture, lambda event: events.write(json.dumps(event) + "\n"), stack)
            summary["outputs"] = {name: str(out / name) for name in OUTPUTS}
        with open(temps["summary.json"], "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
        for name, temp in temps.items():
            os.replace(temp, out / name)
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()
    return summary


def temp_output_path(out: Path, name: str) -> Path:
    """Return a new empty file in ``out`` to write ``name`` into before renaming it."""
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out)
    os.close(handle)
    os.chmod(path, 0o644)  # mkstemp's 0600 would hide the results from other users
    return Path(path)


def format_summary(summary: dict) -> str:
    flows = summary["flows"]
    lines = [
        f"scenario {summary['scenario']} ({summary['cloud']}, seed {summary['seed']}, "
        f"{summary['duration']:g} s virtual), primary {summary['primary']}, return path {summary['return_path']}",
        f"flows: {flows['total']} total, {flows['completed']} completed, {flows['reset']} reset, "
        f"{flows['failed']} failed, {flows['open']} still open",
        "flows by SE: " + ", ".join(f"{se} {n}" for se, n in summary["flows_by_se"].items()),
    ]
    phases = summary.get("flows_by_phase", {})
    if len(phases) > 1:
        lines.append("flows by phase:")
        for phase, counts in phases.items():
            lines.append(f"  {phase}: " + (", ".join(f"{se} {n}" for se, n in counts.items()) or "none"))
    lines.append("frames by segment: " + ", ".join(f"{s} {n}" for s, n in summary["frames_by_segment"].items()))
    drops = summary["drops"]
    lines.append("drops: " + (", ".join(f"{reason} {n}" for reason, n in drops.items()) if drops else "none"))
    for refusal in summary.get("refusals", []):
        lines.append(f"refused at {refusal['t']:g} s: {refusal['action']}: {refusal['reason']}")
    outputs = summary.get("outputs")
    if outputs:
        capture = outputs["capture.pcapng"]
        lines += [
            f"capture: {capture}",
            f"  open it: wireshark {capture}   (View > Packet Comments, or add a frame.comment column;",
            "  Decode As udp.port 1550 -> VXLAN for the SE-to-SE tunnel)",
            f"  or: tshark -r {capture} -d udp.port==1550,vxlan -T fields -e frame.interface_name -e frame.comment",
            f"events: {outputs['events.jsonl']}   summary: {outputs['summary.json']}",
        ]
    return "\n".join(lines)
