"""Replay of IPv6 flows (issue 16, item 5): two-sided through a dual-stack VS, mixed with IPv4, extension
headers, fragments, offloaded checksums, snap-length cuts, and what is still skipped, with its reason."""

from __future__ import annotations

import csv
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                defragment6)
from scapy.layers.l2 import Ether

from conftest import fields, scenario_dict
from dataplane import scenario as scenario_mod
from dataplane.replay import synth
from dataplane.replay.fragments import Reassembler, fragment
from dataplane.replay.input import SKIP_REASONS
from dataplane.replay.input6 import ipv6_packet, transport6
from dataplane.replay.repair import check_checksums
from dataplane.replay.recorded_flows import RecordedFlows
from dataplane.replay.services import Services
from dataplane.replay.options import parse_match
from dataplane.testing import check
from dataplane.wire import capture_reader
from dataplane.wire.frames import SYN
from dataplane.wire.ipv6 import FlowView6, bad_checksum6
from dataplane.wire.pcapng import PcapngWriter
from test_replay import replay
from test_replay_input import account, write

T0 = 1_700_000_000 * 10**9
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CLIENT6, SERVER6 = "2001:db8:5::7", "2001:db8:6::80"
SERVERS6 = {"2001:db8:20::101", "2001:db8:20::102"}
DUAL = {
    "networks.frontend.cidr6": "2001:db8:10::/64", "networks.frontend.gateway6": "2001:db8:10::1",
    "networks.backend.cidr6": "2001:db8:20::/64", "virtual_service.vip6": "2001:db8:10::100",
    "pool.servers": ["10.20.0.101:8080", "10.20.0.102:8080", "[2001:db8:20::101]:8080", "[2001:db8:20::102]:8080"],
    "traffic.clients": ["198.51.100.0/28", "2001:db8:99::/64"],
}
REQUEST = b"GET / HTTP/1.1\r\nHost: v6\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def dual_scenario(**overrides):
    data = scenario_dict(**{**DUAL, "duration": 2.0, **overrides})
    return scenario_mod.parse(data, "replay-dual.toml")


def http6(client: str = CLIENT6, port: int = 40000, server: str = SERVER6, start: int = T0, ext=None,
          family=IPv6, server_port: int = 80, request: bytes = REQUEST,
          response: bytes = RESPONSE) -> list[tuple[int, bytes]]:
    """One recorded HTTP connection over IPv6 (or IPv4 with ``family=IP``): handshake, request, response,
    FIN exchange (8 packets, 100 us apart).  ``ext`` is put between the IPv6 header and TCP of every
    client packet.  The other replay tests build their connections with it too."""
    c_seq, s_seq = 1000, 5000

    def c(flags, payload=b""):
        ip = family(src=client, dst=server)
        return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / (ip / ext if ext is not None else ip) /
                     TCP(sport=port, dport=server_port, seq=c_seq, ack=s_seq if "A" in flags else 0, flags=flags) /
                     payload)

    def s(flags, payload=b""):
        return bytes(Ether(src=SERVER_MAC, dst=CLIENT_MAC) / family(src=server, dst=client) /
                     TCP(sport=server_port, dport=port, seq=s_seq, ack=c_seq, flags=flags) / payload)

    packets = [c("S")]
    c_seq += 1
    packets.append(s("SA"))
    s_seq += 1
    packets += [c("A"), c("PA", request)]
    c_seq += len(request)
    packets.append(s("PA", response))
    s_seq += len(response)
    packets.append(c("FA"))
    c_seq += 1
    packets.append(s("FA"))
    s_seq += 1
    packets.append(c("A"))
    return [(start + i * 100_000, frame) for i, frame in enumerate(packets)]


def frag6(whole: bytes, offset: int, length: int, more: bool, ident: int = 0x1234) -> bytes:
    """The IPv6 fragment of ``whole`` (an IPv6 packet without extension headers) holding payload bytes
    [offset, offset + length), as RFC 8200 section 4.5 cuts it."""
    piece = whole[40 + offset:40 + offset + length]
    header = whole[:4] + (8 + len(piece)).to_bytes(2, "big") + bytes((44,)) + whole[7:40]
    return header + bytes((whole[6], 0)) + (offset | more).to_bytes(2, "big") + ident.to_bytes(4, "big") + piece


def se_backend6(summary: dict) -> set[str]:
    return {nics["backend"].get("ip6") for name, nics in summary["address_plan"].items() if name.startswith("se-")}


# -- two-sided through a dual-stack VS ------------------------------------------------------

@pytest.mark.parametrize("cloud", ["vmware", "openstack-neutron"])
def test_an_ipv6_http_flow_replays_two_sided_through_a_dual_stack_vs(tmp_path, cloud):
    summary = replay(tmp_path, write(tmp_path, "v6.pcap", http6()), scenario=dual_scenario(cloud=cloud))  # the gate
    rep = summary["replay"]
    assert rep["flows"] == {"total": 1, "completed": 1, "open_at_end": 0, "reset": 0, "stalled": 0}
    assert summary["skipped"] == {} and summary["drops"] == {}
    assert rep["packets"] == {"recorded": 8, "sent": 8, "arrived": 8}
    (flow,) = rep["flow_details"]
    assert flow["recorded"] == f"[{CLIENT6}]:40000>[{SERVER6}]:80" and flow["client"] == f"[{CLIENT6}]:40000"
    capture = summary["_out"] / "capture.pcapng"
    # The SYN enters at the VIP6 and leaves the owner SE's IPv6 backend address for an IPv6 pool server.
    (routed,) = fields(capture, ["ipv6.src", "ipv6.dst", "frame.comment"],
                       'frame.interface_name == "frontend" && tcp.flags.syn == 1 && tcp.flags.ack == 0')
    assert routed[:2] == [CLIENT6, "2001:db8:10::100"] and "recorded frame 1" in routed[2]
    (syn,) = fields(capture, ["ipv6.src", "ipv6.dst", "tcp.dstport", "frame.comment"],
                    'frame.interface_name == "backend" && tcp.flags.syn == 1 && tcp.flags.ack == 0 '
                    '&& frame.comment contains "snat"')
    owner = flow["se"]
    assert syn[0] == summary["address_plan"][owner]["backend"]["ip6"] and syn[1] in SERVERS6 and syn[2] == "8080"
    assert syn[0] in se_backend6(summary)
    # The recorded response leaves the chosen server and reaches the client from the VIP6, payload intact.
    played = fields(capture, ["ipv6.src", "frame.comment"],
                    'frame.interface_name == "backend" && frame.comment contains "recorded frame"')
    assert [row[0] for row in played] == [syn[1]] * 3 and "recorded frame 5" in played[1][1]
    answered = fields(capture, ["ipv6.src", "ipv6.dst", "tcp.payload"],
                      f'frame.interface_name == "frontend" && ipv6.dst == {CLIENT6} && tcp.len > 0')
    assert answered == [["2001:db8:10::100", CLIENT6, RESPONSE.hex()]]
    rows = account(summary)
    assert [r["action"] for r in rows] == ["replayed"] * 8 and all(r["se"] == owner for r in rows)
    with open(summary["outputs"]["replay-flows.csv"], newline="") as handle:
        (flow_row,) = csv.DictReader(handle)
    assert (flow_row["recorded"], flow_row["client"], flow_row["outcome"], flow_row["client_packets"],
            flow_row["server_packets"]) == (flow["recorded"], flow["client"], "completed", "5/5/5", "3/3/3")


def test_a_capture_mixing_ipv4_and_ipv6_flows_replays_both_families(tmp_path):
    records = list(synth.http_flows(3, data_segments=1, start_ns=T0))
    for k in range(3):
        records += http6(client=f"2001:db8:5::{k + 1:x}", port=41000 + k, start=T0 + 7_000 + k * 30_000)
    records += http6(client="203.0.113.9", server="192.0.2.80", port=42000, start=T0 + 9_000, family=IP)
    records.sort(key=lambda r: r[0])
    path = tmp_path / "mixed.pcapng"
    with open(path, "wb") as handle, PcapngWriter(handle, application="test") as writer:
        iface = writer.add_interface("eth0")
        for time_ns, frame in records:
            writer.write_frame(iface, time_ns, frame)
    summary = replay(tmp_path, path, scenario=dual_scenario())
    rep = summary["replay"]
    assert rep["flows"]["total"] == rep["flows"]["completed"] == 7 and summary["skipped"] == {}
    families = {f["recorded"].startswith("[") for f in rep["flow_details"]}
    assert families == {True, False}
    capture = summary["_out"] / "capture.pcapng"
    opened = fields(capture, ["ip.dst", "ipv6.dst"], 'frame.interface_name == "backend" && tcp.flags.syn == 1 '
                    '&& tcp.flags.ack == 0 && frame.comment contains "snat"')
    v4 = [row[0] for row in opened if row[0]]
    v6 = [row[1] for row in opened if row[1]]
    assert len(v4) == 4 and set(v4) <= {"10.20.0.101", "10.20.0.102"}   # no NAT64: each family its own servers
    assert len(v6) == 3 and set(v6) <= SERVERS6
    assert rep["account"]["replayed"] == len(records)


# -- extension headers, fragments, checksums, snap length ---------------------------------------------

@pytest.mark.parametrize("ext, number, field", [
    (IPv6ExtHdrDestOpt(), "60", "ipv6.dstopts"),
    (IPv6ExtHdrHopByHop(), "0", "ipv6.hopopts"),
    (IPv6ExtHdrRouting(addresses=[], segleft=0), "43", "ipv6.routing"),    # no segment left: for the VIP
    (IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(), "0", "ipv6.dstopts"),
], ids=["destination-options", "hop-by-hop", "routing-done", "hop-by-hop-then-destination-options"])
def test_extension_headers_before_tcp_are_walked_and_replayed(tmp_path, ext, number, field):
    records = http6(ext=ext)
    summary = replay(tmp_path, write(tmp_path, "ext.pcap", records), scenario=dual_scenario())
    assert summary["replay"]["flows"]["completed"] == 1 and summary["skipped"] == {}
    capture = summary["_out"] / "capture.pcapng"
    # The headers travel with the client's packets, through the router and the SE to the server.
    for hop in ("frontend", "backend"):
        carried = fields(capture, ["ipv6.nxt", "tcp.srcport"], f'frame.interface_name == "{hop}" && {field} '
                         '&& frame.comment matches "recorded frame|snat"')
        assert len(carried) == 5 and {row[0] for row in carried} == {number}, hop


def udp6_flow(request: bytes, response: bytes, checksum: int | None = None) -> tuple[bytes, bytes]:
    client = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=CLIENT6, dst=SERVER6) / \
        UDP(sport=40053, dport=7000, chksum=checksum) / request
    server = Ether(src=SERVER_MAC, dst=CLIENT_MAC) / IPv6(src=SERVER6, dst=CLIENT6) / UDP(sport=7000, dport=40053) / \
        response
    return bytes(client), bytes(server)


def udp_scenario():
    return dual_scenario(**{"virtual_service.protocol": "udp", "virtual_service.port": 7000,
                            "virtual_service.network_profile": "udp-fast-path",
                            "pool.servers": ["10.20.0.101:7001", "[2001:db8:20::101]:7001"],
                            "pool.health_monitor": {"type": "none"}})


def test_a_fragmented_ipv6_udp_datagram_is_reassembled_and_replayed(tmp_path):
    request = bytes(range(256)) * 4                  # 1024 bytes: three fragments
    client, answer = udp6_flow(request, b"answer")
    eth, whole = client[:14], client[14:]
    pieces = [eth + frag6(whole, 0, 400, True), eth + frag6(whole, 400, 400, True),
              eth + frag6(whole, 800, 1032 - 800, False)]
    order = [pieces[2], pieces[0], pieces[0], pieces[1]]     # out of order, the first one twice
    records = [(T0 + i * 1000, p) for i, p in enumerate(order)] + [(T0 + 10**6, answer)]
    summary = replay(tmp_path, write(tmp_path, "frag6.pcap", records), scenario=udp_scenario())
    rep = summary["replay"]
    assert rep["fragments"] == {"datagrams_reassembled": 1, "entered_whole": 1, "entered_as_fragments": 0}
    assert summary["skipped"] == {"fragment_duplicate": 1} and rep["reassembled_fragments"] == 2
    assert rep["flows"]["completed"] == 1 and summary["drops"] == {}
    capture = summary["_out"] / "capture.pcapng"
    (datagram,) = fields(capture, ["ipv6.dst", "udp.length", "udp.payload"],
                         'frame.interface_name == "backend" && udp.srcport == 4096 && frame.comment contains "snat"')
    assert datagram[0] in SERVERS6 and datagram[1] == str(8 + len(request)) and datagram[2] == request.hex()
    rows = account(summary)
    assert [r["action"] for r in rows] == ["reassembled", "reassembled", "skipped", "replayed", "replayed"]
    assert "reassembled from input frames 1, 2, 4; entered whole" in rows[3]["detail"]


def test_ipv6_fragments_follow_the_ipv4_rules_overlap_and_bounds():
    whole = bytes(IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=1, dport=53) / (b"x" * 200))
    reassembler = Reassembler()
    assert reassembler.add6(frag6(whole, 0, 112, True), 40, 0, "a").status == "held"
    outcome = reassembler.add6(frag6(whole, 8, 112, True), 40, 0, "b")   # partly over the first one
    assert (outcome.status, outcome.reason, outcome.tokens) == ("discarded", "fragment_overlap", ("a", "b"))
    # A non-final fragment that is not a multiple of 8 bytes is dropped alone (RFC 8200 4.5).
    assert reassembler.add6(frag6(whole, 0, 100, True), 40, 0, "c").reason == "fragment_invalid"
    assert reassembler.held == 0 and not reassembler.queues
    # In order, with a duplicate, then a timeout for a datagram that never completes.
    assert [reassembler.add6(frag6(whole, o, n, m), 40, 0, i).status
            for i, (o, n, m) in enumerate([(0, 112, True), (0, 112, True), (112, 96, False)])] == \
        ["held", "duplicate", "complete"]
    reassembler.add6(frag6(whole, 0, 112, True, ident=2), 40, 0, "late")
    (expired,) = reassembler.expire(30 * 10**9)
    assert (expired.reason, expired.tokens) == ("fragment_timeout", ("late",))


def test_ipv6_fragmentation_to_the_mtu_round_trips_and_scapy_agrees():
    whole = bytes(IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=53) / (b"z" * 4000))
    pieces = fragment(whole, 1500)
    assert len(pieces) == 3 and all(len(p) <= 1500 for p in pieces)
    reassembler = Reassembler()
    outcomes = [reassembler.add6(p, 40, 0, i) for i, p in enumerate(reversed(pieces))]
    assert outcomes[-1].status == "complete" and outcomes[-1].packet == whole
    rebuilt = defragment6([IPv6(p) for p in pieces])
    assert bytes(rebuilt[UDP]) == bytes(IPv6(whole)[UDP])


@pytest.mark.parametrize("how", ["zero", "partial"])
def test_offloaded_ipv6_tcp_checksums_are_fixed_and_counted(tmp_path, how):
    records = []
    for time_ns, frame in http6():
        if frame[54 + 2:54 + 4] == b"\x00\x50":   # a client packet (destination port 80)
            packet = IPv6(frame[14:])
            length = len(bytes(packet[TCP]))
            value = 0
            if how == "partial":
                from dataplane.wire.checksum import ones_complement_sum
                value = ones_complement_sum(frame[22:54] + length.to_bytes(4, "big") + b"\x00\x00\x00\x06")
            frame = frame[:54 + 16] + value.to_bytes(2, "big") + frame[54 + 18:]
        records.append((time_ns, frame))
    summary = replay(tmp_path, write(tmp_path, f"offload6-{how}.pcap", records), scenario=dual_scenario())
    rep = summary["replay"]
    assert rep["checksums_fixed"] == {"ipv4": 0, "tcp": 5, "udp": 0}
    assert rep["flows"]["completed"] == 1 and summary["drops"] == {}
    routed = [c for (c,) in fields(summary["_out"] / "capture.pcapng", ["frame.comment"],
                                   'frame.comment contains "gw route"')]
    assert len(routed) == 5 and all("tcp checksum fixed: recorded 0x" in c and "likely offload" in c for c in routed)
    if how == "zero":
        assert all("recorded 0x0000, likely offload" in c for c in routed)


def test_keep_checksums_replays_ipv6_ones_as_recorded_and_the_se_drops_them(tmp_path):
    records = [(t, f[:54 + 16] + b"\x00\x00" + f[54 + 18:] if i == 0 else f) for i, (t, f) in enumerate(http6())]
    summary = replay(tmp_path, write(tmp_path, "keep6.pcap", records), gate=False, scenario=dual_scenario(),
                     keep_checksums=True)
    assert summary["replay"]["checksums_kept"] == {"ipv4": 0, "tcp": 1, "udp": 0}
    # The SYN goes out as recorded and the primary drops it; nothing else of the flow follows.
    assert summary["drops"] == {"bad_tcp_checksum": 1} and summary["replay"]["flows"]["stalled"] == 1
    findings = check.check_capture(summary["_out"] / "capture.pcapng", use_tshark=True)
    assert len({f.number for f in findings}) == 1 and "kept as recorded" in findings[0].comment


def test_bad_checksum6_agrees_with_scapy():
    for proto in (TCP(sport=1, dport=2, flags="PA"), UDP(sport=1, dport=2)):
        for payload in (b"", b"x", b"odd length!", bytes(range(200))):
            for ext in ((), (IPv6ExtHdrDestOpt(),)):
                layers = IPv6(src=CLIENT6, dst=SERVER6)
                for header in ext:
                    layers = layers / header
                good = bytes(Ether() / layers / proto / payload)
                assert bad_checksum6(good, FlowView6(good)) is None
                broken = bytearray(good)
                broken[-1 if payload else -8] ^= 1   # the last payload byte, or the source port's
                assert bad_checksum6(bytes(broken), FlowView6(bytes(broken))) == proto.name.lower()


def test_a_zero_udp_checksum_over_ipv6_is_fixed(tmp_path):
    client, server = udp6_flow(b"query", b"answer", checksum=0)
    assert client[14 + 40 + 6:14 + 40 + 8] == b"\x00\x00"
    summary = replay(tmp_path, write(tmp_path, "udp0.pcap", [(T0, client), (T0 + 10**5, server)]),
                     scenario=udp_scenario())
    assert summary["replay"]["checksums_fixed"] == {"ipv4": 0, "tcp": 0, "udp": 1}
    assert summary["replay"]["flows"]["completed"] == 1
    (row,) = [r for r in account(summary) if r["frame"] == "1"]
    assert "udp checksum fixed: recorded 0x0000, likely offload" in row["detail"]


def test_a_snaplen_cut_ipv6_capture_replays_with_its_payload_filled(tmp_path):
    records = http6()
    summary = replay(tmp_path, write(tmp_path, "s90.pcap", records, snaplen=90), scenario=dual_scenario())
    rep = summary["replay"]
    assert rep["snaplen_filled"] == 2 and rep["flows"]["completed"] == 1     # the request and the response
    assert rep["checksums_fixed"] == {"ipv4": 0, "tcp": 0, "udp": 0}
    headers_cut = replay(tmp_path, write(tmp_path, "s60.pcap", records, snaplen=60), "cut",
                         scenario=dual_scenario())
    assert headers_cut["skipped"] == {"snaplen_headers": 8}


# -- selection and what is still skipped ------------------------------------------------------------

def test_match_selects_ipv6_flows_by_address_and_port(tmp_path):
    records = sorted(http6(port=40000) + http6(client="2001:db8:5::8", port=40001, start=T0 + 50_000),
                     key=lambda r: r[0])
    path = write(tmp_path, "two6.pcap", records)
    summary = replay(tmp_path, path, scenario=dual_scenario(),
                     matches=(parse_match("client=[2001:db8:5::8]:40001,server=2001:db8:6::/64"),))
    assert summary["replay"]["flows"]["completed"] == 1 and summary["skipped"] == {"not_selected": 8}
    (flow,) = summary["replay"]["flow_details"]
    assert flow["client"] == "[2001:db8:5::8]:40001"
    none = replay(tmp_path, path, "v4", scenario=dual_scenario(), matches=(parse_match("client=0.0.0.0/0"),))
    assert none["replay"]["flows"]["total"] == 0   # an IPv4 network never matches an IPv6 address


def test_icmpv6_routing_headers_and_a_vs_without_vip6_are_skipped_with_their_reasons(tmp_path):
    echo = bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6EchoRequest())
    routed = bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=CLIENT6, dst=SERVER6) /
                   IPv6ExtHdrRouting(addresses=["2001:db8:7::1"], segleft=1) / TCP(sport=40100, dport=80, flags="S"))
    late = http6(port=40200, start=T0 + 2 * 10**7)[3:]        # a connection recorded from its request on
    records = http6() + [(T0 + 10**7, echo), (T0 + 10**7 + 1, routed)] + late
    path = write(tmp_path, "skips6.pcap", records)
    dual = replay(tmp_path, path, "dual", scenario=dual_scenario())
    assert dual["skipped"] == {"ipv6_other_protocol": 1, "ipv6_routing_header": 1, "mid_flow": 5}
    assert dual["replay"]["flows"]["completed"] == 1
    v4_only = replay(tmp_path, path, "v4")     # test_replay's IPv4-only scenario: no vip6
    assert v4_only["skipped"] == {"ipv6_no_vip6": 8, "ipv6_other_protocol": 1, "ipv6_routing_header": 1,
                                  "mid_flow": 5}
    assert v4_only["replay"]["flows"]["total"] == 0


def test_a_flow_of_the_family_the_vs_has_no_vip_for_is_skipped_with_its_reason():
    # The flow table alone (tests/test_replay_multi_vs.py replays against an IPv6-only VS end to end).
    skipped = []

    class Owner:
        def skip(self, row, reason):
            skipped.append(reason)

    import netaddr
    vs = types.SimpleNamespace(name="vs6", vip=None, vip6=bytes(15) + b"\x01", proto=6, port=80,
                               listens=bytearray(80) + b"\x01" + bytearray(65455))
    flows = RecordedFlows(Owner(), Services([vs]), netaddr.IPNetwork("10.10.0.0/24"), set(),
                          netaddr.IPNetwork("2001:db8:10::/64"))
    v4 = bytes((203, 0, 113, 9)), bytes((192, 0, 2, 80))
    assert flows.find(6, v4[0], 42000, v4[1], 80, SYN, 0, 0, "row") is None
    assert skipped == ["ipv4_no_vip"] and "ipv4_no_vip" in SKIP_REASONS


def test_ipv6_packet_reasons():
    whole = bytes(IPv6(src=CLIENT6, dst=SERVER6) / TCP(sport=1, dport=80))
    packet, reason, filled, l4, proto, frag_at = ipv6_packet(whole + b"pad", False)
    assert (packet, reason, filled, l4, proto, frag_at) == (whole, None, 0, 40, 6, 0)
    assert ipv6_packet(whole[:50], False)[1] == "malformed"                # payload length past the frame
    assert ipv6_packet(whole[:50], True)[1] == "snaplen_headers"           # cut inside the TCP header
    assert ipv6_packet(whole[:50], True, skip_cut=True)[1] == "snaplen_truncated"
    jumbo = bytearray(whole)
    jumbo[4:7] = b"\x00\x00\x00"
    assert ipv6_packet(bytes(jumbo), False)[1] == "ipv6_jumbogram"


def test_ipv6_flows_on_raw_ipv6_and_loopback_link_types_replay(tmp_path):
    records = http6()
    raw = write(tmp_path, "raw6.pcap", [(t, f[14:]) for t, f in records], linktype=229)
    assert len(capture_reader.read_all(raw)) == 8
    summary = replay(tmp_path, raw, "raw", scenario=dual_scenario())
    assert summary["replay"]["flows"]["completed"] == 1 and summary["skipped"] == {}
    null = write(tmp_path, "null6.pcap", [(t, (30).to_bytes(4, "little") + f[14:]) for t, f in records], linktype=0)
    summary = replay(tmp_path, null, "null", scenario=dual_scenario())
    assert summary["replay"]["flows"]["completed"] == 1 and summary["skipped"] == {}


def test_a_frame_with_nothing_after_its_link_layer_is_malformed_not_a_crash(tmp_path):
    records = [(T0, bytes(12) + b"\x08\x00"), (T0 + 1, bytes(12) + b"\x86\xdd"), (T0 + 2, bytes(12) + b"\x86\xdd\x60")]
    summary = replay(tmp_path, write(tmp_path, "empty.pcap", records), scenario=dual_scenario())
    assert summary["skipped"] == {"malformed": 3}


def test_an_ipv6_datagram_over_the_mtu_enters_as_fragments_again(tmp_path):
    syn, synack, ack = http6()[:3]
    request = b"POST / HTTP/1.1\r\n\r\n" + b"p" * 2981
    big = bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=CLIENT6, dst=SERVER6) /
                TCP(sport=40000, dport=80, seq=1001, ack=5001, flags="PA") / request)
    eth, whole = big[:14], big[14:]
    length = len(whole) - 40
    pieces = [eth + frag6(whole, offset, min(1448, length - offset), offset + 1448 < length)
              for offset in range(0, length, 1448)]
    records = [syn, synack, ack] + [(ack[0] + 1000 + i, piece) for i, piece in enumerate(pieces)]
    summary = replay(tmp_path, write(tmp_path, "big6.pcap", records), scenario=dual_scenario())
    assert summary["replay"]["fragments"] == {"datagrams_reassembled": 1, "entered_whole": 0,
                                              "entered_as_fragments": 1}
    # The emulated SEs do not reassemble: the primary drops the fragments it is sent.
    assert summary["drops"] == {"se_unsupported": 3} and summary["replay"]["flows"]["stalled"] == 1
    routed = fields(summary["_out"] / "capture.pcapng", ["ipv6.fraghdr.offset", "ipv6.fraghdr.more", "frame.comment"],
                    'frame.interface_name == "frontend" && ipv6.fraghdr && frame.comment contains "gw route"')
    assert [(r[0], r[1]) for r in routed] == [("0", "1"), ("181", "1"), ("362", "0")]   # 8-byte units
    assert "reassembled from input frames 4, 5, 6; entered as 3 fragments" in routed[0][2]


def test_loop_moves_ipv6_client_addresses_too(tmp_path):
    summary = replay(tmp_path, write(tmp_path, "loop6.pcap", http6()), scenario=dual_scenario(), loop=2)
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 2
    assert [f["client"] for f in rep["flow_details"]] == [f"[{CLIENT6}]:40000", "[2101:db8:5::7]:40000"]


SEED_PACKETS = [bytes(IPv6(src=CLIENT6, dst=SERVER6) / ext / proto / b"data")
                for ext in (IPv6ExtHdrDestOpt(), IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[], segleft=0))
                for proto in (TCP(sport=1, dport=80, flags="S"), UDP(sport=1, dport=80))]


@settings(max_examples=300, deadline=None)
@given(seed=st.sampled_from(SEED_PACKETS), flips=st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)),
                                                          max_size=6),
       cut=st.integers(0, 140), snapped=st.booleans())
def test_hostile_ipv6_packets_get_a_reason_never_an_exception(seed, flips, cut, snapped):
    packet = bytearray(seed)
    for at, value in flips:
        if at < len(packet):
            packet[at] = value
    raw = bytes(packet[:cut]) if cut < len(packet) else bytes(packet)
    accepted, reason, filled, l4, proto, frag_at = ipv6_packet(raw, snapped)
    if accepted is None:
        assert reason in SKIP_REASONS
        return
    # What is accepted is whole, and its TCP/UDP (or fragment) header lies inside it.
    assert len(accepted) == 40 + int.from_bytes(accepted[4:6], "big") and proto in (6, 17)
    assert l4 + (8 if frag_at or proto == 17 else 20) <= len(accepted)
    if not frag_at:
        assert transport6(accepted) == (l4, proto)
        assert check_checksums(accepted) is not None
