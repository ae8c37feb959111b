"""
The ``dataplane`` command line: run, demo, replay, diff, check.
"""

from .main import main

__all__ = ["main"]
