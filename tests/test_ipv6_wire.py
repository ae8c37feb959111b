"""IPv6 frames as bytes: the parse, the builders, NAT and hop-limit rewrites, against Scapy and tshark.

Scapy is the independent dissector here (it never runs on the forwarding
path); every frame these tests build is also written to a capture that
tshark reads with checksum validation on (``assert_passes_gate``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from conftest import assert_passes_gate, fields
from dataplane import flowhash
from dataplane.l2.capture import EPOCH_NS
from dataplane.wire import frames, ipv6
from dataplane.wire.checksum import transport_checksum
from dataplane.wire.headers import ACK, PROTO_TCP, PROTO_UDP, PSH, SYN, TCP_MSS6
from dataplane.wire.pcapng import PcapngWriter

CLIENT_MAC, SE_MAC = frames.mac_bytes("02:00:c6:33:64:07"), frames.mac_bytes("02:00:0a:0a:00:0b")
CLIENT, VIP = ipv6.ipv6_bytes("2001:db8:c::7"), ipv6.ipv6_bytes("2001:db8:10::100")
SNAT, SERVER = ipv6.ipv6_bytes("2001:db8:20::11"), ipv6.ipv6_bytes("2001:db8:20::101")


def write_capture(path: Path, frame_list: list[bytes]) -> Path:
    with PcapngWriter(path) as writer:
        iface = writer.add_interface("frontend")
        for number, frame in enumerate(frame_list):
            writer.write_frame(iface, EPOCH_NS + number, frame, f"frame {number + 1}")
    return path


def syn() -> bytes:
    return ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1000, 0, SYN, mss=TCP_MSS6)


def scapy_checksum_of(frame: bytes, layer) -> int:
    """The checksum Scapy computes for ``layer`` of ``frame`` (its own pseudo-header code, not ours)."""
    packet = Ether(frame)
    del packet[layer].chksum
    return Ether(bytes(packet))[layer].chksum


def with_extensions(*headers, payload=None, **ip) -> bytes:
    """A Scapy-built IPv6 frame with extension headers between the IPv6 header and ``payload``."""
    packet = IPv6(src=ipv6.ipv6_text(CLIENT), dst=ipv6.ipv6_text(VIP), **ip)
    for header in headers:
        packet = packet / header
    return bytes(Ether(src="02:00:c6:33:64:07", dst="02:00:0a:0a:00:0b") / packet /
                 (payload if payload is not None else TCP(sport=40000, dport=80, flags="S")))


# -- builders against Scapy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"x", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 5])
def test_tcp_over_ipv6_round_trips_through_scapy(payload):
    frame = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 7, 9, PSH | ACK, payload, hop_limit=63,
                            flow_label=0x12345)
    packet = Ether(frame)
    assert (packet.type, packet[IPv6].version, packet[IPv6].nh, packet[IPv6].hlim, packet[IPv6].fl) == \
        (0x86DD, 6, 6, 63, 0x12345)
    assert (packet[IPv6].src, packet[IPv6].dst, packet[IPv6].plen) == ("2001:db8:c::7", "2001:db8:10::100",
                                                                       20 + len(payload))
    assert (packet[TCP].sport, packet[TCP].dport, packet[TCP].seq, packet[TCP].ack) == (40000, 80, 7, 9)
    assert packet[TCP].flags == "PA" and bytes(packet[TCP].payload) == payload
    assert packet[TCP].chksum == scapy_checksum_of(frame, TCP)


def test_a_syn_over_ipv6_carries_the_ipv6_mss():
    packet = Ether(syn())
    assert packet[TCP].flags == "S" and dict(packet[TCP].options)["MSS"] == TCP_MSS6 == 1440


@pytest.mark.parametrize("payload", [b"", b"q", b"query" * 100])
def test_udp_over_ipv6_round_trips_through_scapy(payload):
    frame = ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40001, 9, payload)
    packet = Ether(frame)
    assert (packet[UDP].sport, packet[UDP].dport, packet[UDP].len) == (40001, 9, 8 + len(payload))
    assert bytes(packet[UDP].payload) == payload
    assert packet[UDP].chksum == scapy_checksum_of(frame, UDP) != 0


def payload_whose_udp_checksum_computes_to_zero() -> bytes:
    """Two payload bytes chosen so that the one's-complement sum of the datagram is all ones."""
    base = ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40001, 9, b"ab\x00\x00")
    # With the last word zero, the checksum field holds ~S (S: the sum of everything else); a last word of
    # ~S brings the sum to 0xffff, whose checksum is zero.
    return b"ab" + base[54 + 6:54 + 8]


def test_a_udp_checksum_that_computes_to_zero_is_sent_as_all_ones():
    payload = payload_whose_udp_checksum_computes_to_zero()
    frame = ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40001, 9, payload)
    assert frame[54 + 6:54 + 8] == b"\xff\xff"
    assert Ether(frame)[UDP].chksum == scapy_checksum_of(frame, UDP) == 0xFFFF
    assert ipv6.FlowView6(frame).payload(frame) == payload


def test_the_reset_for_a_syn_acknowledges_it_and_for_a_segment_takes_its_ack():
    reset = Ether(ipv6.tcp6_reset_for(syn(), SE_MAC))
    assert (reset[IPv6].src, reset[IPv6].dst, reset[TCP].sport, reset[TCP].dport) == \
        ("2001:db8:10::100", "2001:db8:c::7", 80, 40000)
    assert reset[TCP].flags == "RA" and (reset[TCP].seq, reset[TCP].ack) == (0, 1001)
    assert reset.dst == "00:00:00:00:00:00" and reset.src == "02:00:0a:0a:00:0b"
    data = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1001, 5000, PSH | ACK, b"hello")
    reset = Ether(ipv6.tcp6_reset_for(data, SE_MAC))
    assert reset[TCP].flags == "R" and (reset[TCP].seq, reset[TCP].ack) == (5000, 0)
    assert reset[TCP].chksum == scapy_checksum_of(bytes(reset), TCP)
    with pytest.raises(ValueError, match="no tcp header"):
        ipv6.tcp6_reset_for(ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 1, 2, b"x"), SE_MAC)


def test_vxlan_over_ipv4_carries_an_ipv6_frame():
    inner = syn()
    outer = frames.vxlan_frame(SE_MAC, CLIENT_MAC, frames.ip_bytes("10.10.0.11"), frames.ip_bytes("10.10.0.12"),
                               50000, 4789, 7, inner, ident=3)
    packet = Ether(outer)
    assert packet[VXLAN].vni == 7 and bytes(packet[VXLAN].payload) == inner
    assert packet[VXLAN].payload[IPv6].dst == "2001:db8:10::100" and packet[UDP].chksum == \
        scapy_checksum_of(outer, UDP)
    view = frames.FlowView(outer)
    assert frames.vxlan_inner(outer, view) == inner
    assert ipv6.FlowView6(frames.vxlan_inner(outer, view)).dport == 80


def test_an_oversized_payload_is_refused_rather_than_sent_as_a_jumbogram():
    with pytest.raises(ValueError, match="jumbogram"):
        ipv6.ipv6(CLIENT, VIP, 59, bytes(65536))
    assert len(ipv6.ipv6(CLIENT, VIP, 59, bytes(65535))) == 40 + 65535


# -- the parse ---------------------------------------------------------------------------------------------------------

def test_the_view_has_the_ipv4_views_field_names():
    frame = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1000, 77, PSH | ACK, b"hello", hop_limit=9)
    view = ipv6.FlowView6(frame)
    assert (view.version, view.src, view.dst, view.proto, view.sport, view.dport) == (6, CLIENT, VIP, 6, 40000, 80)
    assert (view.seq, view.flags, view.ttl, view.payload_len, view.fragment) == (1000, PSH | ACK, 9, 5, False)
    assert (view.l4, view.ihl, view.end, view.frag_at) == (54, 40, len(frame), 0)
    assert view.payload(frame + bytes(6)) == b"hello"  # Ethernet padding is not payload
    assert view.describe() == "[2001:db8:c::7]:40000>[2001:db8:10::100]:80"
    assert ipv6.seq_ack_of(frame, view) == (1000, 77) and ipv6.window_of(frame, view) == 64240
    assert set(frames.FlowView.__slots__) <= set(ipv6.FlowView6.__slots__)
    assert frames.FlowView.version == 4


def test_ip_view_picks_the_family_by_ethertype():
    v4 = frames.tcp_frame(SE_MAC, CLIENT_MAC, frames.ip_bytes("198.51.100.7"), frames.ip_bytes("10.10.0.100"),
                          40000, 80, 1, 0, SYN)
    assert type(ipv6.ip_view(v4)) is frames.FlowView and type(ipv6.ip_view(syn())) is ipv6.FlowView6


@pytest.mark.parametrize("headers, hops", [
    ([IPv6ExtHdrHopByHop()], 8),
    ([IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(segleft=0)], 24),
    ([IPv6ExtHdrDestOpt(options=[]) for _ in range(ipv6.MAX_EXTENSION_HEADERS)], 8 * ipv6.MAX_EXTENSION_HEADERS),
    ([IPv6ExtHdrFragment(offset=0, m=0, id=9)], 8),  # an atomic fragment is a whole packet (RFC 6946)
], ids=["hop-by-hop", "three", "longest", "atomic-fragment"])
def test_extension_headers_are_walked_to_the_transport_header(headers, hops):
    frame = with_extensions(*headers)
    view = ipv6.FlowView6(frame)
    packet = Ether(frame)
    assert (view.proto, view.l4, view.sport, view.dport, view.flags) == (6, 54 + hops, 40000, 80, SYN)
    assert view.l4 == len(frame) - len(packet[TCP]) and not view.fragment
    # The builders' checksum code agrees with Scapy's even with extension headers in between.
    assert transport_checksum(CLIENT, VIP, PROTO_TCP, frame[view.l4:view.l4 + 16] + b"\0\0" +
                              frame[view.l4 + 18:]) == packet[TCP].chksum


@pytest.mark.parametrize("offset, more", [(0, 1), (185, 1), (185, 0)], ids=["first", "middle", "last"])
def test_a_fragment_has_no_ports_and_says_where_its_fragment_header_is(offset, more):
    frame = with_extensions(IPv6ExtHdrHopByHop(), IPv6ExtHdrFragment(offset=offset, m=more, id=0xABCDEF01),
                            payload=TCP(sport=40000, dport=80) / Raw(b"x" * 40))
    view = ipv6.FlowView6(frame)
    assert view.fragment and (view.proto, view.sport, view.dport, view.seq, view.flags) == (PROTO_TCP, 0, 0, 0, 0)
    assert (view.frag_at, view.l4, view.payload_len) == (62, 70, len(frame) - 70)
    assert ipv6.fragment_fields(frame, view) == (0xABCDEF01, offset * 8, bool(more), PROTO_TCP)
    assert ipv6.fragment_fields(syn(), ipv6.FlowView6(syn())) is None


def test_no_next_header_and_unwalked_headers_end_the_walk_without_ports():
    frame = with_extensions(IPv6ExtHdrDestOpt(nh=59), payload=Raw(b""))
    view = ipv6.FlowView6(frame)
    assert (view.proto, view.l4, view.payload_len, view.sport) == (59, 62, 0, 0)
    esp = ipv6.ipv6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 50, b"\x00" * 24)
    assert (ipv6.FlowView6(esp).proto, ipv6.FlowView6(esp).payload_len) == (50, 24)


# -- rewriting ---------------------------------------------------------------------------------------------------------

def full_recompute(frame: bytes) -> bytes:
    """The frame with its transport checksum computed from scratch (our reference for the incremental one)."""
    view = ipv6.FlowView6(frame)
    at = view.l4 + (16 if view.proto == PROTO_TCP else 6)
    segment = frame[view.l4:at] + b"\0\0" + frame[at + 2:view.end]
    value = transport_checksum(view.src, view.dst, view.proto, segment)
    return frame[:at] + value.to_bytes(2, "big") + frame[at + 2:]


def behind_extension_headers(frame: bytes) -> bytes:
    """The same datagram behind a Hop-by-Hop and a Destination Options header (each 8 bytes: a PadN option).

    The transport checksum stays valid: the pseudo-header's length is the upper layer's, not the payload's.
    """
    upper = frame[54:]
    hop_by_hop = bytes((60, 0, 1, 4, 0, 0, 0, 0))
    destination = bytes((frame[20], 0, 1, 4, 0, 0, 0, 0))
    header = frame[:18] + (len(upper) + 16).to_bytes(2, "big") + b"\x00" + frame[21:54]
    return header + hop_by_hop + destination + upper


addresses = st.binary(min_size=16, max_size=16)
ports = st.integers(0, 65535)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(proto=st.sampled_from([PROTO_TCP, PROTO_UDP]), old=st.tuples(addresses, ports, addresses, ports),
       new=st.tuples(addresses, ports, addresses, ports), payload=st.binary(max_size=90),
       seq=st.integers(0, 2**32 - 1), extensions=st.booleans(), hops=st.integers(0, 3))
def test_nat_rewrite_keeps_the_transport_checksum_what_a_full_recompute_gives(proto, old, new, payload, seq,
                                                                                extensions, hops):
    src, sport, dst, dport = old
    if proto == PROTO_TCP:
        frame = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, src, dst, sport, dport, seq, 0, ACK, payload, hop_limit=64)
    else:
        frame = ipv6.udp6_frame(SE_MAC, CLIENT_MAC, src, dst, sport, dport, payload, hop_limit=64)
    if extensions:
        frame = behind_extension_headers(frame)
    rewrite = ipv6.NatRewrite6(src, sport, dst, dport, *new, hop_decrement=hops)
    out = rewrite.apply(frame, CLIENT_MAC, SE_MAC)
    view = ipv6.FlowView6(out)
    assert out == full_recompute(out), "the incremental update equals a full recompute"
    assert (view.src, view.sport, view.dst, view.dport) == new and view.ttl == 64 - hops
    assert view.l4 == (54 + 16 if extensions else 54)
    assert out[:12] == CLIENT_MAC + SE_MAC and view.payload(out) == payload
    if proto == PROTO_UDP:
        assert out[view.l4 + 6:view.l4 + 8] != b"\0\0", "never the 'no checksum' value over IPv6"


def test_nat_rewrite_refuses_what_it_cannot_rewrite():
    fragment = with_extensions(IPv6ExtHdrFragment(offset=8, m=1), payload=Raw(b"x" * 16))
    rewrite = ipv6.NatRewrite6(CLIENT, 1, VIP, 2, SNAT, 3, SERVER, 4)
    with pytest.raises(ValueError, match="unfragmented tcp and udp"):
        rewrite.apply(fragment, SE_MAC, CLIENT_MAC)


def test_rewrite_ipv6_l4_snats_a_syn_to_the_server():
    out = ipv6.rewrite_ipv6_l4(syn(), SE_MAC, CLIENT_MAC, SNAT, 61000, SERVER, 8080)
    packet = Ether(out)
    assert (packet[IPv6].src, packet[IPv6].dst, packet[TCP].sport, packet[TCP].dport, packet[IPv6].hlim) == \
        ("2001:db8:20::11", "2001:db8:20::101", 61000, 8080, 63)
    assert packet[TCP].chksum == scapy_checksum_of(out, TCP)


def test_decrement_hop_limit_changes_the_macs_and_the_hop_limit_only():
    frame = syn()
    routed = ipv6.decrement_hop_limit(frame, CLIENT_MAC, SE_MAC)
    assert routed[:12] == CLIENT_MAC + SE_MAC and routed[21] == frame[21] - 1
    assert routed[12:21] == frame[12:21] and routed[22:] == frame[22:], "no header checksum to update"


# -- addresses and the flow key ----------------------------------------------------------------------------------------

def test_address_helpers_use_the_standard_library_and_name_bad_input():
    assert ipv6.ipv6_text(ipv6.ipv6_bytes("2001:DB8:0:0:0:0:0:1")) == "2001:db8::1"
    assert ipv6.ipv6_text(ipv6.ipv6_bytes("::ffff:192.0.2.1")) == "::ffff:192.0.2.1"  # as Wireshark prints it
    assert frames.ip_bytes("2001:db8::1") == ipv6.ipv6_bytes("2001:db8::1") and len(frames.ip_bytes("10.0.0.1")) == 4
    assert frames.ip_text(VIP) == "2001:db8:10::100" and frames.ip_text(frames.ip_bytes("10.0.0.1")) == "10.0.0.1"
    with pytest.raises(ValueError, match="2001:db8::g"):
        ipv6.ipv6_bytes("2001:db8::g")
    import zlib
    assert ipv6.mac_for_ipv6(VIP, 1) == bytes.fromhex("0601") + zlib.crc32(VIP).to_bytes(4, "big")
    # Two networks' hosts with the same last four bytes get different MACs.
    assert ipv6.mac_for_ipv6(ipv6.ipv6_bytes("2001:db8:98::5")) != ipv6.mac_for_ipv6(ipv6.ipv6_bytes("2001:db8:99::5"))
    # RFC 4291 appendix A's modified EUI-64, as Scapy derives it.
    from scapy.utils6 import in6_mactoifaceid
    assert ipv6.link_local(frames.mac_bytes("00:1b:63:84:45:e6")) == ipv6.ipv6_bytes("fe80::21b:63ff:fe84:45e6")
    assert ipv6.link_local(CLIENT_MAC) == ipv6.ipv6_bytes("fe80::" + in6_mactoifaceid("02:00:c6:33:64:07"))
    assert ipv6.is_multicast(ipv6.ipv6_bytes("ff02::1")) and not ipv6.is_multicast(VIP)


def test_the_fast_flow_key_equals_the_checked_one():
    view = ipv6.FlowView6(syn())
    key = flowhash.flow_key_ipv6(view.src, view.dst, view.proto, view.sport, view.dport)
    assert key == flowhash.flow_key("2001:db8:c::7", "2001:db8:10::100", 6, 40000, 80)
    assert len(key) == flowhash.FLOW_KEY_LEN and key[0] == 6


# -- tshark ------------------------------------------------------------------------------------------------------------

def test_every_builder_passes_the_tshark_gate_and_tshark_reads_the_fields(tmp_path):
    built = [
        syn(),
        ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, VIP, CLIENT, 80, 40000, 5000, 1001, SYN | ACK, mss=TCP_MSS6),
        ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1001, 5001, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"),
        ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40001, 9, payload_whose_udp_checksum_computes_to_zero()),
        ipv6.tcp6_reset_for(syn(), SE_MAC),
        ipv6.rewrite_ipv6_l4(syn(), SE_MAC, CLIENT_MAC, SNAT, 61000, SERVER, 8080),
        ipv6.decrement_hop_limit(syn(), SE_MAC, CLIENT_MAC),
        frames.vxlan_frame(SE_MAC, CLIENT_MAC, frames.ip_bytes("10.10.0.11"), frames.ip_bytes("10.10.0.12"),
                           50000, 1550, 7, syn(), ident=3),
        ipv6.NatRewrite6(CLIENT, 40000, VIP, 80, SNAT, 61000, SERVER, 8080).apply(
            with_extensions(IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt()), SE_MAC, CLIENT_MAC),
    ]
    path = write_capture(tmp_path / "ipv6.pcapng", built)
    assert_passes_gate(path)
    rows = fields(path, ["ipv6.src", "ipv6.hlim", "tcp.srcport", "udp.checksum.status", "tcp.checksum.status"],
                  "", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")
    assert rows[0][:3] == ["2001:db8:c::7", "64", "40000"] and rows[0][4] == "1"  # 1: good
    assert rows[3][3] == "1" and rows[5][:3] == ["2001:db8:20::11", "63", "61000"] and rows[6][1] == "63"
    assert rows[8][0] == "2001:db8:20::11" and rows[8][4] == "1"
