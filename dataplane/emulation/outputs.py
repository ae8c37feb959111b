"""
Run a scenario into an output folder, all or nothing (``dataplane run`` and ``demo``).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import BinaryIO, Callable

from .. import __version__
from ..files import write_outputs
from ..scenario import Scenario
from .builder import build


def run_scenario(scenario: Scenario, out_dir: str | os.PathLike) -> dict:
    """Run ``scenario`` and write its three output files into ``out_dir``; return the summary."""
    def run(capture: BinaryIO, on_event: Callable[[dict], None], stack: ExitStack) -> dict:
        net = build(scenario, capture, on_event=on_event, application=f"dataplane {__version__}")
        summary = net.run()
        net.capture.close()
        return summary
    return write_outputs(out_dir, run)
