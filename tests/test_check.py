"""``dataplane check``: tshark gate and our own checksum validation, findings and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import cli
from dataplane.wire import arp, frames
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
