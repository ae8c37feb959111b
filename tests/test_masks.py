"""Field table and masks: names, checksum coverage, matching, field-level differences."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop)
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dataplane.wire import frames, ipv6
from dataplane.wire.masks import Mask, field_diff, layout, resolve


def tcp_frame(**ip) -> bytes:
    return bytes(Ether(src="02:00:0a:0a:00:0b", dst="02:00:0a:0a:00:01") /
                 IP(src="10.10.0.100", dst="198.51.100.7", **ip) /
                 TCP(sport=80, dport=40001, flags="SA", seq=1000, ack=1001) / b"hello")


def routed(frame: bytes) -> bytes:
    """The frame one router hop later: TTL - 1, checksum updated (the emulator's own code)."""
    return frames.decrement_ttl(frame, frame[0:6], frame[6:12])


def test_layout_names_fields_as_wireshark_does():
    names = [f.name for f in layout(tcp_frame()).fields]
    assert names[:3] == ["eth.dst", "eth.src", "eth.type"]
    assert {"ip.ttl", "ip.checksum", "ip.src", "tcp.seq", "tcp.flags", "tcp.checksum", "tcp.payload"} <= set(names)
    by_name = layout(tcp_frame()).by_name()
    assert by_name["tcp.seq"].value(tcp_frame()) == 1000
    assert by_name["ip.flags"].bits == 3 and by_name["ip.frag_offset"].bits == 13


def test_masking_the_ttl_masks_the_ip_checksum_that_covers_it():
    sent = tcp_frame(ttl=64)
    mask = Mask(sent, ["ip.ttl"])
    assert mask.ignored == ["ip.ttl", "ip.checksum"]
    assert mask.matches(routed(sent))
    assert not Mask(sent).matches(routed(sent)), "without the mask the TTL and checksum differ"


def test_masking_an_address_masks_the_transport_checksum_through_the_pseudo_header():
    assert set(Mask(tcp_frame(), ["ip.src"]).ignored) == {"ip.src", "ip.checksum", "tcp.checksum"}
    assert set(Mask(tcp_frame(), ["tcp.seq"]).ignored) == {"tcp.seq", "tcp.checksum"}
    assert Mask(tcp_frame(), ["eth.src"]).ignored == ["eth.src"]


def test_a_masked_inner_field_masks_the_outer_udp_checksum_of_the_tunnel():
    inner = tcp_frame()
    outer = bytes(Ether() / IP(src="10.10.0.11", dst="10.10.0.12") / UDP(sport=50000, dport=1550) /
                  VXLAN(vni=1) / Ether(inner))
    names = [f.name for f in layout(outer).fields]
    assert "vxlan.vni" in names and "inner.ip.ttl" in names
    assert set(Mask(outer, ["inner.ip.ttl"]).ignored) == {"inner.ip.ttl", "inner.ip.checksum", "udp.checksum"}
    # A bare name applies to both the outer and the tunnelled header.
    assert {"ip.ttl", "inner.ip.ttl"} <= set(Mask(outer, ["ip.ttl"]).ignored)


def test_scapy_spellings_are_accepted_and_typos_are_named():
    assert resolve(["tcp.window", "arp.hwsrc", "udp.sport", "ip.addr"]) == {
        "tcp.window_size_value", "arp.src.hw_mac", "udp.srcport", "ip.src", "ip.dst"}
    with pytest.raises(ValueError, match=r"unknown field 'ip.tll'; did you mean ip.ttl"):
        resolve(["ip.tll"])


def test_a_short_expected_frame_matches_its_padded_self_only():
    arp = bytes(Ether(src="02:aa:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.10.0.50", pdst="10.10.0.100"))
    assert len(arp) == 42
    assert Mask(arp).matches(arp + b"\x00" * 18)
    assert not Mask(arp).matches(arp + b"\x00" * 30)
    assert Mask(arp, ignore_extra_bytes=True).matches(arp + b"\x00" * 30)
    assert not Mask(arp).matches(arp[:-1])


def test_ignore_bits_also_masks_covering_checksums():
    sent = tcp_frame()
    mask = Mask(sent).ignore_bits(22 * 8, 8)  # the TTL byte, by offset (PTF's set_do_not_care)
    assert "ip.checksum" in mask.ignored and mask.matches(routed(sent))


def test_field_diff_names_each_differing_field_with_both_values():
    diffs = field_diff(tcp_frame(ttl=64), routed(tcp_frame(ttl=64)))
    assert [str(d) for d in diffs] == ["ip.ttl: expected 64, got 63",
                                       f"ip.checksum: expected {diffs[1].expected}, got {diffs[1].got}"]
    assert diffs[1].expected.startswith("0x")
    assert field_diff(tcp_frame(), tcp_frame()) == []
    syn = tcp_frame()
    changed = bytearray(syn)
    changed[47] = 0x12 ^ 0x04  # SYN+ACK -> SYN+ACK+RST
    text = [str(d) for d in field_diff(syn, bytes(changed), {"tcp.checksum"})]
    assert text == ["tcp.flags: expected 0x012 (SYN, ACK), got 0x016 (SYN, RST, ACK)"]


def test_field_diff_of_payloads_points_at_the_first_difference():
    a = bytes(Ether() / IP() / TCP() / (b"GET /index.html HTTP/1.1\r\n" + b"x" * 40))
    b = bytes(Ether() / IP() / TCP() / (b"GET /index.htmX HTTP/1.1\r\n" + b"x" * 40))
    (diff,) = field_diff(a, b, {"tcp.checksum"})
    assert diff.name == "tcp.payload" and "first difference at byte 14" in diff.got


# -- IPv6 ------------------------------------------------------------------------------------------------------------

def tcp6_frame(**ip6) -> bytes:
    return bytes(Ether(src="02:00:0a:0a:00:0b", dst="02:00:0a:0a:00:01") /
                 IPv6(src="2001:db8:10::100", dst="2001:db8:c::7", **ip6) /
                 TCP(sport=80, dport=40001, flags="SA", seq=1000, ack=1001) / b"hello")


L2 = Ether(src="02:00:0a:0a:00:0b", dst="02:00:0a:0a:00:01")  # given, so Scapy resolves no MAC (slow)

#: Names the field table uses for bytes Wireshark has no one field for (fields.py says so).
OWN_NAMES = {"ip.payload", "ipv6.payload", "ip.options", "eth.payload", "icmpv6.data"}


def ipv6_samples() -> list[bytes]:
    from dataplane.wire import icmpv6, nd
    mac, other = frames.mac_bytes("02:00:0a:0a:00:0b"), frames.mac_bytes("02:00:0a:0a:00:01")
    vip, client = ipv6.ipv6_bytes("2001:db8:10::100"), ipv6.ipv6_bytes("2001:db8:c::7")
    return [
        tcp6_frame(),
        bytes(L2 / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=9) / b"x"),
        bytes(L2 / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
              IPv6ExtHdrFragment(offset=0, m=0, id=5) / TCP(sport=1, dport=2)),
        nd.neighbor_solicitation(other, client, vip),
        nd.unsolicited_advertisement(mac, vip),
        icmpv6.echo6_frame(mac, other, vip, client, True, 7, 9, b"ping"),
        icmpv6.time_exceeded(tcp6_frame(), mac, vip),
        frames.vxlan_frame(mac, other, frames.ip_bytes("10.10.0.11"), frames.ip_bytes("10.10.0.12"), 50000, 1550,
                           1, tcp6_frame()),
    ]


def test_ipv6_and_icmpv6_fields_are_named_as_tshark_names_them(tmp_path):
    import subprocess
    import xml.etree.ElementTree as ElementTree
    from dataplane.l2.capture import EPOCH_NS
    from dataplane.wire.pcapng import PcapngWriter

    samples = ipv6_samples()
    path = tmp_path / "names.pcapng"
    with PcapngWriter(path) as writer:
        iface = writer.add_interface("frontend")
        for number, frame in enumerate(samples):
            writer.write_frame(iface, EPOCH_NS + number, frame)
    pdml = subprocess.run(["tshark", "-n", "-r", str(path), "-d", "udp.port==1550,vxlan", "-T", "pdml"],
                          capture_output=True, text=True, check=True).stdout
    packets = ElementTree.fromstring(pdml).findall("packet")
    assert len(packets) == len(samples)
    for frame, packet in zip(samples, packets):
        tshark_names = {node.get("name") for node in packet.iter() if node.get("name")}
        ours = {f.name.removeprefix("inner.") for f in layout(frame).fields} - OWN_NAMES
        assert ours <= tshark_names, f"not tshark's names: {sorted(ours - tshark_names)}"
        assert any(name.startswith(("ipv6.", "icmpv6.")) for name in ours)


def test_masking_the_hop_limit_masks_nothing_else_because_ipv6_has_no_header_checksum():
    sent = tcp6_frame(hlim=64)
    mask = Mask(sent, ["ipv6.hlim"])
    assert mask.ignored == ["ipv6.hlim"]
    hop = ipv6.decrement_hop_limit(sent, sent[0:6], sent[6:12])
    assert mask.matches(hop)
    assert not Mask(sent).matches(hop), "without the mask the hop limit differs"
    assert [str(d) for d in field_diff(sent, hop)] == ["ipv6.hlim: expected 64, got 63"]


def test_masking_an_ipv6_address_masks_the_transport_checksum_through_the_pseudo_header():
    assert set(Mask(tcp6_frame(), ["ipv6.src"]).ignored) == {"ipv6.src", "tcp.checksum"}
    assert set(Mask(tcp6_frame(), ["ipv6.addr"]).ignored) == {"ipv6.src", "ipv6.dst", "tcp.checksum"}
    udp = bytes(L2 / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=9) / b"x")
    assert set(Mask(udp, ["ipv6.dst"]).ignored) == {"ipv6.dst", "udp.checksum"}
    assert set(Mask(udp, ["ipv6.plen"]).ignored) == {"ipv6.plen", "udp.checksum"}
    echo = ipv6_samples()[5]
    assert set(Mask(echo, ["ipv6.src"]).ignored) == {"ipv6.src", "icmpv6.checksum"}
    assert set(Mask(echo, ["icmpv6.echo.sequence_number"]).ignored) == {"icmpv6.echo.sequence_number",
                                                                        "icmpv6.checksum"}
    assert set(Mask(tcp6_frame(), ["ipv6.flow"]).ignored) == {"ipv6.flow"}, "the flow label is not covered"
    snat = ipv6.rewrite_ipv6_l4(tcp6_frame(), tcp6_frame()[0:6], tcp6_frame()[6:12],
                                ipv6.ipv6_bytes("2001:db8:20::11"), 80, ipv6.ipv6_bytes("2001:db8:c::7"), 40001, 0)
    assert Mask(tcp6_frame(), ["ipv6.src"]).matches(snat) and not Mask(tcp6_frame()).matches(snat)


def test_a_masked_inner_ipv6_field_masks_the_outer_udp_checksum_of_the_tunnel():
    outer = ipv6_samples()[-1]
    names = [f.name for f in layout(outer).fields]
    assert "inner.ipv6.hlim" in names and "inner.tcp.checksum" in names and "ip.ttl" in names
    assert set(Mask(outer, ["inner.ipv6.hlim"]).ignored) == {"inner.ipv6.hlim", "udp.checksum"}
    assert set(Mask(outer, ["inner.ipv6.src"]).ignored) == {"inner.ipv6.src", "inner.tcp.checksum", "udp.checksum"}
    assert {"ipv6.hlim", "inner.ipv6.hlim"} & set(Mask(outer, ["ipv6.hlim"]).ignored) == {"inner.ipv6.hlim"}


def test_neighbor_discovery_fields_by_name():
    ns, na = ipv6_samples()[3:5]
    fields = layout(na).by_name()
    assert (fields["icmpv6.type"].value(na), fields["icmpv6.nd.na.flag.o"].value(na),
            fields["icmpv6.nd.na.flag.s"].value(na), fields["ipv6.hlim"].value(na)) == (136, 1, 0, 255)
    assert fields["icmpv6.opt.target_linkaddr"].value(na) == frames.mac_bytes("02:00:0a:0a:00:0b")
    assert layout(ns).by_name()["icmpv6.nd.ns.target_address"].value(ns) == ipv6.ipv6_bytes("2001:db8:10::100")
    assert set(Mask(na, ["icmpv6.nd.na.flag"]).ignored) == {"icmpv6.nd.na.flag.r", "icmpv6.nd.na.flag.s",
                                                            "icmpv6.nd.na.flag.o", "icmpv6.nd.na.flag.rsv",
                                                            "icmpv6.checksum"}
    assert set(Mask(ns, ["icmpv6.opt.linkaddr"]).ignored) == {"icmpv6.opt.src_linkaddr", "icmpv6.checksum"}
    assert resolve(["ipv6.nh", "ipv6.tc", "icmpv6.cksum"]) == {"ipv6.nxt", "ipv6.tclass", "icmpv6.checksum"}
    with pytest.raises(ValueError, match=r"did you mean ipv6.hlim"):
        resolve(["ipv6.hlimit"])


def test_extension_headers_are_blobs_and_the_fragment_header_is_named():
    frame = ipv6_samples()[2]
    names = [f.name for f in layout(frame).fields]
    assert names[names.index("ipv6.dst") + 1:names.index("tcp.srcport")] == [
        "ipv6.hopopts", "ipv6.dstopts", "ipv6.fraghdr.nxt", "ipv6.fraghdr.reserved_octet", "ipv6.fraghdr.offset",
        "ipv6.fraghdr.reserved_bits", "ipv6.fraghdr.more", "ipv6.fraghdr.ident"]
    assert layout(frame).by_name()["ipv6.fraghdr.ident"].value(frame) == 5
    # The last next-header byte names the upper layer in the pseudo-header: masking it masks the checksum.
    assert "tcp.checksum" in Mask(frame, ["ipv6.fraghdr.nxt"]).ignored
    assert "tcp.checksum" not in Mask(frame, ["ipv6.fraghdr.ident"]).ignored
    fragment = bytes(L2 / IPv6() / IPv6ExtHdrFragment(offset=3, m=1) / (b"x" * 16))
    assert [f.name for f in layout(fragment).fields][-2:] == ["ipv6.fraghdr.ident", "ipv6.payload"]


def test_field_diff_prints_ipv6_addresses_and_compares_repeated_options_in_order():
    a = tcp6_frame()
    b = ipv6.rewrite_ipv6_l4(a, a[0:6], a[6:12], ipv6.ipv6_bytes("2001:db8:20::11"), 80,
                             ipv6.ipv6_bytes("2001:db8:c::7"), 40001, 0)
    assert [str(d) for d in field_diff(a, b, {"tcp.checksum"})] == [
        "ipv6.src: expected 2001:db8:10::100, got 2001:db8:20::11"]
    def solicitation(second: str) -> bytes:
        return bytes(L2 / IPv6(hlim=255) / ICMPv6ND_NS(tgt="2001:db8::1") /
                     ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01") / ICMPv6NDOptSrcLLAddr(lladdr=second))

    two, other = solicitation("02:00:00:00:00:02"), solicitation("02:00:00:00:00:03")
    assert [str(d) for d in field_diff(two, other, {"icmpv6.checksum"})] == [
        "icmpv6.opt.src_linkaddr[2]: expected 02:00:00:00:00:02, got 02:00:00:00:00:03"]
