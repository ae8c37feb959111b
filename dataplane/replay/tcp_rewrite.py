"""
The TCP header work of replay under the TCP proxy (``proxied``): read a recorded segment, rewrite it.

``segment_of`` reads the fields pacing needs from a recorded IPv4 or IPv6
TCP segment, ``window_scale`` the window scale its SYN offered, and
``translate`` rewrites the acknowledgement number, the window and the
options the live connection did not agree to, updating the TCP checksum
incrementally (RFC 1624) so that one kept wrong by ``--keep-checksums``
stays exactly as wrong.  A malformed option list (a length under 2, or past
the header) is made NOPs from there on: no live stack sends one.
"""

from __future__ import annotations

import struct

from ..wire import frames
from ..wire.checksum import apply_delta, checksum_delta
from .input6 import transport6

NOP = 1
_ACK_FIELD = struct.Struct("!I")
_SEQ_ACK = struct.Struct("!II")
_U16 = struct.Struct("!H")
#: Options the SE's TCP endpoint never negotiates, by kind: in a SYN-ACK answering its SYN, and later.
NOT_OFFERED = {3: "window_scale", 4: "sack_permitted", 5: "sack_blocks", 8: "timestamps"}
NOT_AGREED = {5: "sack_blocks", 8: "timestamps"}


def tcp_offset(packet: bytes, base: int) -> int:
    """The offset of the TCP header in the IP packet at ``packet[base:]``, of either family."""
    if packet[base] >> 4 == 4:
        return base + (packet[base] & 0x0F) * 4
    return base + transport6(packet[base:])[0]


def segment_of(packet: bytes, base: int) -> tuple[int, int, int, int, int, int]:
    """(TCP offset, seq, ack, flags, window, payload length) of the TCP segment in the IP packet at ``base``."""
    l4 = tcp_offset(packet, base)
    if packet[base] >> 4 == 4:
        end = base + _U16.unpack_from(packet, base + 2)[0]
    else:
        end = base + 40 + _U16.unpack_from(packet, base + 4)[0]
    seq, ack = _SEQ_ACK.unpack_from(packet, l4 + 4)
    return l4, seq, ack, packet[l4 + 13], _U16.unpack_from(packet, l4 + 14)[0], end - l4 - (packet[l4 + 12] >> 4) * 4


def window_scale(packet: bytes, l4: int) -> int | None:
    """The window scale option of the TCP segment at ``l4`` (RFC 7323, at most 14), or None."""
    at = frames.tcp_option(packet, l4 + 20, l4 + (packet[l4 + 12] >> 4) * 4, 3, 3)
    return None if at is None else min(packet[at], 14)


def translate(packet: bytes, l4: int, ack: int | None, window: int, removable: dict) -> tuple[bytes, list[str]]:
    """``packet`` with its ACK number and window replaced and the ``removable`` options made NOPs; the TCP
    checksum is updated incrementally (RFC 1624), so one kept wrong stays as wrong."""
    buf = bytearray(packet)
    header_end = l4 + (buf[l4 + 12] >> 4) * 4
    old = bytes(buf[l4:header_end])
    if ack is not None:
        _ACK_FIELD.pack_into(buf, l4 + 8, ack)
    _U16.pack_into(buf, l4 + 14, window)
    removed = []
    at = l4 + 20
    while at < header_end and buf[at]:
        if buf[at] == NOP:
            at += 1
            continue
        length = buf[at + 1] if at + 1 < header_end else 0
        if length < 2 or at + length > header_end:   # malformed: no live stack sends it, nothing after it reads
            removed.append("malformed")
            buf[at:header_end] = bytes([NOP]) * (header_end - at)
            break
        if buf[at] in removable:
            removed.append(removable[buf[at]])
            buf[at:at + length] = bytes([NOP]) * length
        at += length
    new = bytes(buf[l4:header_end])
    if new != old:
        delta = checksum_delta(old[:16] + old[18:], new[:16] + new[18:])
        _U16.pack_into(buf, l4 + 16, apply_delta(_U16.unpack_from(old, 16)[0], delta))
    return bytes(buf), removed


__all__ = ["NOT_AGREED", "NOT_OFFERED", "segment_of", "tcp_offset", "translate", "window_scale"]
