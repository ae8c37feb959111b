"""
Layer 2: NICs, learning-switch segments with port security, and the capture taps.
"""

from .capture import Capture
from .segment import Nic, Receiver, Segment

__all__ = ["Capture", "Nic", "Receiver", "Segment"]
