"""
What the packet-test verbs remember of the wire: frames seen (``Seen``) and places to look (``Place``).

Both the verbs (``net``) and their failure messages (``explain``) read these.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import NS_PER_S
from ..l2 import Nic, Segment
from ..wire.frames import mac_text
from ..wire.headers import ETH_DST, ETH_SRC


@dataclass(slots=True)
class Seen:
    """One frame that crossed a segment."""

    index: int  # order of observation, over every segment
    number: int | None  # frame number in the capture (None on an uncaptured segment)
    segment: str
    time_ns: int
    frame: bytes
    comment: str
    dropped: bool
    consumed: bool = False
    by_test: bool = False  # sent by the test itself (consumed from the start)
    discarded: bool = False  # cleared by discard()

    def label(self) -> str:
        number = f"#{self.number}" if self.number is not None else "(uncaptured)"
        return f"frame {number} at {self.time_ns / NS_PER_S:.9f} s on {self.segment}"


class Place:
    """Where a verb looks: a whole segment, or what one NIC sends and receives there."""

    def __init__(self, text: str, segment: Segment, nic: Nic | None):
        self.text = text
        self.segment = segment
        self.nic = nic

    def covers(self, seen: Seen) -> bool:
        if seen.segment != self.segment.name:
            return False
        if self.nic is None:
            return True
        mac = self.nic.mac
        return seen.frame[ETH_SRC] == mac or seen.frame[ETH_DST] == mac or bool(seen.frame[0] & 1)

    def __str__(self) -> str:
        if self.nic is None:
            return self.text
        return f"{self.text} ({mac_text(self.nic.mac)})"
