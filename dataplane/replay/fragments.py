"""
IPv4 and IPv6 fragment reassembly (RFC 791, RFC 815, RFC 8200) the way Linux does it, and fragmentation.

``Reassembler`` collects the fragments of recorded datagrams, keyed like
Linux's ``ip4_frag`` queue (source, destination, identification,
protocol) or ``ip6_frag`` queue (source, destination, identification:
``add6``) and by replay loop, and hands back each datagram once it is
whole.  Its semantics are Linux's (``net/ipv4/ip_fragment.c``,
``net/ipv6/reassembly.c``, ``net/ipv4/inet_fragment.c``, since 4.19), the
same for both families except where noted:

- a fragment entirely inside a run of fragments already held is a
  duplicate: it is dropped and the datagram kept;
- any other overlap discards the whole datagram (the behaviour RFC 5722
  asks of IPv6, which Linux applies to IPv4 too);
- a non-final fragment's length is cut to a multiple of 8 (IPv6: a
  non-final fragment that is not a multiple of 8 is dropped alone, RFC
  8200 section 4.5); an empty fragment, a final fragment that ends before
  data already held, or two different ends discard the datagram;
- a datagram whose first fragment arrived ``TIMEOUT_NS`` (30 s,
  ``net.ipv4.ipfrag_time``) of recorded time ago is dropped (a timeout);
- while more than ``MEMORY_LIMIT`` bytes (4 MiB,
  ``net.ipv4.ipfrag_high_thresh``) are held, new fragments are dropped;
- a datagram longer than 65,535 bytes (IPv6: a payload longer than
  65,535 bytes) is discarded when it completes.

Both families share the bounds: the memory limit counts the fragments of
both, and an IPv6 datagram waits the same 30 s (Linux's
``net.ipv6.ip6frag_time`` is 60 s; one timeout keeps the queue in arrival
order).  So memory is bounded (4 MiB plus one fragment) and so is the time
any fragment waits.  The reassembled IPv4 datagram takes the header of the
fragment at offset 0 with a new length and checksum, and DF if any
fragment had it; an IPv6 one takes the unfragmentable part of the fragment
at offset 0 (the headers before its Fragment header), without the Fragment
header, with a new payload length.

``fragment`` splits a datagram larger than the MTU again, as a host does
(``ip_do_fragment``, ``ip6_fragment``): payload pieces of a multiple of 8
bytes; IPv4 options that must not be copied are replaced by NOPs after
the first fragment; an IPv6 datagram gets a Fragment header after its
unfragmentable part (Hop-by-Hop and Routing headers).
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..clock import NS_PER_S
from ..wire.checksum import checksum
from ..wire.headers import EXT_DESTINATION, EXT_FRAGMENT, EXT_HOP_BY_HOP, EXT_ROUTING

TIMEOUT_NS = 30 * NS_PER_S
MEMORY_LIMIT = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
MTU = 1500
MORE_FRAGMENTS = 0x2000
DONT_FRAGMENT = 0x4000
_U16 = struct.Struct("!H")
_FRAGMENT6 = struct.Struct("!BxHI")   # next header, offset/flags, identification

#: Why fragments were not replayed (keys of ``skipped``), with the text the CLI prints.
FRAGMENT_REASONS = {
    "fragment_duplicate": "IP fragment inside data already held (dropped, datagram kept)",
    "fragment_overlap": "IP fragment overlapping another: the datagram is discarded (Linux)",
    "fragment_invalid": "IP fragment with no data or a contradicting end: the datagram is discarded "
                        "(IPv6: a non-final fragment not a multiple of 8 bytes is dropped alone)",
    "fragment_oversize": "IP datagram longer than 65,535 bytes once reassembled",
    "fragment_memory": "IP fragment arriving while 4 MiB of fragments are held",
    "fragment_timeout": "IP datagram not complete 30 s after its first fragment",
    "fragment_incomplete": "IP datagram still missing fragments when the capture ended",
}


@dataclass(slots=True)
class _Datagram:
    first_seen: int
    header: bytes | None = None      # the IPv4 header (IPv6: unfragmentable part) of the fragment at offset 0
    length: int = 0                  # payload length known so far (the final fragment's end once seen)
    last_in: bool = False
    runs: list = field(default_factory=list)    # [start, end] of each run of contiguous fragments, by start
    tail_end: int = 0
    pieces: list = field(default_factory=list)  # (offset, payload)
    meat: int = 0                    # payload bytes held
    tokens: list = field(default_factory=list)  # the caller's token of every fragment held
    dont_fragment: bool = False
    next_header: int = -1            # IPv6: the Fragment header's next header (-1: an IPv4 datagram)
    pointer: int = 6                 # IPv6: where the header before the Fragment header names the next one


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one fragment did: ``held``, ``duplicate``, ``dropped`` (``reason``), ``discarded`` (the
    datagram, ``reason``; ``tokens`` are every fragment's, this one's included) or ``complete``
    (``packet`` is the datagram; ``tokens`` are the fragments held before this one)."""

    status: str
    packet: bytes | None = None
    reason: str | None = None
    tokens: tuple = ()


class Reassembler:
    """Recorded IPv4 fragments in, whole datagrams out; bounded in memory and in recorded time."""

    def __init__(self, timeout_ns: int = TIMEOUT_NS, memory_limit: int = MEMORY_LIMIT):
        self.timeout_ns = timeout_ns
        self.memory_limit = memory_limit
        self.queues: OrderedDict[tuple, _Datagram] = OrderedDict()  # by first fragment's arrival
        self.held = 0
        self.reassembled = 0

    def add(self, packet: bytes, now: int, token: Any, scope: Any = None) -> Outcome:
        """Take one fragment (an IPv4 packet trimmed to its total length) recorded at ``now``."""
        if self.held > self.memory_limit:
            return Outcome("dropped", reason="fragment_memory")
        ihl = (packet[0] & 0x0F) * 4
        flags = _U16.unpack_from(packet, 6)[0]
        offset = (flags & 0x1FFF) * 8
        return self._add((scope, packet[12:20], packet[4:6], packet[9]), offset, bool(flags & MORE_FRAGMENTS),
                         packet[ihl:], packet[:ihl] if offset == 0 else None, now, token,
                         bool(flags & DONT_FRAGMENT))

    def add6(self, packet: bytes, frag_at: int, now: int, token: Any, scope: Any = None) -> Outcome:
        """Take one IPv6 fragment (trimmed to its payload length; its Fragment header at ``frag_at``)."""
        if self.held > self.memory_limit:
            return Outcome("dropped", reason="fragment_memory")
        following, field, ident = _FRAGMENT6.unpack_from(packet, frag_at)
        offset, more = field & 0xFFF8, bool(field & 1)
        payload = packet[frag_at + 8:]
        if more and len(payload) & 7:   # RFC 8200 4.5: dropped alone (Linux sends a parameter problem)
            return Outcome("dropped", reason="fragment_invalid")
        key = (scope, packet[8:40], ident, "ipv6")
        if offset == 0:
            queue = self.queues.get(key)
            if queue is None:
                queue = self.queues[key] = _Datagram(now)
            queue.next_header, queue.pointer = following, _pointer_to(packet, frag_at)
        return self._add(key, offset, more, payload, packet[:frag_at] if offset == 0 else None, now, token)

    def _add(self, key: tuple, offset: int, more: bool, payload: bytes, header: bytes | None, now: int,
             token: Any, dont_fragment: bool = False) -> Outcome:
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = _Datagram(now)
        end = offset + len(payload)
        if not more:   # the final fragment: the datagram's end
            if end < queue.length or (queue.last_in and end != queue.length):
                return self._discard(key, token, "fragment_invalid")
            queue.last_in, queue.length = True, end
        else:
            if end & 7:
                end &= ~7
                payload = payload[:max(end - offset, 0)]
            if end > queue.length:
                if queue.last_in:
                    return self._discard(key, token, "fragment_invalid")
                queue.length = end
        if end <= offset:
            return self._discard(key, token, "fragment_invalid")
        placed = _place(queue, offset, end)
        if placed == "duplicate":
            return Outcome("duplicate")
        if placed == "overlap":
            return self._discard(key, token, "fragment_overlap")
        queue.pieces.append((offset, payload))
        queue.meat += len(payload)
        self.held += len(payload)
        queue.dont_fragment |= dont_fragment
        if header is not None:
            queue.header = header
        if queue.last_in and queue.header is not None and queue.meat == queue.length:
            return self._complete(key, queue, token)
        queue.tokens.append(token)
        return Outcome("held")

    def _discard(self, key: tuple, token: Any, reason: str) -> Outcome:
        queue = self.queues.pop(key)
        self.held -= queue.meat
        return Outcome("discarded", reason=reason, tokens=(*queue.tokens, token))

    def _complete(self, key: tuple, queue: _Datagram, token: Any) -> Outcome:
        del self.queues[key]
        self.held -= queue.meat
        header = bytearray(queue.header)
        v6 = queue.next_header >= 0
        if (len(header) - 40 if v6 else len(header)) + queue.length > MAX_DATAGRAM:
            return Outcome("discarded", reason="fragment_oversize", tokens=(*queue.tokens, token))
        payload = bytearray(queue.length)
        for offset, piece in queue.pieces:
            payload[offset:offset + len(piece)] = piece
        if v6:   # the unfragmentable part, its last header now naming what the Fragment header named
            _U16.pack_into(header, 4, len(header) - 40 + queue.length)
            header[queue.pointer] = queue.next_header
        else:
            _U16.pack_into(header, 2, len(header) + queue.length)
            _U16.pack_into(header, 6, DONT_FRAGMENT if queue.dont_fragment else 0)
            header[10:12] = b"\x00\x00"
            _U16.pack_into(header, 10, checksum(bytes(header)))
        self.reassembled += 1
        return Outcome("complete", packet=bytes(header) + bytes(payload), tokens=tuple(queue.tokens))

    def expire(self, now: int) -> list[Outcome]:
        """Drop the datagrams whose first fragment is ``timeout_ns`` older than ``now`` (recorded time)."""
        expired = []
        while self.queues:
            key, queue = next(iter(self.queues.items()))
            if queue.first_seen + self.timeout_ns > now:
                break
            del self.queues[key]
            self.held -= queue.meat
            expired.append(Outcome("discarded", reason="fragment_timeout", tokens=tuple(queue.tokens)))
        return expired

    def flush(self) -> list[Outcome]:
        """The capture ended: every datagram still waiting for fragments is incomplete."""
        left = [Outcome("discarded", reason="fragment_incomplete", tokens=tuple(q.tokens))
                for q in self.queues.values()]
        self.queues.clear()
        self.held = 0
        return left


def _place(queue: _Datagram, offset: int, end: int) -> str:
    """Record [offset, end) in the datagram's runs as Linux's ``inet_frag_queue_insert`` does:
    "new", "duplicate" (inside one run) or "overlap"."""
    runs = queue.runs
    if not runs or queue.tail_end < end:      # the common case: past everything held
        if runs and offset < queue.tail_end:
            return "overlap"
        if runs and offset == queue.tail_end:
            runs[-1][1] = end                 # extends the last run
        else:
            runs.append([offset, end])
        queue.tail_end = end
        return "new"
    position = 0
    for index, (start, stop) in enumerate(runs):
        if end <= start:
            break
        if offset >= stop:
            position = index + 1
            continue
        return "duplicate" if start <= offset and end <= stop else "overlap"
    runs.insert(position, [offset, end])      # a run of its own, even when it touches a neighbour
    return "new"


def fragment(packet: bytes, mtu: int = MTU) -> list[bytes]:
    """Split the IPv4 or IPv6 ``packet`` into fragments of at most ``mtu`` bytes (one piece if it fits)."""
    if len(packet) <= mtu:
        return [packet]
    if packet[0] >> 4 == 6:
        return _fragment6(packet, mtu)
    ihl = (packet[0] & 0x0F) * 4
    step = (mtu - ihl) & ~7
    payload = packet[ihl:]
    first = packet[:ihl]
    later = _copied_options_only(first)
    pieces = []
    for offset in range(0, len(payload), step):
        piece = payload[offset:offset + step]
        header = bytearray(first if offset == 0 else later)
        more = MORE_FRAGMENTS if offset + step < len(payload) else 0
        _U16.pack_into(header, 2, ihl + len(piece))
        _U16.pack_into(header, 6, more | (offset // 8))
        header[10:12] = b"\x00\x00"
        _U16.pack_into(header, 10, checksum(bytes(header)))
        pieces.append(bytes(header) + piece)
    return pieces


def _copied_options_only(header: bytes) -> bytes:
    """The header later fragments carry: options without the copy flag become NOPs (``ip_options_fragment``)."""
    out = bytearray(header)
    at, end = 20, len(header)
    while at < end:
        kind = out[at]
        if kind == 0:        # end of options
            break
        if kind == 1:        # NOP
            at += 1
            continue
        length = out[at + 1] if at + 1 < end else 0
        if length < 2 or at + length > end:
            break
        if not kind & 0x80:
            out[at:at + length] = b"\x01" * length
        at += length
    return bytes(out)


def _pointer_to(packet: bytes, frag_at: int) -> int:
    """Where the header before the one at ``frag_at`` names its next header (6: the IPv6 header's field)."""
    pointer, at = 6, 40
    while at < frag_at:
        pointer, at = at, at + (packet[at + 1] + 1) * 8
    return pointer


def _fragment6(packet: bytes, mtu: int) -> list[bytes]:
    """Fragments of the IPv6 ``packet``: its unfragmentable part (the IPv6 header, Hop-by-Hop, and the headers
    up to a Routing header), a Fragment header, a piece of the rest; the identification is the packet's CRC-32,
    so the same datagram is cut alike in every run."""
    unfragmentable, pointer, header, at = 40, 6, packet[6], 40
    while header in (EXT_HOP_BY_HOP, EXT_ROUTING, EXT_DESTINATION) and at + 2 <= len(packet):
        following, after = packet[at], at + (packet[at + 1] + 1) * 8
        if header != EXT_DESTINATION:
            unfragmentable, pointer = after, at
        elif following != EXT_ROUTING and following not in (EXT_HOP_BY_HOP, EXT_DESTINATION):
            break
        header, at = following, after
    first = bytearray(packet[:unfragmentable])
    following = first[pointer]
    first[pointer] = EXT_FRAGMENT
    ident = zlib.crc32(packet)
    rest = packet[unfragmentable:]
    step = (mtu - unfragmentable - 8) & ~7
    pieces = []
    for offset in range(0, len(rest), step):
        piece = rest[offset:offset + step]
        more = 1 if offset + step < len(rest) else 0
        _U16.pack_into(first, 4, unfragmentable - 40 + 8 + len(piece))
        pieces.append(bytes(first) + _FRAGMENT6.pack(following, offset | more, ident) + piece)
    return pieces
