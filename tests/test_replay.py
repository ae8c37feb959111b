"""Replay of recorded captures: the committed real capture and captures generated here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from dataplane import cli
from dataplane.replay import synth as replay_synth
from dataplane.wire import capture_reader
from dataplane import scenario as scenario_mod
from dataplane.wire.pcapng import PcapngWriter
from dataplane.replay import ReplayOptions
from dataplane.replay import run_replay
from conftest import assert_passes_gate, fields, scenario_dict, tshark

REAL = Path(__file__).parent.parent / "pcaps" / "real" / "curl-http-server.pcap"
REAL_FLOWS, REAL_PACKETS, REAL_ARP = 5, 75, 2


def replay_scenario(**overrides):
    data = scenario_dict(**{"duration": 2.0, "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"}
                                                                 for i in range(1, 5)],
                            "virtual_service.placement": ["se-1", "se-2", "se-3", "se-4"], **overrides})
    return scenario_mod.parse(data, "replay.toml")


def replay(tmp_path, capture, name="out", gate=True, scenario=None, **options) -> dict:
    out = tmp_path / name
    summary = run_replay(scenario or replay_scenario(), capture, out, ReplayOptions(**options))
    if gate:
        assert_passes_gate(out / "capture.pcapng")
    summary["_out"] = out
    return summary


def assert_clean_per_hop(capture: Path, summary: dict, tmp_path: Path) -> None:
    """Wireshark's TCP analysis per hop.  Each hop is first written to a file of its own: with
    ``-2 -R`` tshark 4.0 still runs its first pass over the excluded frames (the steered copies of
    the same segments), and flags the kept ones as duplicate ACKs and retransmissions."""
    gw = summary["address_plan"]["gw"]["frontend"]["mac"]
    hops = {"backend": 'frame.interface_name == "backend"',
            "router": f'frame.interface_name == "frontend" && (eth.src == {gw} || eth.dst == {gw})'}
    for hop, read_filter in hops.items():
        extract = tmp_path / f"hop-{hop}.pcapng"
        tshark(capture, "-Y", read_filter, "-w", str(extract))
        flagged = tshark(extract, "-Y", "tcp.analysis.flags")
        assert flagged == "", f"{hop}: {flagged[:1500]}"
        # Replayed connections only: the SEs' health probes (SYN, SYN-ACK, RST) share the backend.
        streams = fields(extract, ["tcp.stream", "tcp.completeness"], "tcp.flags.syn == 1 && tcp.flags.ack == 0 "
                         '&& frame.comment matches "snat|gw route|proxy server-side"', "-2")
        assert len(streams) == summary["replay"]["flows"]["total"], f"{hop}: {streams}"
        assert all(int(c) == 31 for _, c in streams), f"{hop}: incomplete {streams[:5]}"


def relinked(tmp_path: Path, how: str) -> Path:
    """The real capture re-encapsulated (or re-containered) as ``how``."""
    records = [(r.time_ns, r.data) for r in capture_reader.open_capture(REAL)]
    path = tmp_path / f"real-{how}.pcap"
    if how == "nanosecond":
        replay_synth.write_pcap(path, records, nanosecond=True)
    elif how == "pcapng":
        path = path.with_suffix(".pcapng")
        with open(path, "wb") as handle, PcapngWriter(handle, application="test") as writer:
            iface = writer.add_interface("eth0")
            for time_ns, frame in records:
                writer.write_frame(iface, time_ns, frame, "recorded")
    else:
        linktype = {"vlan": 1, "sll": 113, "sll2": 276, "raw": 101}[how]
        # Cooked and raw captures carry no ARP in this form: keep the IPv4 frames only.
        kept = [(t, replay_synth.relink(f, how)) for t, f in records if how == "vlan" or f[12:14] == b"\x08\x00"]
        replay_synth.write_pcap(path, kept, linktype=linktype)
    return path


# -- the real capture ----------------------------------------------------------------------

def test_real_capture_replays_every_flow_cleanly(tmp_path):
    summary = replay(tmp_path, REAL)
    rep = summary["replay"]
    assert rep["input_packets"] == REAL_PACKETS == rep["replayed_packets"] + rep["skipped_packets"]
    assert summary["skipped"] == {"not_ip": REAL_ARP}
    assert rep["flows"] == {"total": REAL_FLOWS, "completed": REAL_FLOWS, "open_at_end": 0, "reset": 0, "stalled": 0}
    assert summary["flows"]["completed"] == REAL_FLOWS
    assert rep["packets"]["arrived"] == rep["packets"]["sent"] == REAL_PACKETS - REAL_ARP
    assert sum(summary["flows_by_se"].values()) == REAL_FLOWS
    assert_clean_per_hop(summary["_out"] / "capture.pcapng", summary, tmp_path)


def test_router_comments_name_the_recorded_frame(tmp_path):
    summary = replay(tmp_path, REAL)
    rows = fields(summary["_out"] / "capture.pcapng", ["frame.comment"], 'frame.comment contains "gw route"')
    numbers = [int(c.rsplit("recorded frame ", 1)[1].rstrip(")")) for (c,) in rows]
    client_frames = fields(REAL, ["frame.number"], "ip.src == 192.0.2.1")
    assert numbers == [int(n) for (n,) in client_frames], "every client frame, in order, named by its number"


def test_sequence_numbers_and_payload_stay_as_recorded(tmp_path):
    summary = replay(tmp_path, REAL)
    recorded = {(r[0], r[1], r[2]) for r in fields(REAL, ["tcp.seq_raw", "tcp.ack_raw", "tcp.payload"], "tcp")}
    for hop in ("backend", "frontend"):
        seen = {(r[0], r[1], r[2]) for r in fields(summary["_out"] / "capture.pcapng",
                                                   ["tcp.seq_raw", "tcp.ack_raw", "tcp.payload"],
                                                   f'tcp && frame.interface_name == "{hop}" && '
                                                   'frame.comment matches "snat|recorded frame|gw route|reverse-nat"')}
        assert seen == recorded, hop


def test_server_packets_leave_the_chosen_server_into_the_nated_connection(tmp_path):
    summary = replay(tmp_path, REAL)
    rows = fields(summary["_out"] / "capture.pcapng", ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
                                                       "frame.comment"],
                  'frame.interface_name == "backend" && frame.comment contains "recorded frame"')
    recorded = fields(REAL, ["frame.number"], "tcp.srcport == 80")
    assert len(rows) == len(recorded)  # every recorded server packet of the five connections
    se_backend = {v["backend"]["ip"] for k, v in summary["address_plan"].items() if k.startswith("se-")}
    for src, sport, dst, dport, comment in rows:
        assert src in ("10.20.0.101", "10.20.0.102") and sport == "8080", comment
        assert dst in se_backend and int(dport) >= 1024, comment


def test_recorded_gaps_speed_and_topspeed(tmp_path):
    def syn_times(summary):
        return [float(t) for t, in fields(summary["_out"] / "capture.pcapng", ["frame.time_relative"],
                                          'frame.comment contains "gw route" && tcp.flags.syn == 1')]
    recorded = syn_times(replay(tmp_path, REAL, "recorded"))
    # The last connection opened 1.0065 s into the recording (frame 64).
    assert recorded[-1] == pytest.approx(1.0065, abs=0.002)
    doubled = syn_times(replay(tmp_path, REAL, "fast", speed=2.0))
    assert doubled[-1] == pytest.approx(recorded[-1] / 2, abs=0.002)
    top = replay(tmp_path, REAL, "top", topspeed=True)
    assert syn_times(top)[-1] < 0.01
    assert top["replay"]["flows"]["completed"] == REAL_FLOWS
    assert_clean_per_hop(top["_out"] / "capture.pcapng", top, tmp_path)


def test_loop_makes_distinct_flows_and_limit_stops_early(tmp_path):
    looped = replay(tmp_path, REAL, "loop", loop=3)
    assert looped["replay"]["flows"]["completed"] == 3 * REAL_FLOWS
    clients = {f["client"].split(":")[0] for f in looped["replay"]["flow_details"]}
    assert clients == {"192.0.2.1", "193.0.2.1", "194.0.2.1"}
    assert_clean_per_hop(looped["_out"] / "capture.pcapng", looped, tmp_path)
    limited = replay(tmp_path, REAL, "limit", limit=10)
    assert limited["replay"]["input_packets"] == 10 and limited["replay"]["stopped_at_limit"]


# -- link types and containers --------------------------------------------------------------

@pytest.mark.parametrize("how", ["vlan", "sll", "sll2", "raw", "nanosecond", "pcapng"])
def test_link_types_and_formats_replay_alike(tmp_path, how):
    summary = replay(tmp_path, relinked(tmp_path, how))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == REAL_FLOWS
    assert rep["replayed_packets"] == REAL_PACKETS - REAL_ARP
    assert summary["skipped"] == ({"not_ip": REAL_ARP} if how in ("vlan", "nanosecond", "pcapng") else {})


# -- nothing silently dropped --------------------------------------------------------------

def _odd_packets():
    from dataplane.wire import frames
    mac_a, mac_b = replay_synth.CLIENT_MAC, replay_synth.SERVER_MAC
    a, b = frames.ip_bytes("192.0.2.1"), frames.ip_bytes("192.0.2.80")
    udp80 = frames.udp_frame(mac_b, mac_a, a, b, 5000, 80, b"x" * 10)
    icmp = frames.ethernet(mac_b, mac_a, 0x0800, frames.ipv4(a, b, 1, b"\x08\x00\xf7\xff\x00\x00\x00\x00", 1))
    frag = bytearray(frames.tcp_frame(mac_b, mac_a, a, b, 5001, 80, 1, 0, frames.SYN))
    frag[20:22] = struct.pack("!H", 0x2000)  # more fragments
    jumbo = frames.ethernet(mac_b, mac_a, 0x86DD, bytes([0x60]) + bytes(39))   # payload length 0, hop-by-hop next
    from dataplane.wire import icmpv6, ipv6
    a6, b6 = ipv6.ipv6_bytes("2001:db8:5::1"), ipv6.ipv6_bytes("2001:db8:6::80")
    syn6 = ipv6.tcp6_frame(mac_b, mac_a, a6, b6, 5005, 80, 1, 0, frames.SYN)       # this VS has no vip6
    echo6 = icmpv6.echo6_frame(mac_b, mac_a, a6, b6, False, 1, 1, b"ping")
    mid = frames.tcp_frame(mac_b, mac_a, a, b, 5002, 80, 100, 200, frames.ACK, b"late")
    ssh = frames.tcp_frame(mac_b, mac_a, a, b, 5003, 22, 1, 0, frames.SYN)
    front = frames.tcp_frame(mac_b, mac_a, frames.ip_bytes("10.10.0.50"), b, 5004, 80, 1, 0, frames.SYN)
    return {"not_vs_protocol": udp80, "other_protocol": icmp, "fragment_incomplete": bytes(frag),
            "ipv6_jumbogram": jumbo, "ipv6_no_vip6": syn6, "ipv6_other_protocol": echo6,
            "mid_flow": mid, "not_selected": ssh, "client_address_unusable": front}


def test_every_packet_not_replayed_is_counted_by_reason(tmp_path, capsys):
    odd = _odd_packets()
    good = list(replay_synth.http_flows(2, data_segments=1))
    start = good[0][0]
    records = good + [(start + 1000 + i, frame) for i, frame in enumerate(odd.values())]
    records.sort(key=lambda r: r[0])
    path = tmp_path / "mixed.pcap"
    replay_synth.write_pcap(path, records)
    summary = replay(tmp_path, path)
    assert summary["skipped"] == {reason: 1 for reason in odd}
    rep = summary["replay"]
    assert rep["input_packets"] == len(records) == rep["replayed_packets"] + rep["skipped_packets"]
    assert rep["flows"]["completed"] == 2
    code = _cli(tmp_path, path, "--out", str(tmp_path / "cli"))
    printed = capsys.readouterr().out
    assert code == 0
    assert_passes_gate(tmp_path / "cli" / "capture.pcapng")
    for reason in odd:
        assert f"[{reason}]" in printed


def test_port_map_and_match_choose_other_flows(tmp_path):
    path = tmp_path / "p8000.pcap"
    replay_synth.write_pcap(path, replay_synth.http_flows(3, data_segments=1, port=8000))
    default = replay(tmp_path, path, "default")
    assert default["replay"]["flows"]["total"] == 0 and default["skipped"] == {"not_selected": 27}
    mapped = replay(tmp_path, path, "mapped", port_map=(8000,))
    assert mapped["replay"]["flows"]["completed"] == 3
    from dataplane.replay.options import parse_match
    matched = replay(tmp_path, path, "matched", matches=(parse_match("client=198.18.0.2,server=*:8000"),))
    assert matched["replay"]["flows"]["completed"] == 1
    assert matched["skipped"] == {"not_selected": 18}


# -- bad input -----------------------------------------------------------------------------

def _cli(tmp_path, capture, *args) -> int:
    toml = tmp_path / "replay.toml"
    if not toml.exists():
        toml.write_text(_scenario_toml())
    return cli.main(["replay", str(capture), "--scenario", str(toml), *args])


def _scenario_toml() -> str:
    return """name = "replay-cli"\ncloud = "vmware"\nseed = 1\nduration = 2.0
[networks.frontend]\ncidr = "10.10.0.0/24"\ngateway = "10.10.0.1"
[networks.backend]\ncidr = "10.20.0.0/24"
[[service_engines]]\nname = "se-1"\nhost = "esx-1"
[[service_engines]]\nname = "se-2"\nhost = "esx-2"
[virtual_service]\nname = "vs-web"\nvip = "10.10.0.100"\nport = 80\nprotocol = "tcp"\nplacement = ["se-1", "se-2"]
[pool]\nservers = ["10.20.0.101:8080", "10.20.0.102:8080"]
[traffic]\nclients = ["198.51.100.0/28"]\n"""


def test_truncated_capture_replays_whole_frames_then_exits_2(tmp_path, capsys):
    records = [(r.time_ns, r.data) for r in capture_reader.open_capture(REAL)]
    path = tmp_path / "cut.pcap"
    replay_synth.write_pcap(path, records, cut_last=20)
    out = tmp_path / "cut-out"
    assert _cli(tmp_path, path, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    offset = path.stat().st_size - (16 + len(records[-1][1]) - 20)
    assert len(err) == 1 and f"frame {REAL_PACKETS} at byte {offset} is truncated" in err[0], err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replay"]["input_packets"] == REAL_PACKETS - 1
    assert summary["replay"]["input_error"]
    assert _cli(tmp_path, path, "--out", str(tmp_path / "ok"), "--allow-truncated") == 0
    assert capsys.readouterr().err == ""   # stderr is no TTY here: no progress bar either
    assert_passes_gate(out / "capture.pcapng")
    assert_passes_gate(tmp_path / "ok" / "capture.pcapng")


@pytest.mark.parametrize("kind", ["text", "linktype", "empty"])
def test_bad_capture_is_one_line_and_exit_2(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.pcap"
    if kind == "text":
        path.write_text("GET / HTTP/1.1\r\n\r\n")
    elif kind == "linktype":
        replay_synth.write_pcap(path, [(0, b"\x00" * 40)], linktype=147)  # USER0
    else:
        path.write_bytes(b"")
    assert _cli(tmp_path, path, "--out", str(tmp_path / "o")) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dataplane: "), captured.err
    assert {"text": "not a pcap or pcapng", "linktype": "unsupported link type 147",
            "empty": "empty or too short"}[kind] in lines[0]
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.mark.parametrize("args,needle", [(["--speed", "0"], "--speed"), (["--loop", "0"], "--loop"),
                                         (["--port-map", "8000:81"], "VS listens on 80"),
                                         (["--match", "client=nowhere"], "bad address")])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, args, needle):
    assert _cli(tmp_path, REAL, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


# -- the scenario's timeline during a replay -------------------------------------------------

def test_scale_out_in_the_middle_of_a_recorded_capture(tmp_path):
    # Five loops of the 1 s recording; the scale out starts at 0.5 s and the SE joins 2 s later.
    sc = replay_scenario(**{"virtual_service.placement": ["se-1"], "duration": 6.0,
                            "events": [{"at": 0.5, "action": "scale_out"}]})
    summary = replay(tmp_path, REAL, scenario=sc, loop=5)
    assert summary["replay"]["flows"]["completed"] == 5 * REAL_FLOWS
    events = [json.loads(line) for line in (summary["_out"] / "events.jsonl").read_text().splitlines()]
    joined = [e for e in events if e["type"] == "scale_out.completed"]
    assert joined and 2.0 < joined[0]["t"] < 3.0, [e["type"] for e in events]
    by_loop = {}
    for flow in summary["replay"]["flow_details"]:
        by_loop.setdefault(int(flow["client"].split(".")[0]) - 192, set()).add(flow["se"])
    assert by_loop[0] == by_loop[1] == {"se-1"}
    assert by_loop[3] | by_loop[4] == {"se-1", joined[0]["se"]}, by_loop
    assert_clean_per_hop(summary["_out"] / "capture.pcapng", summary, tmp_path)
