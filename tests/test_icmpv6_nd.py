"""ICMPv6 and Neighbor Discovery as bytes: builders against Scapy and tshark, the parser's RFC 4861 checks."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                                ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                                IPerror6, IPv6)
from scapy.layers.l2 import Ether
from scapy.utils6 import in6_getnsma, in6_getnsmac

from conftest import assert_passes_gate, fields
from dataplane.wire import frames, icmpv6, ipv6, nd
from dataplane.wire.checksum import transport_checksum
from dataplane.wire.frames import Malformed
from dataplane.wire.headers import SYN
from test_ipv6_wire import CLIENT, CLIENT_MAC, SE_MAC, VIP, syn, write_capture

ROUTER = ipv6.ipv6_bytes("2001:db8:c::1")
ROUTER_MAC = frames.mac_bytes("02:00:c6:33:64:01")


def parse(frame: bytes):
    return nd.parse_nd(frame, ipv6.FlowView6(frame))


def icmp_checksum_by_scapy(frame: bytes, layer) -> int:
    packet = Ether(frame)
    del packet[layer].cksum
    return Ether(bytes(packet))[layer].cksum


# -- echo ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply", [False, True], ids=["request", "reply"])
def test_echo_round_trips_through_scapy_and_parses_back(reply):
    frame = icmpv6.echo6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, reply, 0x1234, 7, b"health monitor", hop_limit=64)
    layer = ICMPv6EchoReply if reply else ICMPv6EchoRequest
    packet = Ether(frame)
    assert (packet[IPv6].nh, packet[layer].id, packet[layer].seq, packet[layer].data) == \
        (58, 0x1234, 7, b"health monitor")
    assert packet[layer].cksum == icmp_checksum_by_scapy(frame, layer)
    view = ipv6.FlowView6(frame)
    assert icmpv6.parse_icmpv6_echo(frame, view) == (129 if reply else 128, 0x1234, 7, b"health monitor")
    assert icmpv6.icmpv6_checksum_ok(frame, view)
    assert icmpv6.parse_icmpv6_echo(syn(), ipv6.FlowView6(syn())) is None


# -- errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, layer, kind, code, parameter", [
    (lambda f: icmpv6.time_exceeded(f, ROUTER_MAC, ROUTER), ICMPv6TimeExceeded, 3, 0, 0),
    (lambda f: icmpv6.destination_unreachable(f, ROUTER_MAC, ROUTER), ICMPv6DestUnreach, 1, 3, 0),
    (lambda f: icmpv6.destination_unreachable(f, ROUTER_MAC, ROUTER, icmpv6.PORT_UNREACHABLE), ICMPv6DestUnreach,
     1, 4, 0),
    (lambda f: icmpv6.packet_too_big(f, ROUTER_MAC, ROUTER, 1280), ICMPv6PacketTooBig, 2, 0, 1280),
], ids=["time-exceeded", "address-unreachable", "port-unreachable", "packet-too-big"])
def test_errors_quote_the_invoking_packet_to_its_source(build, layer, kind, code, parameter):
    invoking = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1000, 0, SYN, hop_limit=1)
    frame = build(invoking)
    packet = Ether(frame)
    assert (packet[IPv6].src, packet[IPv6].dst) == ("2001:db8:c::1", "2001:db8:c::7")
    assert (packet[layer].type, packet[layer].code, packet[layer].cksum) == \
        (kind, code, icmp_checksum_by_scapy(frame, layer))
    assert packet[IPerror6].dst == "2001:db8:10::100" and packet[IPerror6].hlim == 1
    assert bytes(packet[IPerror6]) == invoking[14:]
    assert icmpv6.parse_icmpv6_error(frame, ipv6.FlowView6(frame)) == (kind, code, parameter, invoking[14:])
    assert frame[:6] == bytes(6) and frame[6:12] == ROUTER_MAC  # the sender resolves the next hop


def test_an_error_stays_within_the_minimum_mtu():
    big = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1, 1, SYN, b"x" * 4000)
    frame = icmpv6.time_exceeded(big, ROUTER_MAC, ROUTER)
    assert len(frame) - 14 == icmpv6.MINIMUM_MTU
    assert frame[14 + 48:] == big[14:14 + 1232]


def test_may_send_error_follows_rfc_4443_section_2_4_e():
    def allowed(frame):
        return icmpv6.may_send_error(frame, ipv6.FlowView6(frame))

    assert allowed(syn())
    assert not allowed(icmpv6.time_exceeded(syn(), ROUTER_MAC, ROUTER)), "never an error about an error"
    assert allowed(icmpv6.echo6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, False, 1, 1, b""))
    assert not allowed(nd.unsolicited_advertisement(SE_MAC, VIP)), "multicast destination"
    to_group_mac = nd.multicast_mac(VIP) + syn()[6:]
    assert not allowed(to_group_mac), "link-layer multicast"
    from_nowhere = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, bytes(16), VIP, 1, 80, 1, 0, SYN)
    assert not allowed(from_nowhere), "the unspecified source identifies no node"


# -- Neighbor Discovery: building ------------------------------------------------------------------------------------

def test_solicited_node_group_and_its_mac_match_scapy():
    assert nd.solicited_node(VIP) == in6_getnsma(VIP) == ipv6.ipv6_bytes("ff02::1:ff00:100")
    assert frames.mac_text(nd.multicast_mac(nd.solicited_node(VIP))) == in6_getnsmac(nd.solicited_node(VIP)) == \
        "33:33:ff:00:01:00"
    assert frames.mac_text(nd.ALL_NODES_MAC) == "33:33:00:00:00:01"


def test_a_solicitation_goes_to_the_solicited_node_group_with_hop_limit_255():
    frame = nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP)
    packet = Ether(frame)
    assert (packet.dst, packet.src, packet[IPv6].dst, packet[IPv6].hlim) == \
        ("33:33:ff:00:01:00", "02:00:c6:33:64:07", "ff02::1:ff00:100", 255)
    assert packet[ICMPv6ND_NS].tgt == "2001:db8:10::100" and packet[ICMPv6NDOptSrcLLAddr].lladdr == \
        "02:00:c6:33:64:07"
    assert packet[ICMPv6ND_NS].cksum == icmp_checksum_by_scapy(frame, ICMPv6ND_NS)
    probe = Ether(nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP, dst=VIP, eth_dst=SE_MAC))
    assert (probe.dst, probe[IPv6].dst) == ("02:00:0a:0a:00:0b", "2001:db8:10::100")
    dad = Ether(nd.neighbor_solicitation(CLIENT_MAC, nd.UNSPECIFIED, VIP))
    assert dad[IPv6].src == "::" and ICMPv6NDOptSrcLLAddr not in dad


@pytest.mark.parametrize("router, solicited, override", [(0, 1, 1), (1, 1, 0), (0, 0, 1), (1, 0, 0)])
def test_an_advertisement_carries_its_flags_and_the_target_link_address(router, solicited, override):
    frame = nd.neighbor_advertisement(CLIENT_MAC, SE_MAC, VIP, CLIENT, VIP, bool(router), bool(solicited),
                                      bool(override))
    packet = Ether(frame)
    assert (packet[ICMPv6ND_NA].R, packet[ICMPv6ND_NA].S, packet[ICMPv6ND_NA].O) == (router, solicited, override)
    assert packet[ICMPv6ND_NA].tgt == "2001:db8:10::100" and packet[IPv6].hlim == 255
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == "02:00:0a:0a:00:0b"
    assert packet[ICMPv6ND_NA].cksum == icmp_checksum_by_scapy(frame, ICMPv6ND_NA)
    parsed = parse(frame)
    assert (parsed.router, parsed.solicited, parsed.override) == (bool(router), bool(solicited), bool(override))
    assert (parsed.target, parsed.link_address, parsed.is_solicitation) == (VIP, SE_MAC, False)


def test_the_unsolicited_advertisement_announces_a_vip_to_all_nodes_with_override():
    packet = Ether(nd.unsolicited_advertisement(SE_MAC, VIP))
    assert (packet.dst, packet[IPv6].src, packet[IPv6].dst, packet[IPv6].hlim) == \
        ("33:33:00:00:00:01", "2001:db8:10::100", "ff02::1", 255)
    na = packet[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, "2001:db8:10::100")
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == "02:00:0a:0a:00:0b"


def test_the_answer_to_a_solicitation_goes_back_to_the_solicitor():
    solicitation = parse(nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP))
    assert (solicitation.is_solicitation, solicitation.target, solicitation.link_address) == (True, VIP, CLIENT_MAC)
    answer = parse(nd.advertisement_for(solicitation, SE_MAC))
    reply = Ether(nd.advertisement_for(solicitation, SE_MAC))
    assert (reply.dst, reply.src, reply[IPv6].src, reply[IPv6].dst) == \
        ("02:00:c6:33:64:07", "02:00:0a:0a:00:0b", "2001:db8:10::100", "2001:db8:c::7")
    assert (answer.router, answer.solicited, answer.override, answer.link_address) == (False, True, True, SE_MAC)
    dad_answer = parse(nd.advertisement_for(parse(nd.neighbor_solicitation(CLIENT_MAC, nd.UNSPECIFIED, VIP)), SE_MAC))
    assert (dad_answer.dst, dad_answer.solicited) == (nd.ALL_NODES, False)


def test_solicitations_another_stack_builds_parse_with_unknown_options_skipped():
    frame = bytes(Ether(src="02:00:c6:33:64:07", dst="33:33:ff:00:01:00") /
                  IPv6(src="2001:db8:c::7", dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt="2001:db8:10::100") /
                  (b"\x0e\x01" + b"nonce!") / ICMPv6NDOptSrcLLAddr(lladdr="02:00:c6:33:64:07"))
    parsed = parse(frame)
    assert (parsed.target, parsed.link_address, parsed.src) == (VIP, CLIENT_MAC, CLIENT)


def test_other_frames_are_not_neighbor_discovery():
    assert parse(syn()) is None
    assert parse(icmpv6.echo6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, False, 1, 1, b"")) is None
    v4 = frames.tcp_frame(SE_MAC, CLIENT_MAC, frames.ip_bytes("10.0.0.1"), frames.ip_bytes("10.0.0.2"), 1, 2, 0, 0,
                          SYN)
    assert nd.parse_nd(v4, frames.FlowView(v4)) is None


# -- Neighbor Discovery: what the parser refuses (RFC 4861 sections 7.1.1 and 7.1.2) ----------------------------------

def forged(frame: bytes, at: int, value: bytes, fix_checksum: bool = True) -> bytes:
    """``frame`` with ``value`` at byte ``at`` and (unless told otherwise) its ICMPv6 checksum made valid again."""
    data = bytearray(frame)
    data[at:at + len(value)] = value
    if fix_checksum:
        view = ipv6.FlowView6(bytes(data))
        data[view.l4 + 2:view.l4 + 4] = b"\0\0"
        value = transport_checksum(view.src, view.dst, 58, bytes(data[view.l4:view.end]))
        data[view.l4 + 2:view.l4 + 4] = value.to_bytes(2, "big")
    return bytes(data)


def grown(frame: bytes, extra: bytes) -> bytes:
    """``frame`` with ``extra`` bytes appended to its ICMPv6 message, the IPv6 payload length to match."""
    return frame[:18] + (len(frame) - 54 + len(extra)).to_bytes(2, "big") + frame[20:] + extra


NS = nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP)
NA = nd.neighbor_advertisement(CLIENT_MAC, SE_MAC, VIP, CLIENT, VIP)
DAD = nd.neighbor_solicitation(CLIENT_MAC, nd.UNSPECIFIED, VIP)


@pytest.mark.parametrize("frame, reason", [
    (forged(NS, 21, b"\xfe"), "nd_hop_limit"),
    (forged(NA, 21, b"\xfe"), "nd_hop_limit"),
    (forged(NS, 21, b"\x40"), "nd_hop_limit"),
    (forged(NS, 55, b"\x01"), "nd_code"),
    (forged(NA, 85, b"\x42", fix_checksum=False), "icmpv6_checksum"),
    (forged(NS, 62, ipv6.ipv6_bytes("ff02::1")), "nd_target"),
    (forged(NS, 79, b"\x00"), "nd_option_length"),
    (forged(NS, 79, b"\x02"), "nd_option_length"),
    (forged(NA, 79, b"\x00"), "nd_option_length"),
    (forged(grown(NA, bytes(8)), 79, b"\x02"), "nd_link_option"),
    (forged(DAD, 38, nd.ALL_NODES), "nd_unspecified_source"),
    (forged(NA, 38, nd.ALL_NODES), "nd_solicited_multicast"),
], ids=["ns-hop-limit-254", "na-hop-limit-254", "ns-hop-limit-64", "code", "checksum", "multicast-target",
        "zero-length-option", "option-past-the-end", "na-zero-length-option", "link-option-of-16-bytes",
        "dad-not-to-solicited-node", "solicited-to-multicast"])
def test_invalid_neighbor_discovery_is_malformed_with_a_reason(frame, reason):
    with pytest.raises(Malformed) as error:
        parse(frame)
    assert error.value.reason == reason and str(error.value)


def test_a_repeated_link_option_and_a_dad_probe_with_a_link_option_are_refused():
    with pytest.raises(Malformed, match="repeated"):
        parse(forged(grown(NS, b"\x01\x01" + CLIENT_MAC), 56, b"\0\0"))
    with pytest.raises(Malformed) as error:
        parse(forged(grown(DAD, b"\x01\x01" + CLIENT_MAC), 56, b"\0\0"))
    assert error.value.reason == "nd_unspecified_source"
    short = NS[:18] + (20).to_bytes(2, "big") + NS[20:74]
    with pytest.raises(Malformed) as error:
        parse(short)
    assert error.value.reason == "nd_truncated"


# -- tshark ------------------------------------------------------------------------------------------------------------

def test_icmpv6_and_nd_frames_pass_the_tshark_gate_with_the_fields_tshark_reads(tmp_path):
    built = [
        nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP),
        nd.advertisement_for(parse(nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP)), SE_MAC),
        nd.unsolicited_advertisement(SE_MAC, VIP),
        nd.neighbor_solicitation(CLIENT_MAC, nd.UNSPECIFIED, VIP),
        icmpv6.echo6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, False, 1, 2, b"ping"),
        icmpv6.echo6_frame(CLIENT_MAC, SE_MAC, VIP, CLIENT, True, 1, 2, b"ping"),
        icmpv6.time_exceeded(syn(), ROUTER_MAC, ROUTER),
        icmpv6.destination_unreachable(syn(), ROUTER_MAC, ROUTER),
        icmpv6.packet_too_big(ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 1, 80, 1, 1, SYN, b"x" * 3000),
                              ROUTER_MAC, ROUTER, 1400),
    ]
    path = write_capture(tmp_path / "icmpv6.pcapng", built)
    assert_passes_gate(path)
    names = ["icmpv6.type", "icmpv6.checksum.status", "icmpv6.nd.ns.target_address", "icmpv6.nd.na.flag.s",
             "icmpv6.nd.na.flag.o", "icmpv6.opt.linkaddr", "ipv6.hlim", "icmpv6.echo.sequence_number", "icmpv6.mtu"]
    rows = fields(path, names)
    assert rows[0][:3] == ["135", "1", "2001:db8:10::100"] and rows[0][5:7] == ["02:00:c6:33:64:07", "255"]
    assert rows[1][0] == "136" and rows[1][3:6] == ["1", "1", "02:00:0a:0a:00:0b"]
    assert rows[2][3:5] == ["0", "1"]
    assert [row[0] for row in rows[4:]] == ["128", "129", "3", "1", "2"] and rows[4][7] == "2"
    assert rows[8][8] == "1400" and all(row[1] == "1" for row in rows)  # 1: checksum good
