"""
Replay a recorded capture through a scenario's network (``run_replay``).
"""

from __future__ import annotations

from typing import Callable

from .. import __version__
from ..emulation import build
from ..files import write_outputs
from ..scenario import Scenario
from .account import Account
from .options import ReplayError, ReplayOptions
from .replayer import Replayer

__all__ = ["ACCOUNT_FILES", "ReplayError", "ReplayOptions", "Replayer", "run_replay"]

#: The per-frame and per-flow account written beside the capture.
ACCOUNT_FILES = ("replay.csv", "replay-flows.csv")


def run_replay(scenario: Scenario, capture, out_dir, options: ReplayOptions | None = None,
               on_progress: Callable[[int], None] | None = None) -> dict:
    """Replay ``capture`` through ``scenario`` into ``out_dir`` (every output file or none); return the summary.

    ``on_progress(byte_offset)`` is called as the input is read, with -1 when it is over.
    """

    def run(capture_file, on_event, stack, account_paths) -> dict:
        account = Account(*(account_paths[name] for name in ACCOUNT_FILES))
        stack.callback(account.abandon)
        replayer = Replayer(scenario, capture, account, options, on_progress=on_progress)
        net = build(scenario, capture_file, on_event=on_event, application=f"dataplane {__version__} replay",
                    hooks=replayer.hooks())
        replayer.attach(net)
        summary = replayer.run()
        net.capture.close()
        return summary
    return write_outputs(out_dir, run, extra=ACCOUNT_FILES)
