"""The TCP endpoint the proxy profile is built from (issue 12): two endpoints back to back on the real clock.

Every check is on virtual time and on the segments the endpoints hand to the
fake network (``tests/tcp_link.py``); captures of the exchanges are read
back by tshark, whose TCP analysis is a second, independent oracle.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import assert_passes_gate, fields
from dataplane.clock import NS_PER_S, Simulator
from dataplane.nodes.tcp_algorithms import Reassembly, unwrap
from dataplane.nodes.tcp_endpoint import (TRANSITIONS, EndpointState, IllegalTransition, TcpEndpoint,
                                          TcpTuning)
from dataplane.wire.headers import ACK, FIN, PSH, RST, SYN
from tcp_link import MS, Link, write_capture

S = EndpointState


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def connected(**options) -> Link:
    link = Link(**options)
    link.a.endpoint.open()
    link.run(1)
    assert link.a.endpoint.state is S.ESTABLISHED and link.b.endpoint.state is S.ESTABLISHED
    return link


def transfer(link: Link, to_b: bytes, to_a: bytes, seconds: float = 600) -> None:
    link.a.write(to_b, close=True)
    link.b.write(to_a, close=True)
    link.run(seconds)


def acks_from(link: Link, src: str) -> list:
    return [s for s in link.from_(src, ACK) if not s.payload and not s.flags & (SYN | FIN | RST)]


# -- handshake --------------------------------------------------------------------------------------------

def test_handshake_uses_each_sides_isn_and_the_smaller_mss():
    link = Link(isn_a=123_456, isn_b=987_654, a={"mss": 1460, "receive_buffer": 30000},
                b={"mss": 1000, "receive_buffer": 20000})
    link.a.endpoint.open()
    link.run(1)
    syn, synack, ack = link.segments[:3]
    assert (syn.src, syn.flags, syn.seq, syn.ack, syn.mss, syn.window) == ("a", SYN, 123_456, 0, 1460, 30000)
    assert (synack.src, synack.flags, synack.seq, synack.ack, synack.mss, synack.window) == \
        ("b", SYN | ACK, 987_654, 123_457, 1000, 20000)
    assert (ack.src, ack.flags, ack.seq, ack.ack, ack.mss) == ("a", ACK, 123_457, 987_655, None)
    assert synack.time == 5 * MS and ack.time == 10 * MS
    a, b = link.ends
    assert a.state is S.ESTABLISHED and b.state is S.ESTABLISHED
    assert a.send_mss == b.send_mss == 1000
    assert link.a.events == [("established", 10 * MS)] and link.b.events == [("established", 15 * MS)]
    transfer(link, payload(50_000), payload(50_000, 1))
    assert max(s.length for s in link.segments) == 1000


def test_a_syn_without_mss_option_means_536():
    link = Link()
    link.b.endpoint.accept(5000, None)
    link.b.endpoint.receive(5001, 900_001, ACK, 65535, b"")
    assert link.b.endpoint.state is S.ESTABLISHED and link.b.endpoint.send_mss == 536


def test_simultaneous_open():
    link = Link(isn_a=10, isn_b=20)
    a, b = link.ends
    a.open()
    b.open()
    link.run(1)
    assert a.state is S.ESTABLISHED and b.state is S.ESTABLISHED
    assert [s.flags for s in link.segments] == [SYN, SYN, SYN | ACK, SYN | ACK]
    transfer(link, payload(10_000), payload(10_000, 1))
    assert link.a.closed_reason == link.b.closed_reason == "closed"


# -- transfer, flow control, capture -----------------------------------------------------------------------

def test_large_transfer_both_ways_arrives_whole_in_order_within_windows(tmp_path):
    link = connected(a={"receive_buffer": 65535}, b={"receive_buffer": 20000, "mss": 1200})
    to_b, to_a = payload(700_000), payload(400_000, 1)
    transfer(link, to_b, to_a)
    assert bytes(link.b.received) == to_b and bytes(link.a.received) == to_a
    assert link.violations == [] and link.probes == {"a": 0, "b": 0}
    assert link.a.closed_reason == link.b.closed_reason == "closed"
    a, b = link.ends
    assert a.retransmissions == b.retransmissions == 0
    assert max(s.length for s in link.segments) == 1200
    assert min(s.window for s in link.from_("b", ACK)) < 20000  # b's small window did bind
    capture = tmp_path / "capture-transfer.pcapng"
    write_capture(link, capture)
    assert_passes_gate(capture)
    findings = fields(capture, ["frame.number"], "tcp.analysis.retransmission || tcp.analysis.lost_segment || "
                      "tcp.analysis.out_of_order || tcp.analysis.duplicate_ack || tcp.analysis.ack_lost_segment")
    assert findings == []
    # tshark counts every byte of a's stream exactly once: nothing missing, nothing sent twice.
    lengths = fields(capture, ["tcp.len"], "tcp.srcport == 40001")
    assert sum(int(row[0]) for row in lengths) == len(to_b)


def test_a_lone_segment_waits_40_ms_for_its_ack_a_second_full_one_does_not():
    link = connected()
    a_time = link.sim.now
    link.a.endpoint.send(b"x" * 100)
    link.run(1)
    arrival = a_time + 5 * MS
    ack = acks_from(link, "b")[-1]
    assert ack.time == arrival + 40 * MS and ack.ack == (1001 + 100)
    # Two full-sized segments: the second is acknowledged the moment it arrives.
    start = link.sim.now
    link.a.endpoint.send(b"y" * 2920)
    link.run(1)
    ack = [s for s in acks_from(link, "b") if s.time > start][0]
    assert ack.time == start + 5 * MS and ack.ack == 1001 + 100 + 2920


def test_a_fin_and_out_of_order_data_are_acknowledged_at_once():
    def fate(segment, index):
        if segment.src == "a" and segment.length and index == 2:
            return [15 * MS]  # the second data segment overtakes the first
        return None
    link = connected(fate=fate)
    start = link.sim.now
    link.a.endpoint.send(b"1" * 1460 + b"2" * 1460)
    link.run(1)
    acks = [s for s in acks_from(link, "b") if s.time > start]
    assert (acks[0].time, acks[0].ack) == (start + 5 * MS, 1001)  # a duplicate ACK for the gap
    assert (acks[1].time, acks[1].ack) == (start + 15 * MS, 1001 + 2920)  # the gap filled: at once
    assert bytes(link.b.received) == b"1" * 1460 + b"2" * 1460
    start = link.sim.now
    link.a.endpoint.close()
    link.run(0.5)
    fin_ack = [s for s in link.from_("b", ACK) if s.time > start][0]
    assert fin_ack.time == start + 5 * MS and fin_ack.ack == 1001 + 2920 + 1


def test_duplicated_and_reordered_segments_change_nothing_delivered():
    rng = random.Random(4)

    def fate(segment, index):
        if segment.length and rng.random() < 0.3:
            return [5 * MS, 5 * MS + rng.randrange(1, 20) * MS]  # a duplicate, late
        return [rng.randrange(3, 9) * MS]  # jitter reorders
    link = connected(fate=fate)
    to_b, to_a = payload(200_000), payload(150_000, 1)
    transfer(link, to_b, to_a)
    assert bytes(link.b.received) == to_b and bytes(link.a.received) == to_a
    assert link.violations == []
    assert link.a.closed_reason == link.b.closed_reason == "closed"


# -- zero window, persist probes, backpressure ------------------------------------------------------------

def test_an_owner_that_does_not_consume_closes_the_window_and_opens_it_again():
    link = connected(b={"receive_buffer": 16000})
    link.b.auto_consume = False
    data = payload(300_000)
    link.a.write(data)
    link.run(30)
    a, b = link.ends
    windows = [s.window for s in link.from_("b", ACK)]
    assert windows[-1] == 0 and b.receive_window == 0
    assert windows == sorted(windows, reverse=True)  # shrinking as bytes pile up, never growing
    assert len(link.b.received) == 16000 == b.unconsumed
    assert a.send_space() == 0 and link.a.sent < len(data)  # backpressure reached a's owner
    assert link.violations == []
    # The owner catches up: the window reopens and everything arrives.
    link.b.auto_consume = True
    b.consume(b.unconsumed)
    link.run(30)
    assert bytes(link.b.received) == data and link.violations == []


def test_zero_window_probes_back_off_and_a_lost_window_update_is_recovered(tmp_path):
    lost_update = []

    def fate(segment, index):
        # Lose b's window update (the first ACK after b reopens), so only a's probing can find the open window.
        if segment.src == "b" and reopened and not lost_update and segment.window > 0:
            lost_update.append(segment)
            return []
        return None
    reopened = False
    link = connected(fate=fate, b={"receive_buffer": 8000})
    link.b.auto_consume = False
    data = payload(40_000)
    link.a.write(data, close=True)
    link.run(20)
    a, b = link.ends
    probes = [s for s in link.data_segments("a") if s.length == 1]
    assert len(probes) >= 4 and link.probes["a"] == len(probes)
    gaps = [later_ - earlier for earlier, later_ in zip([s.time for s in probes], [s.time for s in probes[1:]])]
    assert all(gap2 == 2 * gap1 for gap1, gap2 in zip(gaps, gaps[1:])), gaps  # exponential back-off
    assert a.state is S.ESTABLISHED and len(link.b.received) == 8000  # probed, never given up
    reopened = True
    link.b.auto_consume = True
    b.consume(b.unconsumed)
    assert lost_update and lost_update[0].window >= 4000
    link.run(200)
    assert bytes(link.b.received) == data and link.violations == []
    assert link.b.count("fin") == 1
    # Wireshark agrees they are zero-window probes, and the refused probe byte leaves no hole behind it.
    capture = tmp_path / "capture-zero-window.pcapng"
    write_capture(link, capture)
    assert_passes_gate(capture)
    assert len(fields(capture, ["frame.number"], "tcp.analysis.zero_window_probe")) == len(probes)
    assert fields(capture, ["frame.number"], "tcp.analysis.lost_segment || tcp.analysis.duplicate_ack") == []


def test_zero_window_probes_unanswered_end_the_connection():
    link = connected(b={"receive_buffer": 4000}, a={"tuning": TcpTuning(retries=4)})
    link.b.auto_consume = False
    link.a.write(payload(20_000))
    link.run(5)
    link.fate = lambda segment, index: [] if segment.src == "b" else None  # b falls silent
    link.run(3600)
    assert link.a.closed_reason == "timeout: 4 zero-window probes unanswered"


@pytest.mark.parametrize("later_close", [False, True])
def test_a_fin_goes_into_a_zero_window_and_is_accepted_there(later_close):
    link = connected(b={"receive_buffer": 3000})
    link.b.auto_consume = False
    link.a.write(payload(3000), close=not later_close)  # exactly the window
    link.run(1)
    if later_close:
        assert link.ends[1].receive_window == 0
        link.a.endpoint.close()  # a bare FIN into the zero window, as Linux sends and accepts it
        link.run(1)
    a, b = link.ends
    assert len(link.b.received) == 3000 and link.b.count("fin") == 1
    assert b.state is S.CLOSE_WAIT and a.state is S.FIN_WAIT_2 and b.receive_window == 0
    assert link.violations == [] and link.probes["a"] == 0  # the FIN needed no window, and no probe


def test_consume_refuses_more_than_was_delivered():
    link = connected()
    link.b.auto_consume = False
    link.a.endpoint.send(b"abc")
    link.run(1)
    with pytest.raises(ValueError, match="3 bytes are delivered"):
        link.b.endpoint.consume(4)
    link.b.endpoint.consume(3)
    assert link.b.endpoint.unconsumed == 0


# -- loss and retransmission ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lost", ["data", "ack", "last ack", "syn", "syn-ack", "fin"])
def test_a_lost_segment_is_recovered_by_retransmission(lost):
    dropped = []

    def fate(segment, index):
        chosen = {
            "data": segment.src == "a" and segment.length and index == 5,
            "ack": segment.src == "b" and segment.flags == ACK and 1 <= index <= 4,
            "last ack": segment.src == "b" and segment.flags == ACK and segment.ack == 1001 + 30_000 + 1
            and not dropped,
            "syn": segment.flags == SYN and index == 0,
            "syn-ack": segment.flags == SYN | ACK and index == 0,
            "fin": segment.src == "a" and segment.flags & FIN and not any(s.flags & FIN for s in dropped),
        }[lost]
        if chosen:
            dropped.append(segment)
            return []
        return None
    link = Link(fate=fate)
    link.a.endpoint.open()
    to_b, to_a = payload(30_000), b"" if "ack" in lost else payload(10_000, 1)  # ACKs alone, or data too
    transfer(link, to_b, to_a)
    assert dropped, "the test's loss never happened"
    assert bytes(link.b.received) == to_b and bytes(link.a.received) == to_a
    assert link.a.closed_reason == link.b.closed_reason == "closed"
    assert link.violations == []
    if lost in ("data", "last ack", "syn", "fin"):
        assert link.a.endpoint.retransmissions >= 1
    if lost == "syn":  # the SYN goes again after the initial RTO of 1 s (RFC 6298 2.1)
        assert [s.time for s in link.from_("a", SYN)] == [0, NS_PER_S]
    if lost == "syn-ack":  # b answers a's second SYN with its SYN-ACK again
        assert len(link.from_("b", SYN | ACK)) >= 2


def test_after_a_lost_syn_the_rto_is_three_seconds_until_an_rtt_is_measured():
    link = Link(fate=lambda segment, index: [] if segment.flags == SYN and index == 0 else None)
    a = link.a.endpoint
    a.open()
    link.run(1.5)
    assert a.state is S.ESTABLISHED and a.rto == 3 * NS_PER_S  # RFC 6298 5.7
    link.a.write(payload(3000))
    link.run(1)
    assert a.rto == 200 * MS  # the data's RTT (10 ms) was measured: back to the 200 ms floor


def test_a_lost_segment_in_a_window_is_fast_retransmitted_before_the_rto(tmp_path):
    lost = []

    def fate(segment, index):
        if segment.src == "a" and index == 8:  # the 7th segment of the initial window
            lost.append(segment)
            return []
        return None
    link = connected(fate=fate)
    transfer(link, payload(100_000), b"")
    resent = [s for s in link.data_segments("a") if s.seq == lost[0].seq]
    assert len(resent) == 2 and resent[1].time - resent[0].time < 50 * MS  # three duplicate ACKs, not the RTO
    duplicates = [s for s in acks_from(link, "b") if s.ack == lost[0].seq]
    assert len(duplicates) >= 4  # the ACK up to the hole, then at least three duplicates of it
    assert link.a.closed_reason == "closed" and link.a.endpoint.retransmissions == 1
    capture = tmp_path / "capture-fast-retransmit.pcapng"
    write_capture(link, capture)
    assert_passes_gate(capture)
    assert fields(capture, ["tcp.seq_raw"], "tcp.analysis.fast_retransmission") == [[str(lost[0].seq)]]


def test_rto_doubles_to_the_maximum_and_the_connection_times_out_like_linux(tmp_path):
    link = connected()
    link.fate = lambda segment, index: [] if segment.src == "a" else None  # a's path goes dark
    start = link.sim.now
    link.a.endpoint.send(payload(5000))
    link.run(2000)
    times = sorted({s.time for s in link.data_segments("a")})
    gaps = [t2 - t1 for t1, t2 in zip(times, times[1:])]
    # RTT 10 ms from the handshake -> RTO 200 ms (the minimum), doubling up to 120 s, 15 times (tcp_retries2).
    assert gaps == [min(200 * MS << k, 120 * NS_PER_S) for k in range(15)]
    assert link.a.closed_reason == "timeout: 15 retransmissions unanswered"
    closed_at = [e for e in link.a.events if e[0] == "closed"][0][1]
    assert closed_at - start == pytest.approx(924.6 * NS_PER_S, abs=1 * MS)  # Linux's documented 924.6 s
    assert not link.from_("a", RST)  # a timeout sends no RST
    assert link.a.endpoint.state is S.CLOSED
    capture = tmp_path / "capture-rto.pcapng"
    write_capture(link, capture)
    assert_passes_gate(capture)
    assert len(fields(capture, ["frame.number"], "tcp.analysis.retransmission")) == 15


def test_syn_retries_then_a_timeout_after_127_seconds():
    link = Link(fate=lambda segment, index: [])
    link.a.endpoint.open()
    link.run(300)
    assert [s.time // NS_PER_S for s in link.from_("a", SYN)] == [0, 1, 3, 7, 15, 31, 63]
    assert link.a.closed_reason == "timeout: no answer to the SYN after 6 retransmissions"
    assert link.a.events[-1][1] == 127 * NS_PER_S


def test_syn_ack_retries_then_a_timeout():
    link = Link(fate=lambda segment, index: [] if segment.src == "b" else None)
    link.a.endpoint.open()
    link.run(300)
    assert link.b.closed_reason == "timeout: no answer to the SYN-ACK after 5 retransmissions"
    assert link.b.count("established") == 0


# -- closing -------------------------------------------------------------------------------------------------

def test_the_side_that_closes_first_waits_in_time_wait_and_the_other_may_still_send():
    link = connected()
    a, b = link.ends
    a.close()
    link.run(0.1)
    assert a.state is S.FIN_WAIT_2 and b.state is S.CLOSE_WAIT and link.b.count("fin") == 1
    reply = payload(20_000)
    b.send(reply)  # a half-closed connection still carries b's data
    link.run(0.1)
    assert bytes(link.a.received) == reply
    start = link.sim.now
    b.close()
    assert b.state is S.LAST_ACK
    link.run(5)
    assert link.b.closed_reason == "closed" and link.b.events[-1][1] == start + 10 * MS
    assert link.a.closed_reason == "closed" and link.a.events[-1][1] == start + 5 * MS + 2 * NS_PER_S


def test_the_passive_side_may_close_first():
    link = connected()
    a, b = link.ends
    b.close()
    link.run(0.1)
    assert b.state is S.FIN_WAIT_2 and a.state is S.CLOSE_WAIT
    a.close()
    link.run(0.1)
    assert a.state is S.CLOSED and b.state is S.TIME_WAIT
    link.run(3)
    assert link.b.closed_reason == "closed"


def test_simultaneous_close_goes_through_closing():
    link = connected()
    a, b = link.ends
    a.close()
    b.close()
    assert a.state is S.FIN_WAIT_1 and b.state is S.FIN_WAIT_1
    link.run(0.006)  # each FIN arrived, not its ACK yet
    assert a.state is S.CLOSING and b.state is S.CLOSING
    link.run(0.006)
    assert a.state is S.TIME_WAIT and b.state is S.TIME_WAIT
    link.run(3)
    assert link.a.closed_reason == link.b.closed_reason == "closed"


def test_close_waits_for_queued_data_and_a_handshake():
    link = Link()
    a = link.a.endpoint
    a.send(b"queued before the handshake")
    a.open()
    a.close()
    assert a.state is S.SYN_SENT
    link.run(5)
    assert bytes(link.b.received) == b"queued before the handshake" and link.b.count("fin") == 1
    fin = link.from_("a", FIN)[0]
    assert fin.length == len(b"queued before the handshake") and fin.flags & PSH  # the FIN rides on the data


def test_a_retransmitted_fin_is_acknowledged_again_and_restarts_time_wait():
    link = connected()
    a, b = link.ends
    a.close()
    link.run(0.1)
    b.close()
    link.run(0.1)
    assert a.state is S.TIME_WAIT and b.state is S.CLOSED
    fin = link.from_("b", FIN)[0]
    link.fate = lambda segment, index: [] if segment.src == "b" else None  # b is gone (no RST for a's ACK)
    link.run(1.5)
    before = len(link.segments)
    a.receive(fin.seq, fin.ack, fin.flags, fin.window, b"")  # as if a's ACK had been lost
    again = link.segments[before:]
    assert [(s.flags, s.ack) for s in again] == [(ACK, (fin.seq + 1) & 0xFFFFFFFF)]
    link.run(1.9)
    assert a.state is S.TIME_WAIT  # more than 2 s after the first FIN, less after the second
    link.run(0.2)
    assert a.state is S.CLOSED and link.a.closed_reason == "closed"


# -- resets (RFC 5961) ---------------------------------------------------------------------------------------

def test_a_reset_at_exactly_the_next_sequence_number_closes():
    link = connected()
    b = link.b.endpoint
    b.receive(1001, 0, RST, 0, b"")
    assert b.state is S.CLOSED and link.b.closed_reason == "reset by the peer"


def test_a_reset_elsewhere_in_the_window_gets_a_challenge_ack_and_one_outside_nothing():
    link = connected()
    b = link.b.endpoint
    before = len(link.segments)
    b.receive(1001 + 100, 0, RST, 0, b"")
    assert b.state is S.ESTABLISHED
    challenge = link.segments[before:]
    assert [(s.flags, s.ack) for s in challenge] == [(ACK, 1001)]
    b.receive(1001 + 70_000, 0, RST, 0, b"")  # beyond the 65535-byte window
    b.receive(1001 - 10, 0, RST, 0, b"")  # behind it
    assert b.state is S.ESTABLISHED and len(link.segments) == before + 1
    assert link.b.closed_reason is None


def test_a_syn_on_an_established_connection_gets_a_challenge_ack():
    link = connected()
    b = link.b.endpoint
    before = len(link.segments)
    b.receive(77, 0, SYN, 65535, b"", 1460)
    assert b.state is S.ESTABLISHED and [(s.flags, s.ack) for s in link.segments[before:]] == [(ACK, 1001)]


def test_abort_resets_the_peer_with_an_exact_sequence_number():
    link = connected()
    link.a.write(payload(10_000))
    link.run(1)
    link.b.endpoint.abort("drain expired")
    rst = link.segments[-1]
    assert rst.flags == RST | ACK and rst.seq == link.b.endpoint.iss + 1
    link.run(1)
    assert link.b.closed_reason == "aborted: drain expired"
    assert link.a.closed_reason == "reset by the peer"


def test_abort_with_data_in_flight_completes_through_the_challenge_ack():
    link = connected(fate=lambda segment, index: [] if segment.src == "b" and index == 3 else None)
    link.b.write(payload(30_000))  # one segment lost: b's RST lands in a's window but not at its next byte
    link.b.endpoint.abort("scale in")
    link.run(1)
    a_challenges = [s for s in acks_from(link, "a")]
    assert a_challenges, "a answered the inexact RST with a challenge ACK"
    final = link.from_("b", RST)[-1]
    assert final.flags == RST and final.seq == a_challenges[-1].ack  # the closed end answers it exactly
    assert link.a.closed_reason == "reset by the peer"


def test_a_reset_in_answer_to_the_syn_is_a_refusal():
    link = Link(fate=lambda segment, index: [] if segment.src == "b" else None)
    a = link.a.endpoint
    a.open()
    a.receive(0, 1001, RST | ACK, 0, b"")
    assert link.a.closed_reason == "refused: the peer reset the connection attempt"
    a.receive(0, 999, RST | ACK, 0, b"")  # after the end: a RST gets nothing
    assert link.from_("a", RST) == []


def test_a_closed_endpoint_answers_like_a_closed_port():
    link = connected()
    a = link.a.endpoint
    a.abort("test")
    a.receive(5000, 4242, ACK, 100, b"data")
    assert (link.segments[-1].flags, link.segments[-1].seq) == (RST, 4242)
    a.receive(5000, 0, SYN, 100, b"")
    assert (link.segments[-1].flags, link.segments[-1].ack) == (RST | ACK, 5001)


def test_an_ack_in_syn_received_that_does_not_cover_the_syn_is_reset():
    link = Link()
    b = link.b.endpoint
    b.accept(5000, 1460)
    b.receive(5001, 12345, ACK, 65535, b"")
    assert b.state is S.SYN_RECEIVED and (link.segments[-1].flags, link.segments[-1].seq) == (RST, 12345)


# -- sequence numbers wrap ---------------------------------------------------------------------------------

def test_sequence_numbers_wrap_past_two_to_the_32(tmp_path):
    link = Link(isn_a=2**32 - 5000, isn_b=2**32 - 1, fate=lambda s, i: [] if s.src == "a" and i == 6 else None)
    link.a.endpoint.open()
    to_b, to_a = payload(100_000), payload(100_000, 1)
    transfer(link, to_b, to_a)
    assert bytes(link.b.received) == to_b and bytes(link.a.received) == to_a
    assert link.a.closed_reason == link.b.closed_reason == "closed"
    a_seqs = [s.seq for s in link.data_segments("a")]
    assert max(a_seqs) > 2**32 - 5000 and min(a_seqs) < 100_000  # both sides of the wrap
    assert link.segments[1].seq == 2**32 - 1 and link.segments[2].ack == 0  # b's SYN took the last number
    capture = tmp_path / "capture-wrap.pcapng"
    write_capture(link, capture)
    assert_passes_gate(capture)


def test_unwrap_is_modular():
    assert unwrap(5, 2**32 - 10) == 2**32 + 5
    assert unwrap(2**32 - 10, 2**32 + 5) == 2**32 - 10
    assert unwrap(7, 7 + 3 * 2**32) == 7 + 3 * 2**32


# -- the state table ----------------------------------------------------------------------------------------

def test_every_state_is_in_the_table_and_closed_is_final():
    assert set(TRANSITIONS) == set(EndpointState)
    assert TRANSITIONS[S.CLOSED] == {}
    for events in TRANSITIONS.values():
        assert set(events.values()) <= set(EndpointState)


@pytest.mark.parametrize("call", ["accept", "open", "send after close", "close twice", "receive before open",
                                  "abort closed"])
def test_an_illegal_event_raises_and_changes_nothing(call):
    link = connected()
    a = link.a.endpoint
    if call == "accept":
        action = lambda: a.accept(1, 1460)  # noqa: E731
    elif call == "open":
        action = a.open
    elif call == "send after close":
        a.close()
        action = lambda: a.send(b"late")  # noqa: E731
    elif call == "close twice":
        a.close()
        action = a.close
    elif call == "receive before open":
        a = TcpEndpoint(link.sim, 1, transmit=lambda *f: None, on_established=lambda: None,
                        on_data=lambda d: None, on_fin=lambda: None, on_closed=lambda r: None)
        action = lambda: a.receive(1, 1, ACK, 100, b"")  # noqa: E731
    else:
        a.abort("first")
        action = lambda: a.abort("second")  # noqa: E731
    state, segments = a.state, len(link.segments)
    with pytest.raises(IllegalTransition):
        action()
    assert a.state is state and len(link.segments) == segments


@pytest.mark.parametrize("option, value", [("isn", -1), ("isn", 2**32), ("mss", 0), ("receive_buffer", 65536),
                                           ("receive_buffer", 0), ("send_buffer", 0)])
def test_bad_construction_is_refused(option, value):
    options = {"isn": 1, option: value}
    isn = options.pop("isn")
    with pytest.raises(ValueError, match=option):
        TcpEndpoint(Simulator(), isn, transmit=lambda *f: None, on_established=lambda: None,
                    on_data=lambda d: None, on_fin=lambda: None, on_closed=lambda r: None, **options)


# -- the reassembly queue and the property test ---------------------------------------------------------------

@given(st.data())
def test_reassembly_holds_each_byte_once_and_returns_the_stream_in_order(data):
    base = data.draw(st.integers(0, 2**40))
    stream = data.draw(st.binary(min_size=1, max_size=400))
    pieces = data.draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 60)), max_size=40))
    queue = Reassembly()
    covered: set[int] = set()
    for start, size in pieces:
        queue.add(base + start, stream[start:start + size])
        covered.update(range(start, min(start + size, len(stream))))
    assert queue.held == len(covered)  # overlaps are trimmed, never stored twice
    prefix = 0
    while prefix in covered:
        prefix += 1
    assert b"".join(queue.pop_ready(base)) == stream[:prefix]
    queue.add(base, stream)  # the whole stream: what is still held joins it without a seam
    assert b"".join(queue.pop_ready(base + prefix)) == stream[prefix:]
    assert queue.held == 0


#: Kilobytes by the hundred, then bytes: Hypothesis draws small integers far more often than large ones.
SIZES = st.builds(lambda kilobytes, extra: kilobytes * 1000 + extra, st.integers(0, 200), st.integers(0, 1500))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size_a=SIZES, size_b=SIZES,
       loss=st.floats(0, 0.3), reorder=st.floats(0, 0.3), duplicate=st.floats(0, 0.1),
       isn_a=st.integers(0, 2**32 - 1), isn_b=st.integers(0, 2**32 - 1), slow_reader=st.booleans(),
       blackout=st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.integers(1, 2000))))
def test_bytes_arrive_whole_and_in_order_or_the_connection_says_why(seed, size_a, size_b, loss, reorder, duplicate,
                                                                       isn_a, isn_b, slow_reader, blackout):
    rng = random.Random(seed)

    def fate(segment, index):
        if blackout and blackout[0] * MS <= segment.time < (blackout[0] * MS + blackout[1] * NS_PER_S):
            return []  # the path is down (long enough, the connection gives up)
        if rng.random() < loss:
            return []
        delay = 5 * MS + (rng.randrange(1, 30) * MS if rng.random() < reorder else 0)
        if rng.random() < duplicate:
            return [delay, delay + rng.randrange(0, 20) * MS]
        return [delay]
    link = Link(isn_a=isn_a, isn_b=isn_b, fate=fate, b={"receive_buffer": rng.choice([3000, 20000, 65535])})
    if slow_reader:  # b's owner forwards each chunk 50 ms after it arrived: b's window closes and opens
        link.b.consume_delay = 50 * MS
    link.a.endpoint.open()
    to_b, to_a = payload(size_a, seed), payload(size_b, seed + 1)
    transfer(link, to_b, to_a, seconds=6000)
    for app, sent in ((link.b, to_b), (link.a, to_a)):
        assert sent.startswith(bytes(app.received)), "delivered bytes are not a prefix of what was sent"
    if link.b.endpoint.state is S.INITIAL:  # no SYN ever got through: b never opened
        assert link.a.closed_reason == "timeout: no answer to the SYN after 6 retransmissions"
        event("gave up: no SYN got through")
        return
    reasons = (link.a.closed_reason, link.b.closed_reason)
    for app, other in ((link.a, link.b), (link.b, link.a)):
        if app.closed_reason is None:  # without keep-alive a side with nothing to send waits for ever, as TCP does
            assert other.closed_reason.startswith("timeout: "), "a connection neither finished nor gave up"
            assert app.endpoint.unacknowledged == 0 and app.endpoint.state in (S.ESTABLISHED, S.FIN_WAIT_2)
            event("one side waits, idle, after the other gave up")
            reasons = ("closed", other.closed_reason)
    if reasons == ("closed", "closed"):
        assert bytes(link.b.received) == to_b and bytes(link.a.received) == to_a
        event("closed normally")
    else:
        assert all(r == "closed" or r.startswith(("timeout: ", "reset by the peer", "refused: ")) for r in reasons), reasons
        event("gave up: " + " / ".join(sorted(r.split(":")[0] for r in reasons)))
    if link.a.endpoint.retransmissions + link.b.endpoint.retransmissions:
        event("recovered from loss by retransmission")
    if link.probes["a"]:
        event("probed a zero window")
    assert link.violations == []
