"""Field table and masks: names, checksum coverage, matching, field-level differences."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from dataplane.wire import frames
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
