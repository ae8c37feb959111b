"""Hostile frames inside the emulated network: counted drops, never a traceback, bounded state, forged SE traffic refused.

Each case of issue 17's list that is about frames has a test here; the
property-based tests at the end send generated frames (random lengths, header
fields, flags, truncations) into a running network of each cloud type and
check that nothing raises, that state stays bounded and that a legitimate
flow is still served afterwards.  Captures that carry frames the test forged
on purpose pass the tshark gate except on those frames, which say so in their
comment ("[malformed: ...]").
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dataplane.l2.segment import MAC_TABLE_SIZE, MAX_FRAME
from dataplane.nodes import server as server_module
from dataplane.nodes.host import ARP_PENDING
from dataplane.testing import check, start_network
from conftest import scenario_dict

VIP, CLIENT = "10.10.0.100", "203.0.113.9"


def drops(net) -> dict:
    return net.network.summary()["drops"]


def syn_to_vip(net, sport: int, client: str = CLIENT):
    return Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=client, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags="S", seq=1000)


def synack_back(net, sport: int, client: str = CLIENT):
    """The SYN-ACK the client's SYN gets, as it reaches the router (whoever owns the flow)."""
    return Ether(dst=net.mac("gw")) / IP(src=VIP, dst=client, flags="DF") / \
        TCP(sport=80, dport=sport, flags="SA", ack=1001, options=[("MSS", 1460)])


def assert_served(net, sport: int) -> None:
    """A legitimate client connection is still answered."""
    net.send("gw.frontend", syn_to_vip(net, sport))
    net.expect("gw.frontend", synack_back(net, sport), mask=["eth.src", "ip.id", "ip.ttl", "tcp.seq", "tcp.window"])


def assert_findings_only_on_forged_frames(net, tmp_path) -> None:
    """tshark reads the capture: any finding is on a frame the test forged, and its comment names the defect."""
    path = tmp_path / "hostile.pcapng"
    path.write_bytes(net.capture_bytes())
    findings = check.check_capture(path, use_tshark=True)
    stray = [f for f in findings if "test sends" not in f.comment]
    assert not stray, check.format_findings(stray)


def ipv4_bytes(frame) -> bytearray:
    return bytearray(bytes(frame))


# -- the cases of issue 17 -----------------------------------------------------------------------------------------

def test_malformed_ipv4_frames_are_dropped_and_counted_with_their_defect(dataplane_net, tmp_path):
    net = dataplane_net(scenario_dict())
    net.discard()
    short = bytes(Ether(src="02:aa:00:00:00:08", dst=net.mac("gw"), type=0x0800)) + b"\x45\x00\x00\x14\x00"  # 19 bytes
    net.send("frontend", short)
    big_ihl = ipv4_bytes(syn_to_vip(net, 1))
    big_ihl[14] = 0x4F  # IHL 15: a 60-byte header in a 54-byte frame
    net.send("frontend", bytes(big_ihl))
    cut_tcp = ipv4_bytes(Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=CLIENT, dst=VIP) /
                         (b"\x00\x50\x00\x50\x00\x00\x00\x01"))
    cut_tcp[23] = 6  # says TCP, carries 8 bytes
    struct.pack_into("!H", cut_tcp, 24, 0)
    net.send("frontend", bytes(cut_tcp))
    runt_to_backend = bytes(Ether(src="02:aa:00:00:00:09", dst=net.mac("se-2", "backend"), type=0x0800)) + b"\x45" * 8
    net.send("backend", runt_to_backend)
    net.settle()
    counted = drops(net)
    assert counted["malformed_ipv4_truncated"] == 2 and counted["malformed_ipv4_header_length"] == 1
    assert counted["malformed_tcp_truncated"] == 1
    comments = [s.comment for s in net.seen if s.by_test]
    assert "[malformed: 19-byte frame is shorter than Ethernet and IPv4 headers]" in comments[0]
    assert "[malformed: ipv4 header length 60 does not fit total length 40]" in comments[1]
    assert "[malformed: tcp header cut short (8 bytes)]" in comments[2]
    assert_served(net, 40000)
    assert_findings_only_on_forged_frames(net, tmp_path)


def test_a_malformed_frame_inside_the_tunnel_and_toward_a_probe_port(dataplane_net, tmp_path):
    net = dataplane_net(scenario_dict(cloud="openstack-neutron"))
    inner = ipv4_bytes(syn_to_vip(net, 7))
    inner[14] = 0x4F
    tunnelled = Ether(src=net.mac("se-1"), dst=net.mac("se-2")) / IP(src=net.ip("se-1"), dst=net.ip("se-2")) / \
        UDP(sport=50000, dport=1550) / VXLAN(vni=1) / bytes(inner)
    net.send("frontend", tunnelled)
    probe = ipv4_bytes(Ether(src=net.mac("se-1"), dst=net.mac("se-2")) / IP(src=net.ip("se-1"), dst=net.ip("se-2"))
                       / UDP(sport=1551, dport=1551) / b"DPFP")
    probe[14] = 0x4F
    net.send("frontend", bytes(probe))
    net.settle()
    counted = drops(net)
    assert counted["tunnel_malformed_ipv4_header_length"] == 1 and counted["malformed_ipv4_header_length"] == 1
    assert any("[malformed: inside the tunnel: ipv4 header length 60" in s.comment for s in net.seen if s.by_test)
    assert_findings_only_on_forged_frames(net, tmp_path)


def test_a_frame_larger_than_the_segment_carries_is_dropped_at_the_port(dataplane_net):
    net = dataplane_net(scenario_dict(cloud="openstack-neutron"))
    huge = bytes(syn_to_vip(net, 9)) + b"x" * 100_000  # a 100 kB frame: more than any IPv4 length can say
    net.send("gw.frontend", huge)
    net.settle()
    assert drops(net)["frame_size"] == 1
    assert f"does not fit Ethernet (14..{MAX_FRAME} bytes)" in net.seen[-1].comment
    assert_served(net, 40001)


def refused_with_a_reset(net, sport: int):
    """Send a new flow's SYN from ``sport``; the SE answers it with a RST to the client, which is returned."""
    net.send("gw.frontend", syn_to_vip(net, sport))
    return net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT) /
                      TCP(sport=80, dport=sport, flags="RA", seq=0, ack=1001, window=64240),
                      mask=["eth.src", "ip.id", "ip.flags"])


def test_nat_port_exhaustion_refuses_new_flows_and_keeps_the_old(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1"], "pool.health_monitor": {"type": "none"},
                                         "se_group.ephemeral_portrange_start": 2000,
                                         "se_group.ephemeral_portrange_end": 2003}))
    for sport in range(41000, 41004):
        assert_served(net, sport)
    reset = refused_with_a_reset(net, 41004)
    assert "no NAT port left" in reset.comment and drops(net)["nat_ports_exhausted"] == 1
    data = Ether(src=net.mac("gw"), dst=net.mac("se-1")) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=41000, dport=80, flags="A", seq=1001, ack=1) / b"GET / HTTP/1.0\r\n\r\n"
    net.send("gw.frontend", data)
    net.expect("se-1.backend", Ether() / IP(src=net.ip("se-1", "backend"), dst="0.0.0.0", ttl=62) /
               TCP(sport=2000, dport=8080, flags="A", seq=1001, ack=1) / b"GET / HTTP/1.0\r\n\r\n",
               mask=["eth.addr", "ip.dst", "ip.id", "ip.flags", "tcp.ack", "tcp.window"])


def test_a_full_flow_table_refuses_new_flows_with_a_reset(dataplane_net, monkeypatch):
    from dataplane.control import virtual_service
    monkeypatch.setattr(virtual_service, "FLOW_TABLE_CAPACITY", 3)
    net = dataplane_net(scenario_dict(**{"pool.health_monitor": {"type": "none"}}))
    for sport in range(42000, 42003):
        assert_served(net, sport)
    reset = refused_with_a_reset(net, 42003)
    assert "flow table full" in reset.comment and drops(net)["flow_table_full"] == 1


def test_tunnel_traffic_from_a_host_that_is_no_se_is_refused(dataplane_net):
    net = dataplane_net(scenario_dict(cloud="openstack-neutron", **{"pool.health_monitor": {"type": "none"}}))
    net.discard()
    inner = syn_to_vip(net, 43000, client="198.18.0.66")
    inner[Ether].dst = net.mac("se-2")
    forged = Ether(src="02:aa:00:00:00:66", dst=net.mac("se-2")) / IP(src="10.10.0.66", dst=net.ip("se-2")) / \
        UDP(sport=50000, dport=1550) / VXLAN(vni=1) / inner
    net.send("frontend", forged)
    net.expect_none("backend")
    assert drops(net)["tunnel_foreign_source"] == 1
    assert not net.network.nodes["se-2"].nat.by_client


def test_a_forged_flow_probe_claim_does_not_rewrite_the_flow_table(dataplane_net):
    net = dataplane_net(scenario_dict(**{"pool.health_monitor": {"type": "none"}}))
    net.fail_se("se-1")
    net.wait_for("se.promoted")
    mid_flow = Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=44000, dport=80, flags="A", seq=5, ack=5)
    net.send("gw.frontend", mid_flow)  # the new primary holds it and asks the others...
    net.advance(0.000025)  # ...and the forged claim below arrives before their answers
    from dataplane import flowhash
    from dataplane.nodes import flow_probe
    from dataplane.wire import frames
    key = flowhash.flow_key(frames.ip_bytes(CLIENT), frames.ip_bytes(VIP), 6, 44000, 80)
    pending = net.network.nodes[net.primary].prober.pending[key]
    claim = flow_probe.encode(flow_probe.CLAIM, pending.probe_id, key)
    forged = Ether(src="02:aa:00:00:00:77", dst=net.mac(net.primary)) / \
        IP(src=net.ip("se-3"), dst=net.ip(net.primary)) / UDP(sport=1551, dport=1551) / claim
    net.send("frontend", forged)  # se-3's address, not se-3's MAC
    net.settle()
    assert drops(net)["flow_probe_foreign_source"] == 1
    assert net.owner_of(mid_flow) is None, "the forged claim must not put the flow on se-3"


def test_a_syn_flood_fills_the_backlog_then_gets_syn_cookies(dataplane_net, monkeypatch):
    monkeypatch.setattr(server_module, "SYN_BACKLOG", 8)
    net = dataplane_net(scenario_dict(**{"pool.health_monitor": {"type": "none"}}))
    server = net.network.nodes["server-1"]
    flooder = ("se-2.backend", net.mac("se-2", "backend"), net.ip("se-2", "backend"))  # answers ARP, drops SYN-ACKs
    for sport in range(45000, 45020):
        net.send(flooder[0], Ether(src=flooder[1], dst=net.mac("server-1")) /
                 IP(src=flooder[2], dst="10.20.0.101") / TCP(sport=sport, dport=8080, flags="S", seq=77))
    net.settle()
    assert server.half_open == 8 and len(server.connections) == 8
    assert drops(net)["server_syn_backlog_full"] == 12
    cookie = [s for s in net.seen if "syn cookie" in s.comment][0]
    cookie_isn = TCP(cookie.frame[34:]).seq
    net.send(flooder[0], Ether(src=flooder[1], dst=net.mac("server-1")) /
             IP(src=flooder[2], dst="10.20.0.101") / TCP(sport=TCP(cookie.frame[34:]).dport, dport=8080,
                                                          flags="A", seq=78, ack=cookie_isn + 1))
    net.settle()
    assert len(server.connections) == 9, "the cookie's ACK made a connection, with no state kept before it"
    net.advance(70)
    assert server.half_open == 0 and drops(net)["server_half_open_expired"] == 8


def test_a_half_open_connection_retransmits_its_syn_ack_then_is_forgotten(dataplane_net):
    net = dataplane_net(scenario_dict(**{"pool.health_monitor": {"type": "none"}}))
    net.send("se-2.backend", Ether(src=net.mac("se-2", "backend"), dst=net.mac("server-1")) /
             IP(src=net.ip("se-2", "backend"), dst="10.20.0.101") / TCP(sport=46000, dport=8080, flags="S", seq=77))
    net.advance(70)
    times = [round(s.time_ns / 1e9) for s in net.seen if "syn-ack" in s.comment or "accept" in s.comment]
    assert times == [0, 1, 3, 7, 15, 31]  # tcp_synack_retries = 5 on a doubling timer
    assert drops(net)["server_half_open_expired"] == 1 and not net.network.nodes["server-1"].connections


def test_the_record_of_seen_frames_stays_bounded_under_a_flood(dataplane_net):
    net = dataplane_net(scenario_dict(**{"pool.health_monitor": {"type": "none"}}), max_seen=500)
    for sport in range(5000):
        net.send("frontend", Ether(src="02:aa:00:00:00:01", dst="02:aa:00:00:00:02") /
                 IP(src=CLIENT, dst="10.10.0.99") / TCP(sport=10000 + sport, dport=9, flags="S"))
    assert len(net.seen) <= 500
    net.send("frontend", Ether(src="02:aa:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.10.0.50", pdst=VIP))
    with pytest.raises(AssertionError, match="frames were forgotten"):
        net.send("frontend", Ether(src="02:aa:00:00:00:01", dst="02:aa:00:00:00:02") / IP() / TCP())
        net.discard()
        for s in net.seen:
            s.consumed = False  # pretend the flood was never looked at
        net.forgotten = 1
        net.expect_no_other()


# -- generated frames into a running network ---------------------------------------------------------------------

PLACES = ("frontend", "backend", "gw.frontend")
FIELDS = {  # offset in the frame -> width: header fields worth breaking
    12: 2, 14: 1, 16: 2, 20: 2, 22: 1, 23: 1, 34: 2, 36: 2, 38: 2, 46: 1, 47: 1,
}


@st.composite
def hostile_frames(draw):
    """A well-formed frame of a kind the network handles, then broken: fields overwritten, cut, or grown."""
    kind = draw(st.sampled_from(["tcp", "udp", "tunnel", "probe", "arp", "icmp"]))
    sport = draw(st.integers(1, 65535))
    if kind == "tcp":
        frame = Ether(dst="02:00:0a:0a:00:0b") / IP(src=CLIENT, dst=VIP) / TCP(
            sport=sport, dport=80, flags=draw(st.integers(0, 255)), seq=draw(st.integers(0, 2**32 - 1)))
    elif kind == "udp":
        frame = Ether(dst="02:00:0a:0a:00:0b") / IP(src=CLIENT, dst=VIP) / UDP(sport=sport, dport=80) / b"q"
    elif kind == "tunnel":
        frame = Ether(src="02:00:0a:0a:00:0b", dst="02:00:0a:0a:00:0c") / IP(src="10.10.0.11", dst="10.10.0.12") / \
            UDP(sport=sport, dport=1550) / VXLAN(vni=1) / Ether(dst="02:00:0a:0a:00:0c") / \
            IP(src=CLIENT, dst=VIP) / TCP(sport=sport, dport=80, flags="S")
    elif kind == "probe":
        frame = Ether(src="02:00:0a:0a:00:0c", dst="02:00:0a:0a:00:0b") / IP(src="10.10.0.12", dst="10.10.0.11") / \
            UDP(sport=1551, dport=1551) / draw(st.binary(max_size=60))
    elif kind == "arp":
        frame = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=draw(st.sampled_from([CLIENT, VIP, "10.10.0.11"])),
                                                     pdst=VIP, op=draw(st.integers(0, 3)))
    else:
        frame = Ether(dst="02:00:0a:14:00:65") / IP(src="10.20.0.11", dst="10.20.0.101", proto=1) / \
            (b"\x08\x00" + draw(st.binary(max_size=20)))
    data = bytearray(bytes(frame))
    for offset, width in draw(st.lists(st.sampled_from(sorted(FIELDS.items())), max_size=3)):
        if offset + width <= len(data):
            data[offset:offset + width] = draw(st.binary(min_size=width, max_size=width))
    cut = draw(st.integers(0, len(data)))
    data = data[:cut] if draw(st.booleans()) else data + draw(st.binary(max_size=40))
    return draw(st.sampled_from(PLACES)), bytes(data)


NETS: dict[str, object] = {}
FRESH_PORTS = itertools.count(20000)


def network_for(cloud: str):
    if cloud not in NETS:
        NETS[cloud] = start_network(scenario_dict(cloud=cloud, duration=3600.0,
                                                  **{"pool.health_monitor": {"type": "none"}}))
    return NETS[cloud]


CLOUDS = ("vmware", "openstack-nuage", "openstack-neutron")


@pytest.mark.parametrize("cloud", CLOUDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(hostile_frames(), min_size=1, max_size=25))
def test_generated_frames_never_raise_and_leave_the_network_serving(cloud, batch):
    net = network_for(cloud)
    sport = next(FRESH_PORTS)  # a new client connection each time, never one an earlier example opened
    for where, frame in batch:
        net.send(where, frame)
    net.settle()
    for node in net.network.nodes.values():
        assert len(node._arp_waiting) <= ARP_PENDING
    for segment in net.network.segments.values():
        assert len(segment.mac_table) <= MAC_TABLE_SIZE
    assert all(len(se.nat) < 10_000 for se in net.network.service_engines())
    assert_served(net, sport)
    net.discard()


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_generated_frames_captures_fail_the_gate_only_on_forged_frames(cloud, tmp_path):
    assert_findings_only_on_forged_frames(network_for(cloud), tmp_path)


@given(st.binary(min_size=0, max_size=60), st.integers(0, 53), st.integers(0, 255))
@settings(max_examples=400)
def test_flowview_fast_path_parses_as_the_general_path(tail, at, value):
    """FlowView's shortcut for the common IPv4/TCP frame gives the general parse's fields, or its refusal."""
    from dataplane.wire import frames as fr

    base = bytearray(fr.tcp_frame(b"\x02" * 6, b"\x04" * 6, bytes((198, 51, 100, 7)), bytes((10, 10, 0, 100)),
                                  40000, 80, 1000, 5, fr.ACK, payload=b"x" * 20))
    base[at] = value
    frame = bytes(base) + tail
    general = fr.FlowView.__new__(fr.FlowView)
    try:
        general._parse(frame, len(frame))
    except fr.Malformed as refused:
        with pytest.raises(fr.Malformed) as again:
            fr.FlowView(frame)
        assert again.value.reason == refused.reason
        return
    fast = fr.FlowView(frame)
    assert all(getattr(fast, name) == getattr(general, name) for name in fr.FlowView.__slots__)
