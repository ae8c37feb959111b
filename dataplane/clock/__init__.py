"""
Virtual time: an integer nanosecond clock and a deterministic event queue.
"""

from .simulator import NORMAL, NS_PER_S, URGENT, Simulator, Timer, seconds

__all__ = ["NORMAL", "NS_PER_S", "URGENT", "Simulator", "Timer", "seconds"]
