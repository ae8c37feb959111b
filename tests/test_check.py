"""``dataplane check``: tshark gate and our own checksum validation, findings and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import cli
from dataplane.wire import arp, frames, icmpv6, ipv6, nd
from dataplane.l2.capture import EPOCH_NS
from dataplane.testing.check import check_capture, check_frame
from dataplane.wire.pcapng import PcapngWriter

A, B = frames.mac_bytes("02:00:0a:0a:00:0b"), frames.mac_bytes("02:00:0a:0a:00:0c")
SRC, DST = frames.ip_bytes("10.10.0.11"), frames.ip_bytes("10.10.0.12")
CLIENT, VIP = frames.ip_bytes("198.51.100.7"), frames.ip_bytes("10.10.0.100")
MODES = [pytest.param(True, id="tshark"), pytest.param(False, id="own")]


def good_tcp() -> bytes:
    return frames.tcp_frame(B, A, CLIENT, VIP, 40000, 80, 1000, 0, frames.SYN, ident=7)


def corrupt(frame: bytes, offset: int) -> bytes:
    changed = bytearray(frame)
    changed[offset] ^= 0x01
    return bytes(changed)


def tunnelled(inner: bytes) -> bytes:
    return frames.vxlan_frame(B, A, SRC, DST, 50000, 1550, 1, inner, ident=9)


def write(path: Path, frame_list: list[bytes]) -> Path:
    with PcapngWriter(path) as writer:
        iface = writer.add_interface("frontend")
        for number, frame in enumerate(frame_list):
            writer.write_frame(iface, EPOCH_NS + number, frame, f"frame {number + 1} comment")
    return path


@pytest.mark.parametrize("tshark", MODES)
def test_a_clean_capture_has_no_findings(tmp_path, tshark):
    path = write(tmp_path / "c.pcapng", [good_tcp(), tunnelled(good_tcp()),
                                         arp.gratuitous_arp(A, VIP)])
    assert check_capture(path, use_tshark=tshark) == []


@pytest.mark.parametrize("tshark", MODES)
@pytest.mark.parametrize("offset, word", [(24, "checksum"), (14 + 20 + 4, "checksum")], ids=["ip", "tcp"])
def test_a_bad_checksum_is_a_finding_naming_frame_interface_and_comment(tmp_path, tshark, offset, word):
    path = write(tmp_path / "c.pcapng", [good_tcp(), corrupt(good_tcp(), offset)])
    (finding,) = check_capture(path, use_tshark=tshark)
    assert (finding.number, finding.interface, finding.comment) == (2, "frontend", "frame 2 comment")
    assert "Bad" in finding.message and word in finding.message and "should be 0x" in finding.message


@pytest.mark.parametrize("tshark", MODES)
def test_a_bad_checksum_inside_the_tunnel_is_found(tmp_path, tshark):
    inner = corrupt(good_tcp(), 24)
    path = write(tmp_path / "c.pcapng", [tunnelled(inner)])
    messages = [f.message for f in check_capture(path, use_tshark=tshark)]
    assert messages and all("Bad" in m for m in messages)
    if not tshark:
        assert messages == [messages[0]] and messages[0].endswith("(inside VXLAN)")


def test_own_checks_report_lengths_that_run_past_the_frame():
    assert check_frame(good_tcp()[:-4])[0].startswith("Malformed: IPv4 total length 40 exceeds packet length")
    assert check_frame(b"\x00" * 10) == ["Malformed: frame shorter than an Ethernet header (10 bytes)"]


@pytest.mark.parametrize("flag", [[], ["--no-tshark"]])
def test_exit_codes(tmp_path, capsys, flag):
    clean = write(tmp_path / "clean.pcapng", [good_tcp()])
    bad = write(tmp_path / "bad.pcapng", [corrupt(good_tcp(), 24)])
    assert cli.main(["check", str(clean), *flag]) == 0
    assert "clean" in capsys.readouterr().out
    assert cli.main(["check", str(bad), *flag]) == 1
    out = capsys.readouterr().out
    assert "frame 1 (frontend): Bad" in out and "comment: frame 1 comment" in out
    truncated = tmp_path / "truncated.pcapng"
    truncated.write_bytes(bad.read_bytes()[:-10])
    assert cli.main(["check", str(truncated), *flag]) == 1
    assert "truncated" in capsys.readouterr().out
    not_capture = tmp_path / "notes.txt"
    not_capture.write_text("hello\n")
    assert cli.main(["check", str(not_capture), *flag]) == 2
    assert "not a pcap or pcapng file" in capsys.readouterr().err


# -- IPv6 ------------------------------------------------------------------------------------------------------------

V6_CLIENT, V6_VIP = ipv6.ipv6_bytes("2001:db8:c::7"), ipv6.ipv6_bytes("2001:db8:10::100")


def good_tcp6() -> bytes:
    return ipv6.tcp6_frame(B, A, V6_CLIENT, V6_VIP, 40000, 80, 1000, 0, frames.SYN)


def good_echo6() -> bytes:
    return icmpv6.echo6_frame(B, A, V6_CLIENT, V6_VIP, False, 1, 1, b"ping")


@pytest.mark.parametrize("tshark", MODES)
def test_a_clean_ipv6_capture_has_no_findings(tmp_path, tshark):
    big = ipv6.tcp6_frame(B, A, V6_CLIENT, V6_VIP, 40000, 80, 1000, 1, frames.ACK, b"x" * 1400)
    path = write(tmp_path / "c.pcapng", [
        good_tcp6(), ipv6.udp6_frame(B, A, V6_CLIENT, V6_VIP, 40001, 9, b"x"), good_echo6(),
        nd.neighbor_solicitation(A, V6_CLIENT, V6_VIP), nd.unsolicited_advertisement(A, V6_VIP),
        tunnelled(good_tcp6()),
        # An error quotes the invoking packet cut to the minimum MTU; tshark 4.0 would call the cut
        # segment's checksum bad, and the gate knows better.
        icmpv6.time_exceeded(big, A, V6_VIP), icmpv6.packet_too_big(big, A, V6_VIP, 1280)])
    assert check_capture(path, use_tshark=tshark) == []


@pytest.mark.parametrize("tshark", MODES)
@pytest.mark.parametrize("frame, offset, word", [
    (good_tcp6, 14 + 40 + 4, "checksum"),  # the sequence number: the TCP checksum no longer matches
    (good_tcp6, 14 + 8, "checksum"),  # the source address: through the IPv6 pseudo-header
    (good_echo6, 14 + 40 + 6, "checksum"),  # the echo sequence: the ICMPv6 checksum
    (good_echo6, 14 + 24, "checksum"),  # the destination address, which ICMPv6 covers too
], ids=["tcp", "tcp-pseudo-header", "icmpv6", "icmpv6-pseudo-header"])
def test_a_bad_checksum_over_ipv6_is_a_finding(tmp_path, tshark, frame, offset, word):
    path = write(tmp_path / "c.pcapng", [frame(), corrupt(frame(), offset)])
    (finding,) = check_capture(path, use_tshark=tshark)
    assert (finding.number, finding.interface, finding.comment) == (2, "frontend", "frame 2 comment")
    assert "Bad" in finding.message and word in finding.message and "should be 0x" in finding.message


@pytest.mark.parametrize("tshark", MODES)
def test_bad_checksums_in_an_icmpv6_error_and_inside_the_tunnel_are_found(tmp_path, tshark):
    error = icmpv6.time_exceeded(good_tcp6(), A, V6_VIP)
    path = write(tmp_path / "c.pcapng", [corrupt(error, 14 + 40 + 2), tunnelled(corrupt(good_tcp6(), 14 + 8))])
    findings = check_capture(path, use_tshark=tshark)
    assert {f.number for f in findings} == {1, 2} and all("Bad" in f.message for f in findings)


@pytest.mark.parametrize("tshark", MODES)
def test_a_zero_udp_checksum_over_ipv6_is_a_finding(tmp_path, tshark):
    datagram = bytearray(ipv6.udp6_frame(B, A, V6_CLIENT, V6_VIP, 40001, 9, b"x"))
    datagram[14 + 40 + 6:14 + 40 + 8] = b"\0\0"
    (finding,) = check_capture(write(tmp_path / "c.pcapng", [bytes(datagram)]), use_tshark=tshark)
    assert finding.message.startswith("Illegal checksum value (0)")


def test_own_checks_report_ipv6_lengths_and_chains_that_run_past_the_frame():
    assert check_frame(good_tcp6()[:-4])[0].startswith("Malformed: IPv6 payload length 20 exceeds packet length")
    from test_ipv6_hostile import PAD, TCP_SEGMENT, chain
    assert check_frame(chain([(60, PAD)] * 9, 6, TCP_SEGMENT)) == ["Malformed: more than 8 IPv6 extension headers"]
    assert check_frame(chain([(60, PAD), (0, PAD)], 6, TCP_SEGMENT))[0].startswith("IPv6 Hop-by-Hop extension")
    assert check_frame(chain([(60, bytes((9,)) + bytes(5))], 6, TCP_SEGMENT))[0].startswith(
        "Malformed: IPv6 extension header 60 runs past")
    assert check_frame(chain([(60, PAD)] * 8, 6, TCP_SEGMENT)) == []


@pytest.mark.parametrize("tshark", MODES)
def test_a_frame_over_the_mtu_outside_the_tunnel_is_a_finding(tmp_path, tshark):
    big = frames.tcp_frame(B, A, CLIENT, VIP, 40000, 80, 1000, 0, frames.ACK, payload=b"x" * 1461, ident=7)
    full = frames.tcp_frame(B, A, CLIENT, VIP, 40000, 80, 1000, 0, frames.ACK, payload=b"x" * 1460, ident=8)
    path = write(tmp_path / "mtu.pcapng", [full, tunnelled(full), big])
    findings = check_capture(path, use_tshark=tshark)
    assert [(f.number, f.message) for f in findings] == [
        (3, "1515-byte frame outside the SE tunnel: over the 1500-byte MTU (1514 bytes with Ethernet)")]
