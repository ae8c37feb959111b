"""
The ``dataplane`` command line: parse arguments, dispatch, map errors to exit codes.

Exit status: 0 success, 1 a finding (``diff`` found a difference, ``check``
found a problem), 2 bad input.  Bad input is reported as one line on stderr
that names the file, key or packet; never as a traceback.  SIGTERM and
SIGHUP end a run as Ctrl-C (SIGINT) does: the output files being written
are removed, none is replaced, and the exit status is 128 + the signal's
number.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from importlib import resources
from pathlib import Path

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_OK, UsageError
from ..files import folder_name
from . import check, diff, replay, report, split, wireshark_profile
from .arguments import Parser, ascii_int

# SIGINT already arrives as KeyboardInterrupt; these would otherwise kill the process before any cleanup.
CLEAN_EXIT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(BaseException):
    """A termination signal arrived; raised where the program was, so every ``finally`` runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dataplane",
        description="Packet-level emulator of Avi / NSX ALB virtual-service scale-out.",
    )
    parser.add_argument("--version", action="version", version=f"dataplane {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario file and write capture, events and summary")
    run.add_argument("scenario", type=Path, help="scenario TOML file")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (default: out/<scenario name, as a safe folder name>)")
    run.add_argument("--seed", type=ascii_int, default=None, help="override the scenario's seed")
    report.add_flag(run)
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="run a built-in product tour (default: VMware, scale out to 4 SEs "
                                            "and back; --tour two-vs: two virtual services sharing SEs; --tour dual-stack: "
                                            "IPv4 and IPv6 on one VS)")
    demo.add_argument("--tour", choices=sorted(TOURS), default="scale-out",
                      help="which tour: scale-out (default), two-vs or dual-stack")
    demo.add_argument("--out", type=Path, default=None,
                      help="output folder (default: out/demo, or out/demo-<tour> for another tour)")
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
    return _run(scenario, args.out or Path("out") / folder_name(scenario.name), args)


#: The built-in tours: ``dataplane demo --tour NAME`` runs ``dataplane/scenarios/<file>``.
TOURS = {"scale-out": "demo.toml", "two-vs": "demo-two-vs.toml", "dual-stack": "demo-dual-stack.toml"}


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import scenario as scenario_mod

    source = resources.files("dataplane").joinpath(f"scenarios/{TOURS[args.tour]}")
    with resources.as_file(source) as path:
        scenario = scenario_mod.load(path)
    default = Path("out/demo") if args.tour == "scale-out" else Path(f"out/demo-{args.tour}")
    return _run(scenario, args.out or default, args)


def _run(scenario, out: Path, args: argparse.Namespace) -> int:
    from ..emulation import run_scenario
    from ..scenario import ScenarioError
    from .summary import format_summary

    try:
        summary = run_scenario(scenario, out)
    except ScenarioError as error:  # what only building the network finds (two IPv6 hosts hashing to one MAC)
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{out}: cannot write output: {error.strerror or error}") from None
    print(format_summary(summary))
    report.after_run(args, out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    with _signals_end_cleanly():
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return EXIT_OK
            return args.handler(args)
        except UsageError as error:
            print(f"dataplane: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("dataplane: interrupted; no output file was replaced", file=sys.stderr)
            return 130
        except Terminated as stop:
            print(f"dataplane: terminated by {signal.Signals(stop.signum).name}; no output file was replaced",
                  file=sys.stderr)
            return 128 + stop.signum


@contextlib.contextmanager
def _signals_end_cleanly():
    """Turn SIGTERM and SIGHUP into ``Terminated`` for the length of one command, then put the old handlers back."""
    def stop(signum, _frame):
        for number in CLEAN_EXIT_SIGNALS:  # a second signal must not interrupt the cleanup
            signal.signal(number, signal.SIG_IGN)
        raise Terminated(signum)

    try:
        previous = {number: signal.signal(number, stop) for number in CLEAN_EXIT_SIGNALS}
    except ValueError:  # not the main thread (an embedding program): signals stay as they are
        previous = {}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
