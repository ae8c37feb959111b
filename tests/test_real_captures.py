"""Replays of captures recorded on real Linux hosts (pcaps/real/README.md says how each was made)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from conftest import assert_passes_gate, fields
from dataplane import scenario as scenario_mod
from dataplane.replay import run_replay
from dataplane.replay.options import ReplayOptions

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
    capture = tmp_path / "out" / "capture.pcapng"
    assert_passes_gate(capture)
    # On the wire the super-segments are MTU-sized again: nothing longer than 1514 bytes outside the tunnel.
    assert not fields(capture, ["frame.number"], "frame.len > 1514 && !(udp.port == 1550)")
    # The IPv6 flows reach an IPv6 server from the owner SE's IPv6 address; the IPv4 one an IPv4 server.
    syns = fields(capture, ["ipv6.dst", "ip.dst"], 'frame.interface_name == "backend" && tcp.flags.syn == 1 '
                                                   '&& tcp.flags.ack == 0 && tcp.dstport == 8080 '
                                                   '&& frame.comment contains " snat "')
    assert sorted(bool(v6) for v6, _ in syns) == [False, True, True], syns


def test_a_super_segment_is_cut_as_tso_cuts_it():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    from dataplane.replay.segments import segment_tcp

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
