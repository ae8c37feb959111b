"""
The run's capture: one pcapng interface per segment, a comment on every frame.

``Capture`` turns virtual time into pcapng timestamps on a fixed epoch (not
the wall clock, so two runs are byte-identical), names the interfaces after
the segments and writes a name-resolution block for the VIP, SEs and
servers so Wireshark shows names with "Resolve network addresses" on.
"""

from __future__ import annotations

from typing import BinaryIO

from ..wire.pcapng import PcapngWriter

#: 2026-01-01T00:00:00Z: every run's virtual time 0.
EPOCH_NS = 1_767_225_600 * 1_000_000_000

SEGMENT_DESCRIPTIONS = {
    "clients": "client side of the gateway router",
    "frontend": "VIP network: gateway router and SE frontend NICs",
    "backend": "server network: SE backend NICs and pool servers",
}


class Capture:
    def __init__(self, fileobj: BinaryIO, application: str, comment: str):
        self.writer = PcapngWriter(fileobj, application=application, comment=comment)

    def add_segment(self, name: str) -> int:
        return self.writer.add_interface(name, SEGMENT_DESCRIPTIONS.get(name, f"segment {name}"))

    def add_names(self, names: dict[str, str]) -> None:
        self.writer.add_names(names)

    @property
    def frames(self) -> int:
        return sum(self.writer.frames_written)

    def write(self, interface: int, time_ns: int, frame: bytes, comment: str) -> None:
        """Record ``frame`` crossing segment ``interface`` at virtual time ``time_ns``."""
        self.writer.write_commented(interface, EPOCH_NS + time_ns, frame, comment)

    def close(self) -> None:
        self.writer.close()
