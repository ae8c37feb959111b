"""
``dataplane report OUT_DIR``, and the ``--report`` flag of run, replay and demo: the command over ``tools.report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_OK, UsageError


def register(commands) -> None:
    parser = commands.add_parser(
        "report", help="write report.html, one page with plots, from a run's output folder",
        description="Write OUT_DIR/report.html from OUT_DIR/summary.json and OUT_DIR/events.jsonl: new flows "
                    "per SE with the control-plane events marked, open connections and CPU per SE (with the "
                    "alert thresholds), drops by reason, flows by phase and the events. One self-contained "
                    "file: the plots are embedded. Exit 0 written, 2 bad input.")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="a folder written by run, replay or demo")
    parser.set_defaults(handler=_cmd_report)


def add_flag(parser: argparse.ArgumentParser, default: bool = False) -> None:
    """``--report`` (or, where it is on by default, ``--no-report``) on a command that writes an output folder."""
    if default:
        parser.add_argument("--no-report", dest="report", action="store_false",
                            help="do not write report.html into the output folder")
    else:
        parser.add_argument("--report", action="store_true",
                            help="also write report.html (plots of the run) into the output folder")


def write(out_dir: Path) -> Path:
    """Write the report of ``out_dir``; bad outputs or an unwritable folder are a UsageError."""
    from ..tools.report import ReportError, write_report

    try:
        return write_report(out_dir)
    except ReportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{error.filename or out_dir}: cannot write the report: {error.strerror or error}") from None


def after_run(args: argparse.Namespace, out_dir: Path) -> None:
    """Called once a command has written ``out_dir``: write and announce the report if asked."""
    if getattr(args, "report", False):
        path = write(out_dir)
        print(f"report: {path}   (open it in a browser)")


def _cmd_report(args: argparse.Namespace) -> int:
    path = write(args.out_dir)
    print(f"report: {path}")
    return EXIT_OK
