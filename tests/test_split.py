"""dataplane split (per hop, NIC, SE) and check's labelling of the multi-hop artefact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import assert_passes_gate, fields, scenario_dict
from dataplane.cli import main
from dataplane.testing import check
from dataplane.testing.multihop import explain, tcp_segment_key
from dataplane.testing.split import owner, split_capture
from dataplane.wire.capture_reader import CaptureInfo, open_capture, read_all
from dataplane.wire.pcapng import PcapngWriter

REAL = Path(__file__).resolve().parents[1] / "pcaps" / "real" / "curl-http-server.pcap"


def big(cloud: str) -> dict:
    """Requests and responses larger than one MSS: the multi-hop artefact shows (README)."""
    return scenario_dict(**{"cloud": cloud, "duration": 3.0, "traffic.new_connections_per_second": 15,
                            "traffic.request_bytes": 3000, "traffic.response_bytes": 5000,
                            "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"} for i in (1, 2, 3)],
                            "virtual_service.placement": ["se-1", "se-2", "se-3"]})


@pytest.fixture(scope="module")
def neutron(tmp_path_factory):
    from dataplane import scenario as scenario_mod
    from dataplane.emulation import run_scenario

    out = tmp_path_factory.mktemp("neutron-big")
    summary = run_scenario(scenario_mod.parse(big("openstack-neutron"), "big.toml"), out)
    return out / "capture.pcapng", summary


def test_the_artefact_is_reproduced_and_every_finding_is_labelled(neutron):
    capture, _ = neutron
    findings = check.check_capture(capture, use_tshark=True)
    assert findings, "a Neutron capture with multi-MSS requests and responses should show the artefact"
    labelled, per_hop = explain(capture, findings)
    assert all(f.seen_before and f.seen_before < f.number for f in labelled)
    assert per_hop is not None and per_hop.clean and per_hop.hops
    records = {r.number: r for r in read_all(capture)}
    for finding in labelled:
        again, first = records[finding.number], records[finding.seen_before]
        assert tcp_segment_key(again.data) == tcp_segment_key(first.data) is not None
        assert hop(again) != hop(first)


def hop(record) -> tuple:
    return record.interface, frozenset((record.data[:6], record.data[6:12]))


def test_check_exits_0_and_says_why_when_only_the_artefact_remains(neutron, capsys):
    capture, _ = neutron
    assert main(["check", str(capture)]) == 0
    out = capsys.readouterr().out
    assert "seen again on a later hop; check per hop with dataplane split" in out
    assert "clean per hop" in out and "frontend: gw <-> se-1" in out


def test_a_real_defect_among_the_artefacts_still_fails(neutron, tmp_path, capsys):
    capture, _ = neutron
    records = read_all(capture)
    victim = next(r for r in records if r.comment and r.comment.startswith("server-1 ") and len(r.data) > 100)
    broken = tmp_path / "broken.pcapng"
    with PcapngWriter(broken) as writer:
        ifaces = {}
        for r in records:
            if r.interface not in ifaces:
                ifaces[r.interface] = writer.add_interface(r.interface_name)
            data = r.data
            if r is victim:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])  # the TCP checksum no longer holds
            writer.write_frame(ifaces[r.interface], r.time_ns, data, r.comment)
    assert main(["check", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"frame {victim.number} (backend): Bad checksum" in out
    assert "1 real" in out
    labelled, per_hop = explain(broken, check.check_capture(broken, use_tshark=True))
    assert per_hop is None
    assert [f.number for f in labelled if not f.seen_before] == [victim.number]


def test_vmware_layer2_forwarding_is_the_artefact_too(run_dict, capsys):
    run = run_dict(big("vmware"), gate=False)
    assert check.check_capture(run.capture, use_tshark=True)
    assert main(["check", str(run.capture)]) == 0
    assert "frontend: se-1 <-> se-" in capsys.readouterr().out


def test_every_one_hop_file_passes_the_gate_and_the_hops_partition_the_capture(neutron, tmp_path):
    capture, _ = neutron
    result = split_capture(capture, "hop", tmp_path / "hops")
    numbers = sorted(n for part in result.parts for n in part.numbers)
    assert numbers == list(range(1, len(read_all(capture)) + 1))  # every frame in exactly one hop file
    assert not result.unsplit
    originals = {r.number: r for r in read_all(capture)}
    for part in result.parts:
        assert_passes_gate(result.path(part))  # with and without -d udp.port==1550,vxlan
        info = CaptureInfo()
        copied = list(open_capture(result.path(part), info))
        assert [r.data for r in copied] == [originals[n].data for n in part.numbers]
        assert [r.time_ns for r in copied] == [originals[n].time_ns for n in part.numbers]
        assert [r.comment for r in copied] == [originals[n].comment for n in part.numbers]
        assert {r.interface_name for r in copied} == {originals[part.numbers[0]].interface_name}
        assert len({frozenset((r.data[:6], r.data[6:12])) for r in copied}) == 1  # one MAC pair
        assert info.names["10.10.0.100"] == ["vs-web"] and info.names["10.20.0.12"] == ["se-2-backend"]
        assert info.sections[0].comment.startswith("scenario test-4se, seed 3")
        assert part.description in info.sections[0].comment
        assert info.sections[0].interfaces[0].description  # the segment's description is kept


def test_hop_files_are_named_after_the_nodes(neutron, tmp_path):
    capture, _ = neutron
    names = {part.filename for part in split_capture(capture, "hop", tmp_path).parts}
    assert {"frontend_gw--se-1.pcapng", "frontend_se-1--se-2.pcapng", "frontend_se-1--broadcast.pcapng",
            "backend_se-2--server-1.pcapng"} <= names
    # Wireshark shows the names from the copied name-resolution block
    sources = {row[0] for row in fields(tmp_path / "frontend_gw--se-1.pcapng", ["ip.src_host"], "tcp", "-N", "n")}
    assert "vs-web" in sources and "10.10.0.100" not in sources


def _tshark_frames(capture: Path, display_filter: str) -> list[str]:
    return [row[0] for row in fields(capture, ["frame.comment"], display_filter)]


def test_a_nic_file_is_what_tcpdump_on_that_nic_would_show(neutron, tmp_path):
    capture, summary = neutron
    result = split_capture(capture, "nic", tmp_path)
    mac = summary["address_plan"]["se-2"]["backend"]["mac"]
    part = next(p for p in result.parts if p.filename == "se-2.backend.pcapng")
    expected = _tshark_frames(capture, f'frame.interface_name == "backend" && (eth.addr == {mac} || eth.dst.ig == 1)')
    assert _tshark_frames(result.path(part), "") == expected
    assert {p.filename for p in result.parts} >= {"gw.frontend.pcapng", "se-1.frontend.pcapng",
                                                  "se-1.backend.pcapng", "server-1.backend.pcapng"}


def test_an_se_file_holds_all_its_nics(neutron, tmp_path):
    capture, summary = neutron
    result = split_capture(capture, "se", tmp_path)
    assert [p.filename for p in result.parts] == ["se-1.pcapng", "se-2.pcapng", "se-3.pcapng"]
    macs = [summary["address_plan"]["se-3"][nic]["mac"] for nic in ("frontend", "backend")]
    expected = _tshark_frames(capture, " || ".join(f"eth.addr == {m}" for m in macs) + " || eth.dst.ig == 1")
    path = tmp_path / "se-3.pcapng"
    assert _tshark_frames(path, "") == expected
    assert {r.interface_name for r in open_capture(path)} == {"frontend", "backend"}
    assert result.unsplit == {}


def test_a_foreign_pcap_splits_by_mac(tmp_path):
    result = split_capture(REAL, "hop", tmp_path)
    assert sum(p.frames for p in result.parts) == len(read_all(REAL))
    for part in result.parts:
        assert_passes_gate(result.path(part))


def test_nic_names_belong_to_the_longest_named_prefix():
    known = {"se-1", "se-1-backend", "se-10", "server-1", "gw", "vs-web"}
    assert owner("se-1-backend", known) == "se-1"
    assert owner("se-10", known) == "se-10"
    assert owner("server-1", known) == "server-1"


def test_split_command_and_bad_input(neutron, tmp_path, capsys):
    capture, _ = neutron
    assert main(["split", str(capture), "--by", "se", "--out", str(tmp_path / "se")]) == 0
    out = capsys.readouterr().out
    assert "se-1: all its NICs" in out and (tmp_path / "se" / "se-2.pcapng").is_file()
    assert main(["split", str(tmp_path / "missing.pcapng")]) == 2
    assert "missing.pcapng: no such capture file" in capsys.readouterr().err
    not_capture = tmp_path / "notes.txt"
    not_capture.write_text("hello")
    assert main(["split", str(not_capture)]) == 2
    assert "notes.txt: not a pcap or pcapng file" in capsys.readouterr().err
    assert main(["split", str(capture), "--out", str(not_capture)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_truncated_capture_leaves_no_file(neutron, tmp_path, capsys):
    capture, _ = neutron
    cut = tmp_path / "cut.pcapng"
    data = capture.read_bytes()
    cut.write_bytes(data[:len(data) - 30])
    out = tmp_path / "out"
    assert main(["split", str(cut), "--out", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_split_default_folder_is_beside_the_capture(neutron, tmp_path, capsys):
    capture, _ = neutron
    copy = tmp_path / "run.pcapng"  # not capture*.pcapng: the autouse gate would refuse the artefact
    shutil.copy(capture, copy)
    assert main(["split", str(copy), "--by", "nic"]) == 0
    assert (tmp_path / "split-nic" / "se-1.frontend.pcapng").is_file()


@pytest.mark.parametrize("golden", sorted((Path(__file__).resolve().parents[1] / "pcaps" / "golden").glob("*.pcapng")),
                         ids=lambda path: path.stem)
def test_every_hop_of_every_golden_capture_passes_the_gate(golden, tmp_path):
    result = split_capture(golden, "hop", tmp_path)
    assert sum(part.frames for part in result.parts) == len(read_all(golden)) and not result.unsplit
    for part in result.parts:
        assert_passes_gate(result.path(part))


def test_an_ipv6_segment_is_the_same_segment_on_every_hop_and_inside_the_tunnel():
    from dataplane.wire import frames, ipv6
    a, b, c = (frames.mac_bytes(f"02:00:0a:0a:00:0{n}") for n in (1, 2, 3))
    client, vip = ipv6.ipv6_bytes("2001:db8:c::7"), ipv6.ipv6_bytes("2001:db8:10::100")
    first = ipv6.tcp6_frame(b, a, client, vip, 40000, 80, 1, 1, frames.ACK, b"x" * 100)
    routed = ipv6.decrement_hop_limit(first, c, b)
    tunnelled = frames.vxlan_frame(c, b, frames.ip_bytes("10.10.0.11"), frames.ip_bytes("10.10.0.12"), 50000, 1550,
                                   1, routed)
    other = ipv6.tcp6_frame(b, a, client, vip, 40000, 80, 1, 1, frames.ACK, b"y" * 100)
    assert tcp_segment_key(first) == tcp_segment_key(routed) == tcp_segment_key(tunnelled) is not None
    assert tcp_segment_key(other) != tcp_segment_key(first)
    assert tcp_segment_key(ipv6.udp6_frame(b, a, client, vip, 1, 9, b"x")) is None
    assert tcp_segment_key(first[:40]) is None
