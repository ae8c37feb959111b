"""IPv4 reassembly the way Linux does it (net/ipv4/ip_fragment.c, inet_fragment.c), and fragmentation."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP

from dataplane.clock import NS_PER_S
from dataplane.replay.fragments import MTU, Reassembler, fragment
from dataplane.wire.checksum import checksum

PAYLOAD = bytes(range(256)) * 16   # 4096 bytes: every byte position tells where it came from


def datagram(payload: bytes = PAYLOAD[:48], ident: int = 7, options: bytes = b"") -> bytes:
    return bytes(IP(src="192.0.2.1", dst="192.0.2.80", id=ident, proto=17, flags=0, options=options) / payload)


def piece(whole: bytes, offset: int, length: int, more: bool) -> bytes:
    """The fragment of ``whole`` (an IPv4 packet) holding payload bytes [offset, offset + length)."""
    ihl = (whole[0] & 0x0F) * 4
    header = bytearray(whole[:ihl])
    data = whole[ihl + offset:ihl + offset + length]
    struct.pack_into("!HHH", header, 2, ihl + len(data), struct.unpack_from("!H", whole, 4)[0],
                     (0x2000 if more else 0) | offset // 8)
    header[10:12] = b"\x00\x00"
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return bytes(header) + data


def feed(reassembler: Reassembler, whole: bytes, spans, now: int = 0):
    """Add the fragments ``spans`` = [(offset, length, more), ...] in that order; return the outcomes."""
    return [reassembler.add(piece(whole, o, n, m), now, f"frag{i}") for i, (o, n, m) in enumerate(spans)]


def test_in_order_fragments_give_back_the_datagram_with_a_fresh_header():
    whole = datagram()
    outcomes = feed(Reassembler(), whole, [(0, 16, True), (16, 16, True), (32, 16, False)])
    assert [o.status for o in outcomes] == ["held", "held", "complete"]
    done = outcomes[-1]
    assert done.packet == whole and done.tokens == ("frag0", "frag1")
    assert checksum(done.packet[:20]) == 0


def test_out_of_order_fragments_complete_when_the_last_gap_fills():
    whole = datagram()
    outcomes = feed(Reassembler(), whole, [(32, 16, False), (0, 16, True), (16, 16, True)])
    assert [o.status for o in outcomes] == ["held", "held", "complete"]
    assert outcomes[-1].packet == whole


def test_a_fragment_inside_a_run_is_a_duplicate_and_the_datagram_survives():
    whole = datagram()
    reassembler = Reassembler()
    outcomes = feed(reassembler, whole, [(0, 16, True), (16, 16, True), (8, 8, True), (0, 16, True),
                                         (32, 16, False)])
    assert [o.status for o in outcomes] == ["held", "held", "duplicate", "duplicate", "complete"]
    assert outcomes[-1].packet == whole and outcomes[-1].tokens == ("frag0", "frag1")


def test_a_partial_overlap_discards_the_whole_datagram():
    whole = datagram()
    reassembler = Reassembler()
    outcomes = feed(reassembler, whole, [(0, 16, True), (8, 16, True)])
    assert outcomes[1].status == "discarded" and outcomes[1].reason == "fragment_overlap"
    assert outcomes[1].tokens == ("frag0", "frag1")
    assert reassembler.held == 0 and not reassembler.queues
    # The key is free again: the same datagram sent afresh reassembles.
    assert feed(reassembler, whole, [(0, 48, False)])[0].status == "complete"


def test_runs_are_linux_fragment_runs_not_merged_intervals():
    # [0,8) then [16,24) then [8,16): the middle one is its own run (inserted, not appended at the
    # tail), so [0,16) spans two runs: an overlap in Linux, where merged intervals would call it a
    # duplicate.
    whole = datagram(PAYLOAD[:32])
    spans = [(0, 8, True), (16, 8, True), (8, 8, True), (0, 16, True)]
    assert [o.status for o in feed(Reassembler(), whole, spans)][-1] == "discarded"
    # Appended in order, [0,8) and [8,16) form one run: then [0,16) is a duplicate.
    spans = [(0, 8, True), (8, 8, True), (0, 16, True), (16, 16, False)]
    assert [o.status for o in feed(Reassembler(), whole, spans)] == ["held", "held", "duplicate", "complete"]


@pytest.mark.parametrize("spans", [
    [(0, 8, True), (16, 8, False), (16, 16, False)],    # two different ends
    [(16, 32, True), (0, 8, False)],                    # the final fragment ends before data already held
    [(8, 8, False), (16, 8, True)],                     # data beyond the end the final fragment set
    [(8, 0, True)],                                     # no data
])
def test_contradicting_or_empty_fragments_discard_the_datagram(spans):
    outcomes = feed(Reassembler(), datagram(), spans)
    assert outcomes[-1].status == "discarded" and outcomes[-1].reason == "fragment_invalid"


def test_a_non_final_fragment_is_cut_to_a_multiple_of_8():
    whole = datagram()
    reassembler = Reassembler()
    first = reassembler.add(piece(whole, 0, 20, True), 0, "a")   # 20 bytes: only 16 count
    assert first.status == "held" and reassembler.held == 16
    assert reassembler.add(piece(whole, 16, 32, False), 0, "b").packet == whole


def test_a_datagram_waits_30_seconds_of_recorded_time_then_times_out():
    whole = datagram()
    reassembler = Reassembler()
    feed(reassembler, whole, [(0, 16, True)], now=5 * NS_PER_S)
    assert reassembler.expire(35 * NS_PER_S - 1) == []
    (expired,) = reassembler.expire(35 * NS_PER_S)
    assert (expired.status, expired.reason, expired.tokens) == ("discarded", "fragment_timeout", ("frag0",))
    assert reassembler.held == 0


def test_memory_is_bounded_new_fragments_are_dropped_past_the_limit():
    reassembler = Reassembler(memory_limit=64)
    for ident in range(5):
        feed(reassembler, datagram(PAYLOAD[:64], ident=ident), [(0, 32, True)])
    assert reassembler.held == 96   # the third datagram passed the limit; the next ones were dropped
    dropped = reassembler.add(piece(datagram(PAYLOAD[:64], ident=9), 0, 32, True), 0, "x")
    assert (dropped.status, dropped.reason) == ("dropped", "fragment_memory")


def test_a_datagram_over_65535_bytes_is_discarded():
    header = bytearray(datagram(b""))
    header[2:4] = b"\xff\xff"
    big = bytes(header) + bytes(65528)    # 20 + 65528 = 65548 bytes once whole
    spans = [(offset, 8192, True) for offset in range(0, 65528 - 8192, 8192)]
    last = spans[-1][0] + 8192
    spans.append((last, 65528 - last, False))
    outcomes = feed(Reassembler(), big, spans)
    assert outcomes[-1].status == "discarded" and outcomes[-1].reason == "fragment_oversize"
    assert len(outcomes[-1].tokens) == len(spans)


def test_fragments_of_other_datagrams_never_mix():
    a, b = datagram(ident=1), datagram(ident=2)
    reassembler = Reassembler()
    reassembler.add(piece(a, 0, 16, True), 0, "a0")
    reassembler.add(piece(b, 0, 16, True), 0, "b0")
    assert reassembler.add(piece(b, 16, 32, False), 0, "b1").packet == b
    assert reassembler.add(piece(a, 16, 32, False), 0, "a1").packet == a
    # The same datagram in two replay loops is two datagrams.
    assert reassembler.add(piece(a, 0, 16, True), 0, "x", scope=1).status == "held"
    assert reassembler.add(piece(a, 16, 32, False), 0, "y", scope=2).status == "held"


def test_fragment_splits_at_the_mtu_and_reassembles_to_the_same_bytes():
    whole = datagram(PAYLOAD[:4000])
    pieces = fragment(whole, MTU)
    assert [len(p) for p in pieces] == [1500, 1500, 20 + 4000 - 2 * 1480]
    assert all(checksum(p[:20]) == 0 for p in pieces)
    offsets = [struct.unpack_from("!H", p, 6)[0] for p in pieces]
    assert offsets == [0x2000 | 0, 0x2000 | 185, 370]
    reassembler = Reassembler()
    outcomes = [reassembler.add(p, 0, i) for i, p in enumerate(reversed(pieces))]
    assert outcomes[-1].packet == whole
    assert fragment(datagram(), MTU) == [datagram()]   # what fits goes whole


def test_later_fragments_keep_only_the_options_marked_copied():
    record_route = b"\x07\x07\x04" + bytes(4)           # not copied
    security = b"\x82\x04\x00\x00"                      # copied (copy flag set)
    whole = datagram(PAYLOAD[:3000], options=record_route + security + b"\x00")
    first, second, *_ = fragment(whole, MTU)
    ihl = (whole[0] & 0x0F) * 4
    assert first[20:ihl] == whole[20:ihl]
    assert second[20:ihl] == b"\x01" * 7 + security + whole[31:ihl]
    assert (second[0] & 0x0F) * 4 == ihl


def test_scapy_agrees_with_the_reassembled_datagram():
    whole = bytes(IP(src="192.0.2.1", dst="192.0.2.80", id=3) / UDP(sport=5, dport=53) / PAYLOAD[:2000])
    reassembler = Reassembler()
    for p in fragment(whole, 576):
        result = reassembler.add(p, 0, None)
    parsed = IP(result.packet)
    assert parsed[UDP].load == PAYLOAD[:2000] and parsed.flags == 0 and parsed.frag == 0
