"""
``dataplane replay``: the command, its output folder and its summary text.

This module owns the replay command's contract: argument parsing into
``ReplayOptions`` (every value checked against its documented range; a bad
one is ``UsageError``, one line and exit 2), the progress bar (tqdm on a
terminal, never with ``--quiet`` or when stderr is not a TTY), the outputs
(``capture.pcapng``, ``events.jsonl``, ``summary.json``, ``replay.csv``
and ``replay-flows.csv``, all renamed into place only when the run has
finished), and the lines printed after the run, with ``--list-skipped``
the skipped frames by reason.  A capture that breaks part-way is replayed
up to the break, its outputs are written, and the command then exits 2
naming the frame and byte offset.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, EXIT_OK, UsageError
from . import report


def register(commands) -> None:
    """Add the ``replay`` subcommand to the CLI's subparsers."""
    from ..replay.options import RANGES

    def bounds(option: str) -> str:
        low, high, _, _ = RANGES[option]
        return f"{low:g} to {high:g}"

    p = commands.add_parser("replay", help="replay a recorded capture (pcap/pcapng) through a scenario",
                            description="Replay the virtual services' flows of a recorded capture through a "
                                        "scenario's network: client packets enter behind the router with the "
                                        "server address mapped to their VS's VIP, server packets leave the pool server the "
                                        "SE chose, both in recorded order and timing.  Writes capture.pcapng, "
                                        "events.jsonl, summary.json and the per-frame account replay.csv "
                                        "(replay-flows.csv per flow).")
    p.add_argument("capture", type=Path, help="pcap or pcapng file, optionally gzip-compressed (Ethernet, "
                                              "802.1Q, Linux cooked v1/v2, raw IPv4/IPv6, BSD loopback)")
    p.add_argument("--scenario", type=Path, required=True, help="scenario TOML file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out/replay-<capture name>)")
    p.add_argument("--match", action="append", default=[], metavar="client=ADDR[/LEN][:PORT],server=...",
                   help="replay the flows matching client and/or server address and port (repeatable, ORed); "
                        "default: flows whose server port is a port a virtual service listens on")
    p.add_argument("--port-map", action="append", default=[], metavar="FROM[:TO]",
                   help="also replay flows to server port FROM, as flows to port TO, a port a virtual service "
                        "listens on (repeatable; TO may be left out when the scenario listens on one port only)")
    p.add_argument("--map", action="append", default=[], metavar="SERVER_IP=VS_NAME", dest="vs_map",
                   help="replay the selected flows to the recorded server address SERVER_IP on virtual service "
                        "VS_NAME (repeatable); default: the one VS of the flow's protocol and IP family that "
                        "listens on its server port")
    p.add_argument("--interface", default=None, metavar="N|NAME",
                   help="replay only this pcapng interface (id or name); default: every interface of a "
                        "link type replay decodes")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--speed", default=None, metavar="X",
                        help=f"multiply the recorded pace by X ({bounds('--speed')})")
    timing.add_argument("--topspeed", action="store_true",
                        help="no recorded gaps: each packet waits only for the packets it answers")
    timing.add_argument("--pps", default=None, metavar="N",
                        help=f"input frame k enters at k/N s, replayed or not ({bounds('--pps')}; as tcpreplay -p)")
    timing.add_argument("--mbps", default=None, metavar="N",
                        help=f"frames enter at N Mbit/s of their captured bytes ({bounds('--mbps')}; "
                             "as tcpreplay -M)")
    p.add_argument("--loop", default=None, metavar="N",
                   help=f"replay the capture N times ({bounds('--loop')}); loop k moves client addresses' "
                        "first octet by k")
    p.add_argument("--limit", default=None, metavar="N",
                   help=f"stop after N input packets ({bounds('--limit')})")
    p.add_argument("--timeline-from", default="first-packet", choices=("first-packet", "start"),
                   help="[[events]] 'at' counts from the first replayed packet (default) or from the run's start")
    checksums = p.add_mutually_exclusive_group()
    checksums.add_argument("--keep-checksums", action="store_true",
                           help="replay wrong IPv4/IPv6/TCP/UDP checksums as recorded (the SE drops those "
                                "frames); default: verify every checksum and fix a wrong one (checksum offload)")
    checksums.add_argument("--fix-checksums", action="store_true",
                           help="the default since checksums are always verified; accepted for compatibility")
    p.add_argument("--skip-truncated-frames", action="store_true",
                   help="skip frames cut by the capture's snap length (default: fill the cut payload with zeros)")
    p.add_argument("--allow-truncated", action="store_true", help="accept a capture whose last record is cut")
    p.add_argument("--list-skipped", action="store_true",
                   help="print the skipped input frames grouped by reason (replay.csv has every frame)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    report.add_flag(p)
    p.set_defaults(handler=cmd_replay)


def _options(args, scenario):
    from ..replay import options as ropts

    try:
        numbers = {name: ropts.parse_number(f"--{name}", value) for name, value in
                   (("speed", args.speed), ("pps", args.pps), ("mbps", args.mbps), ("loop", args.loop),
                    ("limit", args.limit)) if value is not None}
        matches = tuple(ropts.parse_match(text) for text in args.match)
        ranges = [ports for vs in scenario.virtual_services for ports in vs.ports]
        port_map = ropts.parse_port_maps(args.port_map, ranges)
        vs_map = ropts.parse_vs_map(args.vs_map, [vs.name for vs in scenario.virtual_services])
        interface = None if args.interface is None else ropts.parse_interface(args.interface)
        return ropts.ReplayOptions(topspeed=args.topspeed, allow_truncated=args.allow_truncated,
                                   keep_checksums=args.keep_checksums,
                                   skip_truncated_frames=args.skip_truncated_frames, port_map=port_map, vs_map=vs_map,
                                   matches=matches, interface=interface, timeline_from=args.timeline_from,
                                   **numbers)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    from .. import scenario as scenario_mod
    from ..replay import run_replay
    from ..replay.input import ReplayError, check_capture

    try:
        scenario = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as error:
        raise UsageError(str(error)) from None
    options = _options(args, scenario)
    if not args.capture.exists():
        raise UsageError(f"{args.capture}: no such capture file")
    try:
        check_capture(args.capture, options.interface)  # also refuses a FIFO or a device, without reading it
    except ReplayError as error:
        raise UsageError(str(error)) from None
    out = args.out or Path("out") / f"replay-{args.capture.stem}"
    show = not args.quiet and sys.stderr.isatty()
    try:
        with contextlib.ExitStack() as stack:
            on_progress = None
            if show:
                bar = stack.enter_context(_progress_bar(args.capture, options.loop))
                on_progress = _updater(bar, args.capture)
            summary = run_replay(scenario, args.capture, out, options, on_progress=on_progress)
    except scenario_mod.ScenarioError as error:  # what only building the network finds (two IPv6 hosts, one MAC)
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{out}: cannot write output: {error.strerror or error}") from None
    print(format_replay(summary))
    if args.list_skipped:
        print(format_skipped(Path(summary["outputs"]["replay.csv"])))
    report.after_run(args, out)
    error = summary["replay"]["input_error"]
    if error:
        print(f"dataplane: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _compressed(capture: Path) -> bool:
    with open(capture, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _progress_bar(capture, loops: int):
    from tqdm import tqdm

    # A gzip capture's offsets count uncompressed bytes, whose total is unknown: count without a bar.
    total = None if _compressed(capture) else os.path.getsize(capture) * loops
    # A pty that reports its size as 0x0 makes tqdm draw nothing (the bar sits "below" row 0):
    # shutil falls back to 80x24 there.
    columns, rows = shutil.get_terminal_size()
    return tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr,
                leave=False, ncols=columns, nrows=rows)


def _updater(bar, capture):
    size = None if _compressed(capture) else os.path.getsize(capture)
    state = {"loop_base": 0, "last": 0}

    def update(offset: int) -> None:
        if offset < 0:        # input over
            if bar.total is not None:
                bar.update(bar.total - bar.n)
            return
        if offset < state["last"]:  # a new loop started from the file's beginning
            state["loop_base"] += size if size is not None else state["last"]
        state["last"] = offset
        bar.update(state["loop_base"] + offset - bar.n)
    return update


def format_replay(summary: dict) -> str:
    from ..replay.input import SKIP_REASONS
    from .summary import format_summary

    replay = summary["replay"]
    flows = replay["flows"]
    lines = [format_summary(summary),
             f"replay of {replay['capture']} ({replay['timing']}, {replay['loops']} loop(s)"
             + (f", interface {replay['interface']}" if replay["interface"] is not None else "")
             + (", stopped at --limit" if replay["stopped_at_limit"] else "") + "): "
             f"{replay['input_packets']} input packets, {replay['replayed_packets']} replayed, "
             f"{replay['skipped_packets']} skipped"
             + (f", {replay['reassembled_fragments']} reassembled into later frames"
                if replay["reassembled_fragments"] else ""),
             f"replayed flows: {flows['total']} total, {flows['completed']} completed, "
             f"{flows['open_at_end']} open at end of capture, {flows['reset']} reset, {flows['stalled']} stalled"]
    by_vs = replay.get("flows_by_vs", {})
    if len(by_vs) > 1:
        lines.append("replayed flows by virtual service: " + ", ".join(f"{name} {n}" for name, n in by_vs.items()))
    lines += _proxy_lines(replay["proxy"])
    for reason, count in replay["skipped"].items():
        lines.append(f"  skipped {count}: {SKIP_REASONS.get(reason, reason)} [{reason}]")
    packets = replay["packets"]
    for key in sorted(k for k in packets if k.startswith("not_sent") or k == "lost_in_network"):
        lines.append(f"  {key.replace('_', ' ')}: {packets[key]} packets")
    lines += _repairs(replay)
    if replay["accepted_truncation"]:
        lines.append(f"accepted truncated capture: {replay['accepted_truncation']}")
    timeline = replay["timeline"]
    for event in timeline["events_after_last_packet"]:
        lines.append(f"warning: event {event['action']} at {event['at']:g} s (t={event['t']:g} s) falls after the "
                     "last replayed packet" + (f" (t={replay['last_replayed_at']:g} s)"
                                               if replay["last_replayed_at"] is not None else ": none was replayed"))
    outputs = summary.get("outputs", {})
    if "replay.csv" in outputs:
        lines.append(f"account: {outputs['replay.csv']} (every input frame), {outputs['replay-flows.csv']} "
                     f"(every replayed flow); events counted from "
                     + ("the first replayed packet" if timeline["from"] == "first-packet" else "the run's start")
                     + f" (t={timeline['origin_at']:g} s)")
    return "\n".join(lines)


def _proxy_lines(proxy: dict) -> list[str]:
    """What replay into the TCP proxy's live connections translated and could not replay as recorded."""
    if not proxy["flows"]:
        return []
    flows = f"{proxy['flows']} flow" + ("s" if proxy["flows"] != 1 else "")
    lines = [f"tcp-proxy: {flows} replayed into the SEs' live connections, "
             f"{proxy['acks_translated']} ACK numbers translated to the SEs' sequence numbers"]
    withheld = {reason: n for reason, n in proxy["withheld"].items() if n}
    unfaithful = [f"{n} {reason.replace('_', ' ')}s withheld" for reason, n in withheld.items()]
    if proxy["acks_added"]:
        unfaithful.append(f"{proxy['acks_added']} ACKs added where the recording acknowledged bytes the SE "
                          "had not sent yet")
    if proxy["resent_by_replay"]:
        unfaithful.append(f"{proxy['resent_by_replay']} segments the live network lost sent again by replay")
    if proxy["retransmissions_sent"]:
        unfaithful.append(f"{proxy['retransmissions_sent']} recorded retransmissions sent for bytes lost live")
    if proxy["syn_acks_added"]:
        unfaithful.append(f"{proxy['syn_acks_added']} SYN-ACKs added where the recording has none")
    if proxy["windows_scaled"]:
        unfaithful.append(f"{proxy['windows_scaled']} scaled windows sent in bytes "
                          f"({proxy['windows_capped']} capped at 65535)")
    if proxy["options_removed"]:
        unfaithful.append("options the SE does not negotiate removed: "
                          + ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in proxy["options_removed"].items()))
    if unfaithful:
        lines.append("  not replayed as recorded: " + "; ".join(unfaithful))
    return lines


def _repairs(replay: dict) -> list[str]:
    lines = []
    for label, counts in (("checksums fixed", replay["checksums_fixed"]),
                          ("wrong checksums kept (--keep-checksums)", replay["checksums_kept"])):
        if any(counts.values()):
            lines.append(f"{label}: " + ", ".join(f"{proto} {n}" for proto, n in counts.items() if n))
    if replay["snaplen_filled"]:
        lines.append(f"frames cut by the snap length, payload filled with zeros: {replay['snaplen_filled']}")
    if replay["tcp_super_segments_cut"]:
        lines.append(f"TCP super-segments (TSO/GRO) cut to the MTU as the sender's NIC would: "
                     f"{replay['tcp_super_segments_cut']}")
    if replay["fragmented_over_mtu"]:
        lines.append(f"datagrams recorded over the MTU, entered as fragments as their sender would: "
                     f"{replay['fragmented_over_mtu']}")
    fragments = replay["fragments"]
    if fragments["datagrams_reassembled"]:
        lines.append(f"IP datagrams reassembled: {fragments['datagrams_reassembled']} (entered whole "
                     f"{fragments['entered_whole']}, as fragments {fragments['entered_as_fragments']})")
    return lines


def format_skipped(account: Path, width: int = 100) -> str:
    """The skipped input frames grouped by reason, as frame-number ranges (``--list-skipped``)."""
    from ..replay.account import skipped_by_reason
    from ..replay.input import SKIP_REASONS

    groups = skipped_by_reason(account)
    if not groups:
        return "skipped input frames: none"
    lines = ["skipped input frames by reason (input frame numbers):"]
    for reason in sorted(groups):
        count, runs = groups[reason]
        lines.append(f"  {reason}: {count} frame(s), {SKIP_REASONS.get(reason, reason)}")
        listed = sum(last - first + 1 for _, first, last in runs)
        texts = [(f"{first}" if first == last else f"{first}-{last}") + (f" (loop {loop})" if loop > 1 else "")
                 for loop, first, last in runs]
        line = "    "
        for text in texts:
            if len(line) + len(text) + 2 > width and line.strip():
                lines.append(line.rstrip(", "))
                line = "    "
            line += text + ", "
        lines.append(line.rstrip(", "))
        if listed < count:
            lines.append(f"    ... and {count - listed} more (replay.csv lists every frame)")
    return "\n".join(lines)
