"""
``dataplane replay``: the command, its output folder and its summary text.

This module owns the replay command's contract: argument parsing into
``ReplayOptions`` (bad values are ``UsageError``, exit 2), the progress
bar (tqdm on a terminal, never with ``--quiet`` or when stderr is not a
TTY), writing ``capture.pcapng``, ``events.jsonl`` and ``summary.json``
under temporary names renamed only when the run has finished (as
``emulation.run_scenario`` does), and the lines printed after the run.  A
capture that breaks part-way is replayed up to the break, its outputs are
written, and the command then exits 2 naming the frame and byte offset.
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
    p = commands.add_parser("replay", help="replay a recorded capture (pcap/pcapng) through a scenario",
                            description="Replay the VS's flows of a recorded capture through a scenario's "
                                        "network: client packets enter behind the router with the server "
                                        "address mapped to the VIP, server packets leave the pool server the "
                                        "SE chose, both in recorded order and timing.")
    p.add_argument("capture", type=Path, help="pcap or pcapng file (Ethernet, 802.1Q, Linux cooked, raw IP)")
    p.add_argument("--scenario", type=Path, required=True, help="scenario TOML file")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out/replay-<capture name>)")
    p.add_argument("--match", action="append", default=[], metavar="client=ADDR[/LEN][:PORT],server=...",
                   help="replay the flows matching client and/or server address and port (repeatable, ORed); "
                        "default: flows whose server port is the VS port")
    p.add_argument("--port-map", action="append", default=[], metavar="FROM[:TO]",
                   help="also replay flows to server port FROM, mapped to the VS port (repeatable)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--speed", type=float, default=1.0, metavar="X", help="multiply the recorded pace by X")
    timing.add_argument("--topspeed", action="store_true",
                        help="no recorded gaps: each packet waits only for the packets it answers")
    p.add_argument("--loop", type=int, default=1, metavar="N",
                   help="replay the capture N times; loop k moves client addresses' first octet by k")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N input packets")
    p.add_argument("--allow-truncated", action="store_true", help="accept a capture whose last record is cut")
    p.add_argument("--fix-checksums", action="store_true",
                   help="recompute IPv4/TCP/UDP checksums of the input (captures taken with checksum offload)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    report.add_flag(p)
    p.set_defaults(handler=cmd_replay)


def _options(args, vs_port: int):
    from ..replay import input as rin
    from ..replay.input import ReplayOptions

    if not args.speed > 0 or args.speed != args.speed or args.speed == float("inf"):
        raise UsageError(f"--speed: must be a positive number, got {args.speed}")
    if args.loop < 1:
        raise UsageError(f"--loop: must be >= 1, got {args.loop}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit: must be >= 1, got {args.limit}")
    try:
        matches = tuple(rin.parse_match(text) for text in args.match)
        port_map = tuple(rin.parse_port_map(text, vs_port) for text in args.port_map)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return ReplayOptions(speed=args.speed, topspeed=args.topspeed, loop=args.loop, limit=args.limit,
                         allow_truncated=args.allow_truncated, fix_checksums=args.fix_checksums,
                         port_map=port_map, matches=matches)


def cmd_replay(args: argparse.Namespace) -> int:
    from .. import scenario as scenario_mod
    from ..replay import run_replay
    from ..replay.input import ReplayError, check_capture

    try:
        scenario = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as error:
        raise UsageError(str(error)) from None
    options = _options(args, scenario.virtual_service.port)
    if not args.capture.is_file():
        raise UsageError(f"{args.capture}: no such capture file")
    try:
        check_capture(args.capture)
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
    except OSError as error:
        raise UsageError(f"{out}: cannot write output: {error.strerror or error}") from None
    print(format_replay(summary))
    report.after_run(args, out)
    error = summary["replay"]["input_error"]
    if error:
        print(f"dataplane: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _progress_bar(capture, loops: int):
    from tqdm import tqdm

    size = os.path.getsize(capture)
    # A pty that reports its size as 0x0 makes tqdm draw nothing (the bar sits "below" row 0):
    # shutil falls back to 80x24 there.
    columns, rows = shutil.get_terminal_size()
    return tqdm(total=size * loops, unit="B", unit_scale=True, desc="replay", file=sys.stderr,
                leave=False, ncols=columns, nrows=rows)


def _updater(bar, capture):
    size = os.path.getsize(capture)
    state = {"loop_base": 0, "last": 0}

    def update(offset: int) -> None:
        if offset < 0:        # input over
            bar.update(bar.total - bar.n)
            return
        if offset < state["last"]:  # a new loop started from the file's beginning
            state["loop_base"] += size
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
             + (", stopped at --limit" if replay["stopped_at_limit"] else "") + "): "
             f"{replay['input_packets']} input packets, {replay['replayed_packets']} replayed, "
             f"{replay['skipped_packets']} skipped",
             f"replayed flows: {flows['total']} total, {flows['completed']} completed, {flows['reset']} reset, "
             f"{flows['stalled']} stalled"]
    for reason, count in replay["skipped"].items():
        lines.append(f"  skipped {count}: {SKIP_REASONS.get(reason, reason)} [{reason}]")
    packets = replay["packets"]
    for key in sorted(k for k in packets if k.startswith("not_sent") or k == "lost_in_network"):
        lines.append(f"  {key.replace('_', ' ')}: {packets[key]} packets")
    if replay["accepted_truncation"]:
        lines.append(f"accepted truncated capture: {replay['accepted_truncation']}")
    return "\n".join(lines)
