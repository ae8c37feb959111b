"""``dataplane diff``: per-interface alignment, field-level output, --ignore, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import cli
from dataplane.wire import frames
from dataplane.l2.capture import EPOCH_NS
from dataplane.testing.diff import diff_captures
from dataplane.wire.pcapng import PcapngWriter
from conftest import assert_passes_gate, scenario_dict
from dataplane import scenario as scenario_mod
from dataplane.emulation import run_scenario

GW, SE = frames.mac_bytes("02:00:0a:0a:00:01"), frames.mac_bytes("02:00:0a:0a:00:0b")
CLIENT, VIP = frames.ip_bytes("198.51.100.7"), frames.ip_bytes("10.10.0.100")


def syn(sport: int, seq: int = 1000) -> bytes:
    return frames.tcp_frame(SE, GW, CLIENT, VIP, sport, 80, seq, 0, frames.SYN, ident=sport)


def write(path: Path, rows: list[tuple[str, bytes, str]]) -> Path:
    """Write (interface, frame, comment) rows, 1 µs apart."""
    with PcapngWriter(path) as writer:
        ids = {name: writer.add_interface(name) for name in ("frontend", "backend")}
        for number, (iface, frame, comment) in enumerate(rows):
            writer.write_frame(ids[iface], EPOCH_NS + number * 1000, frame, comment)
    return path


def base_rows() -> list[tuple[str, bytes, str]]:
    return [("frontend", syn(40000 + i), f"gw route {i}") for i in range(5)] + \
           [("backend", syn(50000 + i), f"se-1 snat {i}") for i in range(3)]


def test_identical_captures_are_the_same(tmp_path, capsys):
    a = write(tmp_path / "a.pcapng", base_rows())
    b = write(tmp_path / "b.pcapng", base_rows())
    assert cli.main(["diff", str(a), str(b)]) == 0
    assert capsys.readouterr().out.strip() == "same: 8 frames on 2 interfaces"
    assert_passes_gate(a)


def test_the_changed_field_is_named_with_both_values_and_frame_numbers(tmp_path, capsys):
    rows = base_rows()
    rows[3] = ("frontend", syn(40003, seq=1001), rows[3][2])
    a, b = write(tmp_path / "a.pcapng", base_rows()), write(tmp_path / "b.pcapng", rows)
    assert cli.main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "frontend frame 4 (#4 in A, #4 in B): tcp.seq: 1000 != 1001"
    assert out[1].startswith("    tcp.checksum: 0x")
    assert out[2] == "    comment: gw route 3"
    assert out[-1] == "different: frontend 1 of 5"


def test_ignored_fields_take_their_checksums_with_them(tmp_path, capsys):
    rows = base_rows()
    rows[3] = ("frontend", syn(40003, seq=1001), rows[3][2])
    a, b = write(tmp_path / "a.pcapng", base_rows()), write(tmp_path / "b.pcapng", rows)
    assert cli.main(["diff", str(a), str(b), "--ignore", "tcp.seq"]) == 0
    assert "ignoring tcp.seq" in capsys.readouterr().out


def test_an_extra_frame_on_one_interface_does_not_shift_the_others(tmp_path, capsys):
    rows = base_rows()
    rows.insert(1, ("backend", syn(50009), "se-1 snat extra"))
    a, b = write(tmp_path / "a.pcapng", base_rows()), write(tmp_path / "b.pcapng", rows)
    report = diff_captures(a, b, ignore=["frame.time"])
    assert not report.differing["frontend"], "frontend frames still pair up"
    assert report.differing["backend"] == 3 and not report.same
    assert "backend: B has 1 more frame (3 in A, 4 in B)" in report.format()


def test_comments_and_timing_are_compared_unless_ignored(tmp_path):
    rows = base_rows()
    rows[0] = ("frontend", rows[0][1], "gw route 0 (changed)")
    a, b = write(tmp_path / "a.pcapng", base_rows()), write(tmp_path / "b.pcapng", rows)
    (difference,) = diff_captures(a, b).differences
    assert [d.name for d in difference.fields] == ["frame.comment"]
    assert diff_captures(a, b, ignore=["frame.comment"]).same


def test_two_runs_with_another_seed_differ_field_by_field(tmp_path, capsys):
    data = scenario_dict(duration=2.0)
    first = run_scenario(scenario_mod.parse(data, "a"), tmp_path / "a")
    second = run_scenario(scenario_mod.parse({**data, "seed": 4}, "b"), tmp_path / "b")
    a, b = first["outputs"]["capture.pcapng"], second["outputs"]["capture.pcapng"]
    assert cli.main(["diff", a, b, "--limit", "2"]) == 1
    out = capsys.readouterr().out
    assert out.count(" in B): ") == 2 and "more differing frames not shown" in out


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"root:x:0:0\n"), "not a pcap or pcapng file"),
    (lambda p: p.write_bytes(write(p.with_suffix(".ok"), base_rows()).read_bytes()[:300]), "is truncated"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    good = write(tmp_path / "good.pcapng", base_rows())
    bad = tmp_path / "bad.pcapng"
    make(bad)
    assert cli.main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("dataplane: bad.pcapng")


def test_unknown_field_and_missing_file_are_bad_input(tmp_path, capsys):
    good = write(tmp_path / "good.pcapng", base_rows())
    assert cli.main(["diff", str(good), str(good), "--ignore", "tcp.sqe"]) == 2
    assert "unknown field 'tcp.sqe'; did you mean tcp.seq" in capsys.readouterr().err
    assert cli.main(["diff", str(good), str(tmp_path / "nope.pcapng")]) == 2
    assert "nope.pcapng: no such capture file" in capsys.readouterr().err
