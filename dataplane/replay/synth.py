"""
Synthetic captures for replay tests and benchmarks: a classic pcap writer and TCP flows.

This module owns making captures that look recorded: ``write_pcap`` streams
(time, frame) pairs into a classic pcap file (microsecond or nanosecond
magic, any link type, optionally cutting the last record short), and
``http_flows`` generates interleaved, well-formed TCP connections (SYN to
last ACK, correct sequence and acknowledgement numbers, valid checksums)
in recorded order, lazily, so a multi-million-packet capture is written
without ever being held in memory.  ``relink`` re-encapsulates Ethernet
frames (802.1Q tag, Linux cooked SLL/SLL2, raw IP, loopback) to exercise
decoding.  ``offload`` and ``ip_fragment`` make frames as a sending host's
capture holds them: checksums left for the NIC, IPv4 fragments.
"""

from __future__ import annotations

import struct
from typing import Iterable, Iterator

from ..wire import frames
from ..wire.checksum import ones_complement_sum
from ..wire.frames import ACK, FIN, PSH, SYN

CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")


def write_pcap(path, records: Iterable[tuple[int, bytes]], linktype: int = 1, nanosecond: bool = False,
               cut_last: int = 0, snaplen: int = 262144) -> int:
    """Write (time_ns, frame) records to a classic pcap; return how many. ``cut_last`` bytes are
    removed from the end of the file (a capture whose writer was killed mid-record); frames longer
    than ``snaplen`` are cut to it, their original length recorded (``tcpdump -s``)."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    count = 0
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        record = struct.Struct("<IIII")
        for time_ns, frame in records:
            sec, rest = divmod(time_ns, 1_000_000_000)
            kept = frame[:snaplen]
            out.write(record.pack(sec, rest if nanosecond else rest // 1000, len(kept), len(frame)))
            out.write(kept)
            count += 1
        if cut_last:
            out.truncate(out.tell() - cut_last)
    return count


def relink(frame: bytes, how: str) -> bytes:
    """Re-encapsulate an Ethernet IPv4 frame: ``vlan`` (802.1Q tag 42), ``sll``, ``sll2``, ``raw``, ``null``
    (BSD loopback, little-endian AF_INET) or ``loop`` (OpenBSD loopback, big-endian AF_INET)."""
    packet = frame[14:]
    if how == "null":
        return struct.pack("<I", 2) + packet
    if how == "loop":
        return struct.pack(">I", 2) + packet
    if how == "vlan":
        return frame[:12] + struct.pack("!HH", 0x8100, 42) + frame[12:]
    if how == "sll":   # incoming, ARPHRD_ETHER, 6-byte address
        return struct.pack("!HHH", 0, 1, 6) + frame[6:12] + b"\x00\x00" + frame[12:14] + packet
    if how == "sll2":
        return struct.pack("!HHIHBB", 0x0800, 0, 2, 1, 0, 6) + frame[6:12] + b"\x00\x00" + packet
    if how == "raw":
        return packet
    raise ValueError(how)


def http_flows(flows: int, data_segments: int = 4, concurrency: int = 20, gap_ns: int = 50_000,
               payload: int = 200, start_ns: int = 1_700_000_000 * 1_000_000_000,
               server: str = "192.0.2.80", port: int = 80) -> Iterator[tuple[int, bytes]]:
    """Yield (time_ns, Ethernet frame) of ``flows`` TCP connections, ``concurrency`` at a time,
    interleaved round-robin, one packet every ``gap_ns``.  Each connection: handshake, a request,
    ``data_segments`` response segments each ACKed, then a FIN exchange the
    client starts (7 + 2 * data_segments packets)."""
    server_ip = frames.ip_bytes(server)
    active: list[Iterator[bytes]] = []
    started = 0
    now = start_ns
    turn = 0
    while active or started < flows:
        while len(active) < concurrency and started < flows:
            active.append(_connection(started, server_ip, port, data_segments, payload))
            started += 1
        turn %= len(active)
        frame = next(active[turn], None)
        if frame is None:
            active.pop(turn)
            continue
        yield now, frame
        now += gap_ns
        turn += 1


def _connection(number: int, server_ip: bytes, port: int, segments: int, size: int) -> Iterator[bytes]:
    # 4096 client addresses, reused with new ports: as many clients as a busy VS sees, not one per flow.
    client_ip = bytes((198, 18, (number >> 8) & 0x0F, number & 0xFF))
    cport = 10000 + number % 50000
    c_seq, s_seq = (number * 7919) & 0xFFFFFFFF, (number * 104729) & 0xFFFFFFFF
    ident = 0

    def c(flags, payload=b""):
        nonlocal c_seq, ident
        ident += 1
        frame = frames.tcp_frame(SERVER_MAC, CLIENT_MAC, client_ip, server_ip, cport, port, c_seq,
                                 s_seq if flags & ACK else 0,
                                 flags, payload, ident)
        c_seq = (c_seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return frame

    def s(flags, payload=b""):
        nonlocal s_seq, ident
        ident += 1
        frame = frames.tcp_frame(CLIENT_MAC, SERVER_MAC, server_ip, client_ip, port, cport, s_seq, c_seq,
                                 flags, payload, ident)
        s_seq = (s_seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return frame

    yield c(SYN)
    yield s(SYN | ACK)
    yield c(ACK)
    yield c(PSH | ACK, b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % number)
    body = b"r" * size
    for _ in range(segments):
        yield s(ACK, body)
        yield c(ACK)
    yield c(FIN | ACK)   # the client closes: its ACK is the connection's last packet
    yield s(FIN | ACK)
    yield c(ACK)


def offload(frame: bytes, how: str) -> bytes:
    """An Ethernet TCP/UDP frame as its sender's capture shows it under checksum offload: the transport
    checksum ``zero``, or ``partial`` (the pseudo-header sum Linux leaves for the NIC, CHECKSUM_PARTIAL)."""
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    at = 14 + ihl + (16 if proto == frames.PROTO_TCP else 6)
    length = len(frame) - 14 - ihl
    value = 0 if how == "zero" else ones_complement_sum(frame[26:34] + struct.pack("!BBH", 0, proto, length))
    return frame[:at] + struct.pack("!H", value) + frame[at + 2:]


def ip_fragment(frame: bytes, offset: int, length: int, more: bool, ident: int | None = None) -> bytes:
    """An Ethernet frame carrying bytes [offset, offset + length) of ``frame``'s IPv4 payload as a fragment
    (DF cleared, MF as ``more``; ``offset`` a multiple of 8), its header checksum right."""
    ihl = (frame[14] & 0x0F) * 4
    header = bytearray(frame[14:14 + ihl])
    piece = frame[14 + ihl + offset:14 + ihl + offset + length]
    struct.pack_into("!H", header, 2, ihl + len(piece))
    if ident is not None:
        struct.pack_into("!H", header, 4, ident)
    struct.pack_into("!H", header, 6, (0x2000 if more else 0) | (offset // 8))
    header[10:12] = b"\x00\x00"
    struct.pack_into("!H", header, 10, frames.checksum(bytes(header)))
    return frame[:14] + bytes(header) + piece
