"""
TCP segmentation offload, redone: a recorded TCP super-segment cut into segments that fit the MTU.

A capture taken on a Linux host holds TCP segments far larger than the
link's MTU: the sender's stack hands its NIC one large segment and the NIC
cuts it (TSO/GSO, after the capture point), or the receiver's NIC glues
segments together before the capture point (GRO/LRO).  On the wire they
were MTU-sized, and an emulated network must carry them the same way.
``segment_tcp`` cuts such a packet as a NIC's TSO does: every segment keeps
the IP and TCP headers (options included), the sequence number advances by
the bytes before it, FIN and PSH go on the last segment only and CWR on the
first only, the IPv4 identification counts up from the recorded one, and
each segment gets its lengths and checksums (IPv4 header, TCP over the
IPv4 or IPv6 pseudo-header) computed afresh.
"""

from __future__ import annotations

import struct

from ..wire.checksum import checksum, transport_checksum
from ..wire.headers import PROTO_TCP

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
#: TCP flags only the last segment of a super-segment keeps (FIN, PSH), and only the first (CWR).
_LAST_ONLY, _FIRST_ONLY = 0x01 | 0x08, 0x80


def segment_tcp(packet: bytes, l4: int, mtu: int, keep_wrong_checksum: bool = False) -> list[bytes] | None:
    """The MTU-sized segments of the TCP ``packet`` (an IP packet whose TCP header starts at ``l4``).

    None when it is not cut: it fits, or its headers leave no room for payload in ``mtu``.
    ``keep_wrong_checksum`` (``--keep-checksums`` kept a wrong one): every segment carries the
    recorded TCP checksum, wrong for it too, so an SE drops each as it would the whole.
    """
    if len(packet) <= mtu:
        return None
    tcp_len = (packet[l4 + 12] >> 4) * 4
    headers = l4 + tcp_len
    mss = mtu - headers
    if mss <= 0:
        return None
    version = packet[0] >> 4
    seq = _U32.unpack_from(packet, l4 + 4)[0]
    flags = packet[l4 + 13]
    payload = packet[headers:]
    ident = _U16.unpack_from(packet, 4)[0] if version == 4 else 0
    src, dst = (packet[12:16], packet[16:20]) if version == 4 else (packet[8:24], packet[24:40])
    recorded = _U16.unpack_from(packet, l4 + 16)[0]
    pieces = []
    for index, start in enumerate(range(0, len(payload), mss)):
        chunk = payload[start:start + mss]
        last = start + mss >= len(payload)
        header = bytearray(packet[:headers])
        if version == 4:
            _U16.pack_into(header, 2, headers + len(chunk))
            _U16.pack_into(header, 4, (ident + index) & 0xFFFF)
            header[10:12] = b"\x00\x00"
            _U16.pack_into(header, 10, checksum(bytes(header[:l4])))
        else:
            _U16.pack_into(header, 4, headers - 40 + len(chunk))
        _U32.pack_into(header, l4 + 4, (seq + start) & 0xFFFFFFFF)
        header[l4 + 13] = flags & ~(_FIRST_ONLY if index else 0) & ~(0 if last else _LAST_ONLY)
        header[l4 + 16:l4 + 18] = b"\x00\x00"
        segment = bytes(header[l4:]) + chunk
        right = transport_checksum(src, dst, PROTO_TCP, segment)
        wrong = recorded if recorded != right else right ^ 0xFFFF
        _U16.pack_into(header, l4 + 16, wrong if keep_wrong_checksum else right)
        pieces.append(bytes(header) + chunk)
    return pieces


__all__ = ["segment_tcp"]
