"""
The ``dataplane`` command line: parse arguments, dispatch, map errors to exit codes.

Exit status: 0 success, 1 a finding (``diff`` found a difference, ``check``
found a problem), 2 bad input.  Bad input is reported as one line on stderr
that names the file, key or packet; never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_OK, UsageError
from . import check, diff, replay, report, split, wireshark_profile


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataplane",
        description="Packet-level emulator of Avi / NSX ALB virtual-service scale-out.",
    )
    parser.add_argument("--version", action="version", version=f"dataplane {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario file and write capture, events and summary")
    run.add_argument("scenario", type=Path, help="scenario TOML file")
    run.add_argument("--out", type=Path, default=None, help="output folder (default: out/<scenario name>)")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    report.add_flag(run)
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="run the built-in product tour (VMware, scale out to 4 SEs and back)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    report.add_flag(demo, default=True)
    demo.set_defaults(handler=cmd_demo)

    replay.register(commands)
    diff.register(commands)
    check.register(commands)
    split.register(commands)
    report.register(commands)
    wireshark_profile.register(commands)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from .. import scenario as scenario_mod

    try:
        scenario = scenario_mod.load(args.scenario)
        if args.seed is not None:
            scenario = scenario_mod.with_seed(scenario, args.seed)
    except scenario_mod.ScenarioError as error:
        raise UsageError(str(error)) from None
    return _run(scenario, args.out or Path("out") / scenario.name, args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import scenario as scenario_mod

    source = resources.files("dataplane").joinpath("scenarios/demo.toml")
    with resources.as_file(source) as path:
        scenario = scenario_mod.load(path)
    return _run(scenario, args.out, args)


def _run(scenario, out: Path, args: argparse.Namespace) -> int:
    from ..emulation import run_scenario
    from .summary import format_summary

    try:
        summary = run_scenario(scenario, out)
    except OSError as error:
        raise UsageError(f"{out}: cannot write output: {error.strerror or error}") from None
    print(format_summary(summary))
    report.after_run(args, out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"dataplane: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dataplane: interrupted; no output file was replaced", file=sys.stderr)
        return 130
