"""
The short human summary the commands print after a run (summary.json says it all; this says what matters).
"""

from __future__ import annotations


def format_summary(summary: dict) -> str:
    services = summary.get("virtual_services") or {}
    several = len(services) > 1
    primary = "" if several else f", primary {summary['primary']}"
    lines = [
        f"scenario {summary['scenario']} ({summary['cloud']}, seed {summary['seed']}, "
        f"{summary['duration']:g} s virtual){primary}, return path {summary['return_path']}",
        *_flows("flows", summary["flows"]),
    ]
    for name, vs in services.items() if several else ():
        ports = ", ".join(str(port) for port in vs["ports"])
        vips = " ".join(vs[key] for key in ("vip", "vip6") if key in vs)
        lines += _flows(f"  {name} ({vips} {vs['protocol']} {ports}, primary {vs['primary']}, "
                        f"on {', '.join(vs['service_engines']) or 'no SE'}): flows", vs["flows"], indent="    ")
    resets = summary.get("resets_by_se") or {}
    if resets:
        lines.append("connections reset by SEs (a RST to the client, and to the server if it had one): " + "; ".join(
            f"{se} " + ", ".join(f"{n} {why}" for why, n in reasons.items()) for se, reasons in resets.items()))
    lines.append("new flows by SE: " + ", ".join(f"{se} {n}" for se, n in summary["flows_by_se"].items()))
    for name, vs in services.items():
        families = vs.get("flows_by_family")
        if families:
            label = f"  {name} " if several else "  "
            lines.append(label + "by family (one Maglev table for both): " + ", ".join(
                f"{se} {n} IPv4 + {families['ipv6'][se]} IPv6" for se, n in families["ipv4"].items()))
    phases = summary.get("flows_by_phase", [])
    if len(phases) > 1:
        lines.append("new flows by phase:")
        for phase in phases:
            counts = ", ".join(f"{se} {n}" for se, n in phase["flows"].items()) or "none"
            lines.append(f"  {phase['from']:.1f} s – {phase['until']:.1f} s ({phase['after']}): {counts}")
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


def _flows(label: str, flows: dict, indent: str = "  ") -> list[str]:
    lines = [f"{label}: {flows['total']} total, {flows['completed']} completed, {flows['reset']} reset, "
             f"{flows['failed']} failed, {flows['open']} still open"]
    for outcome in ("failed", "reset"):
        why = flows.get("why", {}).get(outcome)
        if why:
            lines.append(f"{indent}{outcome}: " + "; ".join(f"{n} {reason}" for reason, n in why.items()))
    return lines
