"""
The short human summary the commands print after a run (summary.json says it all; this says what matters).
"""

from __future__ import annotations


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
            f"  or with the dataplane profile (dataplane wireshark-profile --install): wireshark -C dataplane {capture}",
            f"  one hop per file (for TCP analysis): dataplane split {capture} --by hop",
            f"events: {outputs['events.jsonl']}   summary: {outputs['summary.json']}",
        ]
    return "\n".join(lines)
