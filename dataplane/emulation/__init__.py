"""
A scenario built into a live network (``build``), started, run and accounted for.
"""

from .builder import Hooks, build
from .network import Network
from .outputs import run_scenario

__all__ = ["Hooks", "Network", "build", "run_scenario"]
