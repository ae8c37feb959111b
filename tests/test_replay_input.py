"""Replay of captures as real hosts record them: offloaded checksums, snap-length cuts, fragments, rates,
link types and containers, the per-frame account, the timeline, and options that cannot run for ever."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_passes_gate, fields
from dataplane.replay import synth
from dataplane.replay.options import parse_match
from dataplane.testing import check
from dataplane.wire import capture_reader, frames
from dataplane.wire.pcapng import PcapngWriter
from test_replay import REAL, REAL_ARP, REAL_FLOWS, REAL_PACKETS, _cli, assert_clean_per_hop, replay, \
    replay_scenario

RECORDS = [(r.time_ns, r.data) for r in capture_reader.open_capture(REAL)]
CLIENT_IP = frames.ip_bytes("192.0.2.1")


def from_client(frame: bytes) -> bool:
    return frame[12:14] == b"\x08\x00" and frame[26:30] == CLIENT_IP


def write(tmp_path: Path, name: str, records, **kwargs) -> Path:
    path = tmp_path / name
    synth.write_pcap(path, records, **kwargs)
    return path


def account(summary: dict) -> list[dict]:
    with open(summary["outputs"]["replay.csv"], newline="") as handle:
        return list(csv.DictReader(handle))


def flow_rows(summary: dict) -> list[dict]:
    with open(summary["outputs"]["replay-flows.csv"], newline="") as handle:
        return list(csv.DictReader(handle))


def assert_account(summary: dict, frames_per_loop: int, loops: int = 1) -> list[dict]:
    """replay.csv lists every input frame exactly once, in input order, and agrees with the summary and
    with the capture: each replayed frame's output frame is the captured frame whose comment names it."""
    rows = account(summary)
    assert [(int(r["loop"]), int(r["frame"])) for r in rows] == \
        [(loop, n) for loop in range(1, loops + 1) for n in range(1, frames_per_loop + 1)]
    rep = summary["replay"]
    actions = {action: sum(r["action"] == action for r in rows) for action in rep["account"]}
    assert actions == rep["account"]
    assert actions["skipped"] == rep["skipped_packets"]
    assert actions["reassembled"] == rep["reassembled_fragments"]
    assert actions["replayed"] + actions["not_sent"] + actions["lost"] == rep["replayed_packets"]
    assert rep["input_packets"] == rep["replayed_packets"] + rep["skipped_packets"] + rep["reassembled_fragments"]
    comments = dict(fields(Path(summary["outputs"]["capture.pcapng"]), ["frame.number", "frame.comment"]))
    for row in rows:
        if row["action"] == "replayed" and row["output_frame"]:
            mark = f"recorded frame {row['frame']}" + (f" of loop {row['loop']}" if row["loop"] != "1" else "")
            comment = comments[row["output_frame"]]
            assert mark in comment and f"{mark}0" not in comment, (row, comment)
        assert bool(row["reason"]) == (row["action"] in ("skipped", "not_sent", "lost")), row
    return rows


# -- checksums ---------------------------------------------------------------------------

def offloaded(how: str) -> list[tuple[int, bytes]]:
    """The real capture as its client host would have recorded it: its own frames' TCP checksums
    left for the NIC (``mixed``: zero, pseudo-header sum and one plainly wrong, in turn)."""
    out, turn = [], 0
    for time_ns, frame in RECORDS:
        if from_client(frame):
            kind = how if how != "mixed" else ("zero", "partial", "wrong")[turn % 3]
            turn += 1
            if kind == "wrong":
                frame = frame[:50] + bytes([frame[50] ^ 0x5A]) + frame[51:]
            else:
                frame = synth.offload(frame, kind)
        out.append((time_ns, frame))
    return out


CLIENT_FRAMES = sum(from_client(f) for _, f in RECORDS)


@pytest.mark.parametrize("how", ["zero", "partial", "mixed"])
def test_offloaded_checksums_are_fixed_before_they_enter_and_counted(tmp_path, how):
    summary = replay(tmp_path, write(tmp_path, f"offload-{how}.pcap", offloaded(how)))  # the gate: every frame
    rep = summary["replay"]
    assert rep["checksums_fixed"] == {"ipv4": 0, "tcp": CLIENT_FRAMES, "udp": 0}
    assert rep["flows"]["completed"] == REAL_FLOWS and summary["drops"] == {}
    capture = summary["_out"] / "capture.pcapng"
    assert_clean_per_hop(capture, summary, tmp_path)
    routed = [c for (c,) in fields(capture, ["frame.comment"], 'frame.comment contains "gw route"')]
    assert len(routed) == CLIENT_FRAMES and all("tcp checksum fixed: recorded 0x" in c for c in routed)
    if how == "zero":
        assert all("recorded 0x0000, likely offload" in c for c in routed)
    if how == "mixed":
        assert sum("likely offload" in c for c in routed) == 2 * CLIENT_FRAMES // 3 + (CLIENT_FRAMES % 3 > 0)
        assert any(", should be 0x" in c for c in routed)
    rows = assert_account(summary, REAL_PACKETS)
    assert sum("tcp checksum fixed" in r["detail"] for r in rows) == CLIENT_FRAMES


def assert_only_kept_checksums(summary: dict, frames_kept: int) -> None:
    """The gate's only findings in a --keep-checksums capture are the frames kept on purpose, so commented."""
    findings = check.check_capture(summary["_out"] / "capture.pcapng", use_tshark=True)
    assert len({f.number for f in findings}) == frames_kept
    assert all("kept as recorded" in f.comment and "a real SE drops it" in f.comment for f in findings)


def test_keep_checksums_replays_them_as_recorded_and_the_se_drops_them(tmp_path):
    records = offloaded("zero")
    syn = next(i for i, (_, f) in enumerate(records) if from_client(f) and f[47] == frames.SYN)
    bad_ip = bytearray(records[syn][1])
    bad_ip[24:26] = b"\x00\x00"                     # its IPv4 header checksum left out as well
    records[syn] = (records[syn][0], bytes(bad_ip))
    summary = replay(tmp_path, write(tmp_path, "keep.pcap", records), gate=False, keep_checksums=True)
    rep = summary["replay"]
    assert rep["checksums_fixed"] == {"ipv4": 0, "tcp": 0, "udp": 0}
    # Each flow's SYN goes out as recorded and the primary drops it; nothing else of the flow follows.
    assert summary["drops"] == {"bad_ipv4_checksum": 1, "bad_tcp_checksum": REAL_FLOWS - 1}
    assert rep["checksums_kept"]["tcp"] >= REAL_FLOWS and rep["checksums_kept"]["ipv4"] == 1
    assert rep["flows"]["stalled"] == REAL_FLOWS
    assert_only_kept_checksums(summary, REAL_FLOWS)
    rows = assert_account(summary, REAL_PACKETS)
    assert {r["reason"] for r in rows if r["action"] == "not_sent"} == {"flow_stalled"}


def test_bad_checksum_agrees_with_scapy():
    from scapy.layers.inet import IP, TCP, UDP
    from dataplane.wire.checksum import bad_checksum

    for proto in (TCP(sport=1, dport=2, flags="PA"), UDP(sport=1, dport=2)):
        for payload in (b"", b"x", b"odd length!", bytes(range(200))):
            good = b"\x02" * 12 + b"\x08\x00" + bytes(IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x01" * 4)
                                                       / proto / payload)
            assert bad_checksum(good) is None
            broken = bytearray(good)
            broken[-1 if payload else 14 + 24] ^= 1   # the last payload byte, or the source port
            assert bad_checksum(bytes(broken)) == proto.name.lower()
    frame = frames.udp_frame(b"\x02" * 6, b"\x02" * 6, CLIENT_IP, CLIENT_IP, 1, 2, b"abc")
    assert bad_checksum(frame[:40] + b"\x00\x00" + frame[42:]) is None       # UDP: zero means none


# -- snap length ----------------------------------------------------------------------------

def test_a_snaplen_96_capture_replays_with_its_cut_payload_filled(tmp_path):
    cut = sum(len(f) > 96 for _, f in RECORDS)
    summary = replay(tmp_path, write(tmp_path, "s96.pcap", RECORDS, snaplen=96))
    rep = summary["replay"]
    assert rep["snaplen_filled"] == cut and rep["flows"]["completed"] == REAL_FLOWS
    assert rep["checksums_fixed"] == {"ipv4": 0, "tcp": 0, "udp": 0}   # recomputed with the fill, not "fixed"
    capture = summary["_out"] / "capture.pcapng"
    assert_clean_per_hop(capture, summary, tmp_path)
    # A 1448-byte response segment keeps its first 30 bytes and lengths; the rest is zeros.
    big = fields(capture, ["tcp.payload"], 'frame.interface_name == "backend" && tcp.len == 1448 '
                                           '&& frame.comment contains "recorded frame"')
    assert big and all(p[60:] == "0" * (2 * 1448 - 60) and p[:60] != "0" * 60 for (p,) in big)
    rows = assert_account(summary, REAL_PACKETS)
    assert sum("cut by the snap length filled with zeros" in r["detail"] for r in rows) == cut
    skipped = replay(tmp_path, write(tmp_path, "s96b.pcap", RECORDS, snaplen=96), "skip",
                     skip_truncated_frames=True)
    assert skipped["skipped"] == {"not_ip": REAL_ARP, "snaplen_truncated": cut}


def test_frames_cut_inside_their_headers_are_skipped(tmp_path):
    summary = replay(tmp_path, write(tmp_path, "s40.pcap", RECORDS, snaplen=40))
    assert summary["skipped"] == {"not_ip": REAL_ARP, "snaplen_headers": REAL_PACKETS - REAL_ARP}
    assert_account(summary, REAL_PACKETS)


# -- fragments ------------------------------------------------------------------------------

def fragmented(overlap_in: int | None = None) -> tuple[list, int]:
    """The real capture with each full-size segment recorded as three fragments, last first, and the
    middle one twice (a duplicate).  ``overlap_in``: the k-th such datagram also gets a fragment that
    overlaps two others partially."""
    out, count = [], 0
    for time_ns, frame in RECORDS:
        if len(frame) < 1500:
            out.append((time_ns, frame))
            continue
        pieces = [synth.ip_fragment(frame, 0, 512, True), synth.ip_fragment(frame, 512, 512, True),
                  synth.ip_fragment(frame, 1024, 1480 - 1024, False)]
        order = [pieces[2], pieces[1], pieces[1]] + ([synth.ip_fragment(frame, 256, 512, True)]
                                                     if count == overlap_in else []) + [pieces[0]]
        out += [(time_ns + i, piece) for i, piece in enumerate(order)]
        count += 1
    return out, count


def test_out_of_order_and_duplicate_fragments_are_reassembled(tmp_path):
    records, datagrams = fragmented()
    summary = replay(tmp_path, write(tmp_path, "frag.pcap", records))
    rep = summary["replay"]
    assert rep["fragments"] == {"datagrams_reassembled": datagrams, "entered_whole": datagrams,
                                "entered_as_fragments": 0}
    assert summary["skipped"] == {"not_ip": REAL_ARP, "fragment_duplicate": datagrams}
    assert rep["flows"]["completed"] == REAL_FLOWS and rep["reassembled_fragments"] == 2 * datagrams
    assert_clean_per_hop(summary["_out"] / "capture.pcapng", summary, tmp_path)
    rows = assert_account(summary, len(records))
    whole = [r for r in rows if "reassembled from input frames" in r["detail"]]
    assert len(whole) == datagrams and all("entered whole" in r["detail"] and r["output_frame"] for r in whole)
    parts = [r for r in rows if r["action"] == "reassembled"]
    assert all(r["flow"] and "part of the datagram input frame" in r["detail"] for r in parts)


def test_a_partly_overlapping_fragment_discards_its_datagram(tmp_path):
    records, _ = fragmented(overlap_in=0)
    summary = replay(tmp_path, write(tmp_path, "overlap.pcap", records))
    # The first full-size segment's datagram is gone with the two fragments held and the overlapping
    # one; its first fragment, recorded after them, starts a datagram of its own that never
    # completes.  The flow goes on without that segment.
    assert summary["skipped"]["fragment_overlap"] == 3 and summary["skipped"]["fragment_incomplete"] == 1
    assert summary["replay"]["fragments"]["datagrams_reassembled"] == 7
    assert summary["replay"]["packets"]["recorded"] == REAL_PACKETS - REAL_ARP - 1
    assert summary["replay"]["flows"]["completed"] == REAL_FLOWS
    rows = assert_account(summary, len(records))
    assert [r["reason"] for r in rows if r["reason"].startswith("fragment_")].count("fragment_overlap") == 3


def test_a_datagram_over_the_mtu_enters_as_fragments_again(tmp_path):
    mac_c, mac_s = synth.CLIENT_MAC, synth.SERVER_MAC
    server = frames.ip_bytes("192.0.2.80")
    t0 = 1_700_000_000 * 10**9
    request = b"POST / HTTP/1.1\r\n\r\n" + b"p" * 2981
    big = frames.tcp_frame(mac_s, mac_c, CLIENT_IP, server, 4000, 80, 101, 501, frames.PSH | frames.ACK, request)
    records = [(t0, frames.tcp_frame(mac_s, mac_c, CLIENT_IP, server, 4000, 80, 100, 0, frames.SYN)),
               (t0 + 10**5, frames.tcp_frame(mac_c, mac_s, server, CLIENT_IP, 80, 4000, 500, 101,
                                             frames.SYN | frames.ACK)),
               (t0 + 2 * 10**5, frames.tcp_frame(mac_s, mac_c, CLIENT_IP, server, 4000, 80, 101, 501, frames.ACK))]
    records += [(t0 + 3 * 10**5 + i, synth.ip_fragment(big, offset, 1480 if offset < 2960 else 3020 - 2960,
                                                       offset < 2960))
                for i, offset in enumerate((0, 1480, 2960))]
    summary = replay(tmp_path, write(tmp_path, "jumbo.pcap", records))
    assert summary["replay"]["fragments"]["entered_as_fragments"] == 1
    # The emulated SEs do not reassemble IPv4: the primary drops the three fragments it is sent.
    assert summary["drops"] == {"se_unsupported": 3} and summary["replay"]["flows"]["stalled"] == 1
    capture = summary["_out"] / "capture.pcapng"
    routed = fields(capture, ["ip.frag_offset", "ip.flags.mf", "frame.comment"],
                    'frame.comment contains "recorded frame 6"')
    assert [(r[0], r[1]) for r in routed] == [("0", "1"), ("185", "1"), ("370", "0")]   # 8-byte units
    assert "reassembled from input frames 4, 5, 6; entered as 3 fragments" in routed[0][2]
    assert_account(summary, len(records))


# -- rates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pace", ["pps", "mbps"])
def test_pps_and_mbps_give_every_input_frame_its_slot_in_virtual_time(tmp_path, pace):
    options = {"pps": 200.0} if pace == "pps" else {"mbps": 0.5}
    summary = replay(tmp_path, REAL, pace, **options)
    assert summary["replay"]["flows"]["completed"] == REAL_FLOWS
    assert summary["replay"]["timing"] == ("200 packets/s" if pace == "pps" else "0.5 Mbit/s")
    slots, bits = {}, 0
    for number, (_, frame) in enumerate(RECORDS, 1):
        bits += 8 * len(frame)
        slots[number] = (number - 1) / 200 if pace == "pps" else bits / 0.5e6
    for row in assert_account(summary, REAL_PACKETS):
        if row["action"] == "replayed":
            # The router forwards a client frame one access-link latency after its slot; a server
            # sends its frame in its slot (everything it answers arrived long before).
            late = int(row["output_time_ns"]) / 1e9 - slots[int(row["frame"])]
            assert 0 <= late <= 100e-6, (row, late)


# -- containers and link types ----------------------------------------------------------

def test_a_gzip_capture_replays_exactly_like_the_plain_one(tmp_path):
    packed = tmp_path / "real.pcap.gz"
    packed.write_bytes(gzip.compress(REAL.read_bytes()))
    plain, zipped = replay(tmp_path, REAL, "plain"), replay(tmp_path, packed, "gz")
    assert (zipped["_out"] / "capture.pcapng").read_bytes() == (plain["_out"] / "capture.pcapng").read_bytes()
    assert zipped["replay"]["flows"] == plain["replay"]["flows"]
    assert_account(zipped, REAL_PACKETS)


def test_a_cut_gzip_capture_replays_what_is_whole_then_exits_2(tmp_path, capsys):
    packed = tmp_path / "cut.pcap.gz"
    packed.write_bytes(gzip.compress(REAL.read_bytes())[:-400])
    out = tmp_path / "cut"
    assert _cli(tmp_path, packed, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(uncompressed): frame" in err[0] and "compressed stream ends" in err[0], err
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["replay"]["input_packets"] < REAL_PACKETS
    assert _cli(tmp_path, packed, "--out", str(tmp_path / "ok"), "--allow-truncated") == 0
    assert_passes_gate(out / "capture.pcapng")
    assert_passes_gate(tmp_path / "ok" / "capture.pcapng")


@pytest.mark.parametrize("how,linktype", [("null", 0), ("loop", 108), ("raw", 228)])
def test_loopback_and_raw_ipv4_captures_replay(tmp_path, how, linktype):
    kept = [(t, synth.relink(f, how)) for t, f in RECORDS if f[12:14] == b"\x08\x00"]
    summary = replay(tmp_path, write(tmp_path, f"{how}.pcap", kept, linktype=linktype))
    assert summary["replay"]["flows"]["completed"] == REAL_FLOWS and summary["skipped"] == {}


def multi_interface_capture(tmp_path: Path) -> Path:
    """Flows 1-2 on an Ethernet interface, flows 3-5 on a Linux cooked one, and a USB interface."""
    path = tmp_path / "multi.pcapng"
    third_flow = next(i for i, (_, f) in enumerate(RECORDS) if from_client(f) and f[47] == frames.SYN
                      and i > 20)
    with open(path, "wb") as handle, PcapngWriter(handle, application="test") as writer:
        eth = writer.add_interface("eth0")
        usb = writer.add_interface("usbmon0", linktype=220)
        sll = writer.add_interface("any", linktype=113)
        for index, (time_ns, frame) in enumerate(RECORDS):
            if index < third_flow:
                writer.write_frame(eth, time_ns, frame)
            else:
                writer.write_frame(sll, time_ns, synth.relink(frame, "sll"))
            if index % 10 == 0:
                writer.write_frame(usb, time_ns, b"\x00" * 48)
    return path


def test_a_pcapng_with_several_link_types_replays_every_decodable_interface(tmp_path):
    path = multi_interface_capture(tmp_path)
    total = len(capture_reader.read_all(path))
    summary = replay(tmp_path, path)
    assert summary["replay"]["flows"]["completed"] == REAL_FLOWS
    assert summary["skipped"] == {"not_ip": REAL_ARP, "unsupported_link_type": 8}
    assert_account(summary, total)
    for chosen in ("0", "eth0"):
        only = replay(tmp_path, path, f"only-{chosen}", interface=chosen)
        assert only["replay"]["flows"]["completed"] == 2 and only["replay"]["interface"] == chosen
        assert only["skipped"]["other_interface"] == total - sum(1 for r in capture_reader.read_all(path)
                                                                 if r.interface == 0)
    assert replay(tmp_path, path, "any", interface="any")["replay"]["flows"]["completed"] == 3


@pytest.mark.parametrize("choice,needle", [("usbmon0", "unsupported link type 220"),
                                           ("wlan0", "--interface wlan0: no such interface (the capture has 0 "
                                                     "'eth0' (link type 1), 1 'usbmon0' (link type 220)")])
def test_an_interface_that_cannot_be_replayed_is_refused_up_front(tmp_path, capsys, choice, needle):
    assert _cli(tmp_path, multi_interface_capture(tmp_path), "--interface", choice,
                "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


# -- flows, account, timeline --------------------------------------------------------------

def test_a_flow_without_fin_or_rst_is_open_at_end_of_capture(tmp_path):
    summary = replay(tmp_path, REAL, limit=10)    # the first connection's request and response only
    assert summary["replay"]["flows"] == {"total": 1, "completed": 0, "open_at_end": 1, "reset": 0, "stalled": 0}
    assert summary["flows"]["open"] == 1
    (flow,) = flow_rows(summary)
    assert flow["outcome"] == "open_at_end" and flow["first_frame"] == "3" and flow["last_frame"] == "10"
    assert_account(summary, 10)


def test_the_account_covers_every_frame_of_every_loop(tmp_path):
    summary = replay(tmp_path, REAL, loop=3)
    rows = assert_account(summary, REAL_PACKETS, loops=3)
    assert {r["se"] for r in rows if r["action"] == "replayed"} <= {"se-1", "se-2", "se-3", "se-4"}
    assert all(r["flow"] and r["se"] for r in rows if r["action"] == "replayed")
    flows = flow_rows(summary)
    assert [int(f["flow"]) for f in flows] == list(range(1, 3 * REAL_FLOWS + 1))
    assert {f["outcome"] for f in flows} == {"completed"}


def test_an_account_that_waits_on_a_stalled_flow_stays_in_input_order(tmp_path, monkeypatch):
    # A flow that stalls holds its rows to the end; with room for only 8 waiting rows, the rows
    # behind it are written first and the held ones merged back into place at the end.
    from dataplane.replay import account as account_mod
    monkeypatch.setattr(account_mod, "MAX_WAITING", 8)
    summary = replay(tmp_path, write(tmp_path, "kept.pcap", offloaded("zero")), gate=False, keep_checksums=True)
    assert summary["replay"]["flows"]["stalled"] == REAL_FLOWS
    assert_only_kept_checksums(summary, REAL_FLOWS)
    rows = assert_account(summary, REAL_PACKETS)
    assert sum(r["action"] == "not_sent" for r in rows) > 8


def late_start_capture(tmp_path: Path) -> Path:
    """The real capture after one second of ARP only: its first replayed packet comes 1 s in."""
    shifted = [(t + 10**9, f) for t, f in RECORDS]
    return write(tmp_path, "late.pcap", [(RECORDS[0][0], RECORDS[0][1])] + shifted)


@pytest.mark.parametrize("origin,expected", [("first-packet", 1.5), ("start", 0.5)])
def test_events_count_from_the_first_replayed_packet_unless_asked_otherwise(tmp_path, origin, expected):
    sc = replay_scenario(**{"virtual_service.placement": ["se-1"],
                            "events": [{"at": 0.5, "action": "scale_out"}]})
    summary = replay(tmp_path, late_start_capture(tmp_path), scenario=sc, timeline_from=origin)
    events = [json.loads(line) for line in (summary["_out"] / "events.jsonl").read_text().splitlines()]
    (started,) = [e for e in events if e["type"] == "scale_out.started"]
    assert started["t"] == pytest.approx(expected, abs=0.001)
    timeline = summary["replay"]["timeline"]
    assert timeline["from"] == origin and timeline["events_after_last_packet"] == []


def test_the_summary_warns_of_an_event_after_the_last_replayed_packet(tmp_path, capsys):
    toml = tmp_path / "replay.toml"
    from test_replay import _scenario_toml
    toml.write_text(_scenario_toml() + '[[events]]\nat = 1.9\naction = "scale_out"\nse = "se-2"\n')
    assert _cli(tmp_path, REAL, "--out", str(tmp_path / "o")) == 0
    printed = capsys.readouterr().out
    assert "warning: event scale_out at 1.9 s" in printed and "falls after the last replayed packet" in printed
    assert_passes_gate(tmp_path / "o" / "capture.pcapng")


def test_list_skipped_prints_frames_grouped_by_reason(tmp_path, capsys):
    records = [(t, f) for t, f in RECORDS] + [(RECORDS[-1][0] + 1 + i, RECORDS[i][1]) for i in range(2)]
    path = write(tmp_path, "arp.pcap", records)
    assert _cli(tmp_path, path, "--out", str(tmp_path / "o"), "--list-skipped") == 0
    printed = capsys.readouterr().out
    assert "skipped input frames by reason (input frame numbers):\n  not_ip: 4 frame(s), not IP" in printed
    assert "\n    1-2, 76-77\n" in printed
    assert_passes_gate(tmp_path / "o" / "capture.pcapng")


# -- bounded options and inputs (issue 17) ------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--speed", "1e-300"], "--speed: 1e-300 is out of range 0.001 to 1e+06"),
    (["--speed", "nan"], "--speed: expected a decimal number"),
    (["--speed", "inf"], "--speed: expected a decimal number"),
    (["--speed", "-2"], "--speed: expected a decimal number"),
    (["--speed", "١٢"], "--speed: expected a decimal number in ASCII digits"),
    (["--pps", "0"], "--pps: 0 is out of range"),
    (["--pps", "2e9"], "--pps: 2e9 is out of range"),
    (["--mbps", "1_000"], "--mbps: expected a decimal number"),
    (["--loop", "256"], "--loop: 256 is out of range 1 to 255"),
    (["--loop", "١٢"], "--loop: expected a whole number in ASCII digits"),
    (["--limit", "0"], "--limit: 0 is out of range"),
    (["--limit", "2.5"], "--limit: expected a whole number"),
    (["--match", "server=*:١٢"], "--match server: '*:\\u0661\\u0662' is not ASCII"),
    (["--match", "server=10.0.0.1:0"], "--match server: bad port '0'"),
    (["--port-map", "١٢"], "--port-map: bad port '\\u0661\\u0662'"),
    (["--interface", "٣"], "--interface: interface numbers are ASCII digits"),
])
def test_every_option_outside_its_range_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    assert _cli(tmp_path, REAL, *args, "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_non_ascii_digits_never_select_a_port():
    with pytest.raises(ValueError):
        parse_match("server=*:١٢")
    assert parse_match("server=*:12")[1].port == 12


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_capture_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    if kind == "fifo":
        target = tmp_path / "capture.pcap"
        os.mkfifo(target)
    else:
        target = Path("/dev/zero") if kind == "device" else tmp_path
    toml = tmp_path / "replay.toml"
    from test_replay import _scenario_toml
    toml.write_text(_scenario_toml())
    # A child process with a timeout: a FIFO opened for reading would block until a writer comes.
    result = subprocess.run([sys.executable, "-m", "dataplane", "replay", str(target), "--scenario", str(toml),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert {"fifo": "not a regular file (a FIFO)", "device": "not a regular file (a device)",
            "directory": "not a regular file (a directory)"}[kind] in err[0]


def test_a_gap_past_a_year_of_virtual_time_stops_the_replay_at_once(tmp_path, capsys):
    records = RECORDS[:3] + [(RECORDS[3][0] + 400 * 86400 * 10**9, RECORDS[3][1])]
    path = write(tmp_path, "gap.pcap", records)
    out = tmp_path / "o"
    assert _cli(tmp_path, path, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frame 4 would enter the network" in err[0] and "one-year bound" in err[0], err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replay"]["input_packets"] == 3 and summary["duration"] < 10
    assert_passes_gate(out / "capture.pcapng")


def test_fix_checksums_is_accepted_as_the_default_it_now_is(tmp_path, capsys):
    assert _cli(tmp_path, REAL, "--fix-checksums", "--out", str(tmp_path / "o")) == 0
    assert "replayed flows: 5 total, 5 completed" in capsys.readouterr().out
    assert_passes_gate(tmp_path / "o" / "capture.pcapng")
