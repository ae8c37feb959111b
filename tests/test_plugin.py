"""The pytest plugin, run as users run it (pytester): verbs, failure wording, masks, goldens, artefacts."""

from __future__ import annotations

import re
from pathlib import Path


from dataplane.wire.capture_reader import read_all
from conftest import assert_passes_gate

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).with_name("test_readme_example.py").read_text()

HEADER = EXAMPLE.split("def test_")[0] + '''
import dataclasses
import dataplane.nodes.service_engine as service_engine
from dataplane.testing import Mask, assert_matches_golden

WHO_HAS = Ether(src=TESTER, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=TESTER, psrc="10.10.0.50", pdst=VIP)

def reply_from(net, se):
    return Ether(src=net.mac(se), dst=TESTER) / ARP(op="is-at", hwsrc=net.mac(se), psrc=VIP, hwdst=TESTER,
                                                      pdst="10.10.0.50")
'''


# Other installed plugins only slow each inner run down.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


def run(pytester, body: str, *args: str):
    pytester.makepyfile(test_user=HEADER + body)
    return pytester.runpytest(*QUIET, "--dataplane-artifacts", str(pytester.path / "art"), *args)


def artefact(pytester, test: str) -> Path:
    (folder,) = (pytester.path / "art").glob(f"*{test}")
    return folder / "capture.pcapng"


def section_comment(capture: Path) -> str:
    data = capture.read_bytes()
    return data[:int.from_bytes(data[4:8], "little")].decode("utf-8", "replace")


def test_the_readme_example_passes_and_keeps_its_captures_with_the_verdict(pytester):
    pytester.makepyfile(test_user=EXAMPLE)
    result = pytester.runpytest(*QUIET, "--dataplane-artifacts", str(pytester.path / "art"))
    result.assert_outcomes(passed=2)
    capture = artefact(pytester, "test_neutron_response_returns_through_the_primary")
    assert "test_user.py::test_neutron_response_returns_through_the_primary: PASSED" in section_comment(capture)
    assert "ok expect at gw.frontend" in section_comment(capture)
    assert_passes_gate(capture)
    assert capture.with_name("events.jsonl").read_text().startswith('{"t": 0.0, "type": "vs.placed"')


def test_a_secondary_answering_arp_for_the_vip_fails_with_its_comment(pytester):
    result = run(pytester, '''
def test_arp(dataplane_net, monkeypatch):
    monkeypatch.setattr(service_engine.ServiceEngine, "answers_arp_for",
                        lambda self, nic, ip: ip == nic.ip or ip in self.bindings)  # the regression
    net = dataplane_net(SCENARIO)
    net.discard()
    net.send("frontend", WHO_HAS)
    net.expect("frontend", reply_from(net, "se-1"))
    net.expect_no_other()
''')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*expected no other frames, but 1 frame not matched by any expect:",
        "*frame #5 at 0.000020000 s on frontend: se-2 arp reply 10.10.0.100 is-at 02:00:0a:0a:00:0c (primary for the VIP)*",
        "*Ether / ARP is at 02:00:0a:0a:00:0c says 10.10.0.100",
    ])
    capture = artefact(pytester, "test_arp")
    assert "test_arp: FAILED (call): AssertionError: expected no other frames" in section_comment(capture)
    assert_passes_gate(capture)


def test_a_failed_expect_shows_a_field_diff_against_the_nearest_frame_with_its_comment(pytester):
    result = run(pytester, '''
def test_wrong_owner(dataplane_net):
    net = dataplane_net(SCENARIO)
    net.send("frontend", WHO_HAS)
    net.expect("frontend", reply_from(net, "se-2"))
''')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*expected frame at frontend:",
        "E*Ether / ARP is at 02:00:0a:0a:00:0c says 10.10.0.100",
        "E*nearest frame: frame #4 at 0.000020000 s on frontend, 2 fields differ:",
        "E*comment: se-1 arp reply 10.10.0.100 is-at 02:00:0a:0a:00:0b (primary for the VIP)",
        "E*frame:   Ether / ARP is at 02:00:0a:0a:00:0b says 10.10.0.100",
        "E*eth.src: expected 02:00:0a:0a:00:0c, got 02:00:0a:0a:00:0b",
        "E*arp.src.hw_mac: expected 02:00:0a:0a:00:0c, got 02:00:0a:0a:00:0b",
        "E*next nearest frame: frame #1 at 0.000000000 s on frontend, 6 fields differ:",
        "E*capture: */capture.pcapng (written when the test ends)",
    ])
    assert not re.search(r"^E?\s*0000  [0-9A-F]{2} ", result.stdout.str(), re.M), "no hex dump"
    # expect settles only as far as the frames need: the ARP exchange, not the scenario's duration
    assert "3 frames seen there by 0.000040000 s (1 sent by the test), none matching" in result.stdout.str()


def test_a_neutron_response_bypassing_the_primary_shows_the_port_security_drop(pytester):
    body = EXAMPLE.split("def test_neutron_response_returns_through_the_primary(dataplane_net):")[1]
    body = body.replace("net = dataplane_net(SCENARIO)\n",
                        "net = dataplane_net(SCENARIO)\n    for se in net.network.service_engines():\n"
                        "        se.paths = dataclasses.replace(se.paths, return_via_primary=False)  # the regression\n")
    result = run(pytester, "\ndef test_bypass(dataplane_net):" + body)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*don't care: ip.id, ip.ttl, ip.checksum, tcp.seq, tcp.window_size_value, tcp.checksum",
        "E*nearest frame: frame #* on frontend [[]dropped], 1 field differs:",
        "E*comment: se-2 proxy client-side *SYN-ACK *direct to client [[]DROPPED by port security: source "
        "10.10.0.100 not allowed*",
        "E*eth.src: expected 02:00:0a:0a:00:0b, got 02:00:0a:0a:00:0c",
    ])


def test_masks_by_name_and_expect_none(pytester):
    result = run(pytester, '''
SYN = Ether(src="02:00:0a:0a:00:01", dst="02:00:0a:0a:00:0b") / IP(src=CLIENT, dst=VIP, ttl=63) / \\
    TCP(sport=40002, dport=80, flags="S", seq=1000)

def test_ttl_mask(dataplane_net):
    net = dataplane_net(SCENARIO)
    net.send("gw.frontend", SYN)
    steered = SYN.copy()
    steered[Ether].src, steered[Ether].dst = net.mac("se-1"), net.mac("se-2")
    seen = net.expect("frontend", Mask(steered, ignore=["ip.ttl", "udp.sport", "ip.id"]))  # fails: tunnelled

def test_only_the_primary_answers(dataplane_net):
    net = dataplane_net(SCENARIO)
    net.send("frontend", WHO_HAS)
    net.expect_none("se-2.frontend", reply_from(net, "se-2"))

def test_expect_none_fails_listing_what_was_seen(dataplane_net):
    # The fast path hands the client's SYN to the server (a proxy would answer it itself).
    net = dataplane_net({**SCENARIO, "virtual_service": {**SCENARIO["virtual_service"],
                                                         "network_profile": "tcp-fast-path"}})
    net.send("gw.frontend", SYN)
    net.expect_none("server-1")
''')
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    # The Neutron primary tunnels the flow: the plain frame is not there, the nearest is the VXLAN one.
    assert ("nearest frame: frame #4 at 0.000030000 s on frontend, it carries the expected frame inside its "
            "VXLAN tunnel:") in text
    assert "se-1 steer 198.51.100.7:40002>10.10.0.100:80 -> se-2 (new flow, bucket" in text
    assert "Ether / IP / UDP 10.10.0.11:" in text and "VXLAN vni 1 / Ether / IP / TCP 198.51.100.7:40002" in text
    assert "expected nothing at server-1.eth0 (02:00:0a:14:00:65), but 4 frames seen there:" in text
    assert "se-2 snat 198.51.100.7:40002>10.10.0.100:80" in text


def test_update_golden_creates_then_pins_the_capture(pytester):
    body = '''
def test_golden(dataplane_net):
    net = dataplane_net(SCENARIO)
    net.send("frontend", Ether(src=TESTER, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=TESTER, psrc="10.10.0.50", pdst=PDST))
    net.run()
    assert_matches_golden(net, "golden/arp.pcapng", ignore=["frame.time"])
'''
    same, changed = 'PDST = "10.10.0.100"' + body, 'PDST = "10.10.0.99"' + body
    result = run(pytester, same)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*golden capture */golden/arp.pcapng does not exist; run `pytest --update-golden`*"])
    run(pytester, same, "--update-golden").assert_outcomes(passed=1)
    golden = pytester.path / "golden" / "arp.pcapng"
    assert [r.comment.split()[1] for r in read_all(golden)] == ["gratuitous", "syslog", "sends", "arp"]
    assert_passes_gate(golden)
    run(pytester, same).assert_outcomes(passed=1)
    result = run(pytester, changed)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*capture differs from golden */golden/arp.pcapng (A = golden, B = this run)*",
        "*frontend frame 2 (#3 in A, #3 in B): arp.dst.proto_ipv4: 10.10.0.100 != 10.10.0.99",
        "*frontend: A has 1 more frame (3 in A, 2 in B); the extra frames start at frame 3",
    ])
    before = golden.read_bytes()
    run(pytester, same, "--update-golden").assert_outcomes(passed=1)
    assert golden.read_bytes() == before, "an unchanged run leaves the golden file alone"
    run(pytester, changed, "--update-golden").assert_outcomes(passed=1)
    assert len(read_all(golden)) == 3


def test_unknown_place_and_field_are_explained(pytester):
    result = run(pytester, '''
def test_place(dataplane_net):
    dataplane_net(SCENARIO).expect("se-9.frontend", WHO_HAS)

def test_field(dataplane_net):
    dataplane_net(SCENARIO).expect("frontend", WHO_HAS, mask=["ip.tll"])
''')
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*unknown place 'se-9.frontend': use a segment (clients, frontend, backend, controller)*",
                                 "*unknown field 'ip.tll'; did you mean ip.ttl*"], consecutive=False)
