"""
IPv4 fragment reassembly (RFC 791, RFC 815) the way Linux does it, and fragmentation to an MTU.

``Reassembler`` collects the fragments of recorded datagrams, keyed like
Linux's ``ip4_frag`` queue (source, destination, identification,
protocol) and by replay loop, and hands back each datagram once it is
whole.  Its semantics are Linux's (``net/ipv4/ip_fragment.c``,
``net/ipv4/inet_fragment.c``, since 4.19):

- a fragment entirely inside a run of fragments already held is a
  duplicate: it is dropped and the datagram kept;
- any other overlap discards the whole datagram (the behaviour RFC 5722
  asks of IPv6, which Linux applies to IPv4 too);
- a non-final fragment's length is cut to a multiple of 8; an empty
  fragment, a final fragment that ends before data already held, or two
  different ends discard the datagram;
- a datagram whose first fragment arrived ``TIMEOUT_NS`` (30 s,
  ``net.ipv4.ipfrag_time``) of recorded time ago is dropped (a timeout);
- while more than ``MEMORY_LIMIT`` bytes (4 MiB,
  ``net.ipv4.ipfrag_high_thresh``) are held, new fragments are dropped;
- a datagram longer than 65,535 bytes is discarded when it completes.

So memory is bounded (4 MiB plus one fragment) and so is the time any
fragment waits.  The reassembled datagram takes the header of the fragment
at offset 0 with a new length and checksum, and DF if any fragment had it.

``fragment`` splits a datagram larger than the MTU again, as a host or
router does (``ip_do_fragment``): payload pieces of a multiple of 8 bytes,
options that must not be copied replaced by NOPs after the first fragment.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..clock import NS_PER_S
from ..wire.checksum import checksum

TIMEOUT_NS = 30 * NS_PER_S
MEMORY_LIMIT = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
MTU = 1500
MORE_FRAGMENTS = 0x2000
DONT_FRAGMENT = 0x4000
_U16 = struct.Struct("!H")

#: Why fragments were not replayed (keys of ``skipped``), with the text the CLI prints.
FRAGMENT_REASONS = {
    "fragment_duplicate": "IPv4 fragment inside data already held (dropped, datagram kept)",
    "fragment_overlap": "IPv4 fragment overlapping another: the datagram is discarded (Linux)",
    "fragment_invalid": "IPv4 fragment with no data or a contradicting end: the datagram is discarded",
    "fragment_oversize": "IPv4 datagram longer than 65,535 bytes once reassembled",
    "fragment_memory": "IPv4 fragment arriving while 4 MiB of fragments are held",
    "fragment_timeout": "IPv4 datagram not complete 30 s after its first fragment",
    "fragment_incomplete": "IPv4 datagram still missing fragments when the capture ended",
}


@dataclass(slots=True)
class _Datagram:
    first_seen: int
    header: bytes | None = None      # the IPv4 header of the fragment at offset 0
    length: int = 0                  # payload length known so far (the final fragment's end once seen)
    last_in: bool = False
    runs: list = field(default_factory=list)    # [start, end] of each run of contiguous fragments, by start
    tail_end: int = 0
    pieces: list = field(default_factory=list)  # (offset, payload)
    meat: int = 0                    # payload bytes held
    tokens: list = field(default_factory=list)  # the caller's token of every fragment held
    dont_fragment: bool = False


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
        key = (scope, packet[12:20], packet[4:6], packet[9])
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = _Datagram(now)
        flags = _U16.unpack_from(packet, 6)[0]
        offset = (flags & 0x1FFF) * 8
        payload = packet[ihl:]
        end = offset + len(payload)
        if not flags & MORE_FRAGMENTS:   # the final fragment: the datagram's end
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
        queue.dont_fragment |= bool(flags & DONT_FRAGMENT)
        if offset == 0:
            queue.header = packet[:ihl]
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
        if len(header) + queue.length > MAX_DATAGRAM:
            return Outcome("discarded", reason="fragment_oversize", tokens=(*queue.tokens, token))
        payload = bytearray(queue.length)
        for offset, piece in queue.pieces:
            payload[offset:offset + len(piece)] = piece
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
    """Split the IPv4 ``packet`` into fragments of at most ``mtu`` bytes (one piece if it fits)."""
    if len(packet) <= mtu:
        return [packet]
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
