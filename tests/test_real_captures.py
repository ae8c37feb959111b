"""Replays of captures recorded on real Linux hosts (pcaps/real/README.md says how each was made)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from conftest import assert_passes_gate, fields
from dataplane import scenario as scenario_mod
from dataplane.replay import run_replay
from dataplane.replay.options import ReplayOptions
from dataplane.replay.segments import segment_tcp
from test_replay import assert_clean_per_hop
from test_replay_input import write
from test_replay_ipv6 import CLIENT_MAC, SERVER_MAC, T0, dual_scenario, http6

REAL = Path(__file__).resolve().parent.parent / "pcaps" / "real"


def test_an_offloaded_dual_stack_client_capture_replays_as_it_was_on_the_wire(tmp_path):
    source = resources.files("dataplane").joinpath("scenarios/demo-dual-stack.toml")
    with resources.as_file(source) as path:
        scenario = scenario_mod.load(path)
    summary = run_replay(scenario, REAL / "dual-http-client.pcap", tmp_path / "out", ReplayOptions())
    replay = summary["replay"]
    assert (replay["input_packets"], replay["replayed_packets"]) == (40, 40)
    assert replay["checksums_fixed"]["tcp"] == 40, "checksum offload: every recorded TCP checksum is partial"
    assert replay["tcp_super_segments_cut"] == 2, "GRO glued each page response into one 7 kB segment"
    assert replay["flows"]["total"] == replay["flows"]["completed"] == 3
    assert replay["proxy"]["flows"] == 3, "the tour's VS is a TCP proxy: replayed into its live connections"
    capture = tmp_path / "out" / "capture.pcapng"
    assert_passes_gate(capture)
    # On the wire the super-segments are MTU-sized again: nothing longer than 1514 bytes outside the tunnel.
    assert not fields(capture, ["frame.number"], "frame.len > 1514 && !(udp.port == 1550)")
    # The IPv6 flows reach an IPv6 server from the owner SE's IPv6 address; the IPv4 one an IPv4 server.
    syns = fields(capture, ["ipv6.dst", "ip.dst"], 'frame.interface_name == "backend" && tcp.flags.syn == 1 '
                                                   '&& tcp.flags.ack == 0 && tcp.dstport == 8080 '
                                                   '&& frame.comment contains "proxy server-side"')
    assert sorted(bool(v6) for v6, _ in syns) == [False, True, True], syns
    # Both live connections of each flow, IPv6 ones included, read clean in Wireshark's TCP analysis.
    assert_clean_per_hop(capture, summary, tmp_path)


def test_a_super_segment_is_cut_as_tso_cuts_it():
    for ip, l4 in ((IP(src="192.0.2.1", dst="192.0.2.2", id=7), 20), (IPv6(src="2001:db8::1", dst="2001:db8::2"), 40)):
        big = bytes(ip / TCP(sport=80, dport=4000, seq=1000, flags="FPAC", options=[("NOP", None)] * 4) /
                    (b"x" * 4000))
        pieces = segment_tcp(big, l4, 1500)
        parsed = [(IP if l4 == 20 else IPv6)(piece) for piece in pieces]
        assert [len(piece) for piece in pieces] == [1500, 1500, len(big) - 2 * (1500 - l4 - 24)]
        assert [p[TCP].seq for p in parsed] == [1000, 1000 + 1500 - l4 - 24, 1000 + 2 * (1500 - l4 - 24)]
        assert [str(p[TCP].flags) for p in parsed] == ["AC", "A", "FPA"], "CWR first only; FIN and PSH last only"
        assert b"".join(bytes(p[TCP].payload) for p in parsed) == b"x" * 4000
        for piece, p in zip(pieces, parsed):  # checksums as recomputed by Scapy from scratch
            again = (IP if l4 == 20 else IPv6)(piece)
            del again[TCP].chksum
            if l4 == 20:
                del again[IP].chksum
                assert again.__class__(bytes(again))[IP].chksum == p[IP].chksum
            assert again.__class__(bytes(again))[TCP].chksum == p[TCP].chksum
        if l4 == 20:
            assert [p[IP].id for p in parsed] == [7, 8, 9]
    assert segment_tcp(b"\x45" + bytes(59), 20, 1500) is None, "fits: not cut"


def _udp_exchange(request: bytes, response: bytes):
    """One recorded UDP request and its answer, 100 us apart."""
    client = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src="192.0.2.10", dst="192.0.2.200")
    server = Ether(src=SERVER_MAC, dst=CLIENT_MAC) / IP(src="192.0.2.200", dst="192.0.2.10")
    return [(T0, bytes(client / UDP(sport=40000, dport=80) / request)),
            (T0 + 100_000, bytes(server / UDP(sport=80, dport=40000) / response))]


def _dual_replay(tmp_path, records, name, **options):
    """Replay ``records`` through a dual-stack VS (tests/test_replay_ipv6.py's) into ``tmp_path / name``."""
    overrides = {"virtual_service.protocol": "udp"} if options.pop("udp", False) else {}
    path = write(tmp_path, f"{name}.pcap", records)
    return run_replay(dual_scenario(**overrides), path, tmp_path / name, ReplayOptions(**options))


def test_super_segments_are_cut_on_both_sides_in_both_families(tmp_path):
    records = http6("192.0.2.10", 40000, "192.0.2.200", T0, family=IP, request=b"q" * 6000, response=b"r" * 7000)
    records += http6("2001:db8:99::10", 40000, "2001:db8:1::2", T0 + 10_000_000, request=b"q" * 6000,
                     response=b"r" * 7000)
    summary = _dual_replay(tmp_path, records, "both")
    replay = summary["replay"]
    assert replay["tcp_super_segments_cut"] == 4, "a request and a response in each family"
    assert replay["flows"]["total"] == replay["flows"]["completed"] == 2
    capture = tmp_path / "both" / "capture.pcapng"
    assert_passes_gate(capture)
    assert not fields(capture, ["frame.number"], "frame.len > 1514 && !(udp.port == 1550)")


def test_a_datagram_recorded_over_the_mtu_enters_as_fragments(tmp_path):
    summary = _dual_replay(tmp_path, _udp_exchange(b"q" * 3000, b"r" * 100), "udp", udp=True)
    assert summary["replay"]["fragmented_over_mtu"] == 1
    capture = tmp_path / "udp" / "capture.pcapng"
    assert not fields(capture, ["frame.number"], "frame.len > 1514 && !(udp.port == 1550)")
    assert len(fields(capture, ["frame.number"], 'ip.flags.mf == 1 || ip.frag_offset > 0')) >= 3


def test_kept_wrong_checksums_stay_wrong_in_every_cut_segment(tmp_path):
    records = http6("192.0.2.10", 40000, "192.0.2.200", T0, family=IP, request=b"GET", response=b"r" * 7000)
    time, frame = records[4]
    records[4] = (time, frame[:14 + 20 + 16] + b"\x00\x00" + frame[14 + 20 + 18:])  # checksum offload's zero
    summary = _dual_replay(tmp_path, records, "kept", keep_checksums=True)
    capture = tmp_path / "kept" / "capture.pcapng"
    pieces = fields(capture, ["tcp.checksum.status"], 'frame.interface_name == "backend" && tcp.len > 1000',
                    "-o", "tcp.check_checksum:TRUE")
    assert [status for (status,) in pieces] == ["0"] * 5, "every segment carries the kept, wrong checksum"
    assert summary["drops"].get("bad_tcp_checksum") == 5, "the SE drops each, as it would the whole"
