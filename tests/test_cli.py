"""The command line: outputs, exit statuses, one-line errors, all-or-nothing output folders."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import dataplane
from dataplane.emulation import Network, run_scenario
from conftest import assert_passes_gate

DEMO = Path(dataplane.__file__).parent / "scenarios" / "demo.toml"


def dataplane(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataplane", *args], capture_output=True, text=True, cwd=cwd)


def small_scenario(tmp_path: Path, **changes) -> Path:
    data = DEMO.read_text().split("[[events]]")[0].replace("duration = 170.0", "duration = 8.0")
    data = data.replace("requests_per_connection = 12", "requests_per_connection = 2")
    for old, new in changes.items():
        data = data.replace(old, new)
    path = tmp_path / "small.toml"
    path.write_text(data)
    return path


def test_run_writes_the_three_outputs_and_a_summary(tmp_path):
    out = tmp_path / "out"
    result = dataplane("run", str(small_scenario(tmp_path)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["capture.pcapng", "events.jsonl", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flows"]["total"] > 0 and summary["primary"] == "se-1"
    assert f"capture: {out / 'capture.pcapng'}" in result.stdout
    assert "flows by SE: se-1" in result.stdout
    assert_passes_gate(out / "capture.pcapng")


def test_seed_option_changes_the_run_and_is_reproducible(tmp_path):
    scenario = small_scenario(tmp_path)
    captures = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert dataplane("run", str(scenario), "--out", str(tmp_path / name), "--seed", seed).returncode == 0
        captures.append((tmp_path / name / "capture.pcapng").read_bytes())
    assert captures[0] == captures[1] != captures[2]


@pytest.mark.parametrize("change,message", [
    ({'name = "demo"': 'name = "demo"\nsede = 3'}, "small.toml: sede: unknown key; did you mean 'seed'?"),
    ({'vip = "10.10.0.100"': 'vip = "10.30.0.5"'},
     "small.toml: virtual_service.vip: 10.30.0.5 is outside networks.frontend (10.10.0.0/24)"),
    ({'placement = ["se-1"]': 'placement = ["se-7"]'}, "small.toml: virtual_service.placement[0]"),
    ({'duration = 8.0': 'duration = "long"'}, "small.toml: duration: expected number, got string"),
])
def test_bad_scenario_is_one_line_and_exit_2(tmp_path, change, message):
    out = tmp_path / "out"
    result = dataplane("run", str(small_scenario(tmp_path, **change)), "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_unreadable_scenario_and_unwritable_output(tmp_path):
    missing = dataplane("run", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml: cannot read" in missing.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    unwritable = dataplane("run", str(small_scenario(tmp_path)), "--out", str(blocker / "out"))
    assert unwritable.returncode == 2 and len(unwritable.stderr.strip().splitlines()) == 1
    assert "Traceback" not in unwritable.stderr


def test_a_failed_run_leaves_no_output_behind_a_good_name(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "capture.pcapng").write_bytes(b"previous run")

    def explode(self):
        self.sim.run(until_ns=10**9)
        raise KeyboardInterrupt

    monkeypatch.setattr(Network, "run", explode)
    from dataplane import scenario
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario.load(small_scenario(tmp_path)), out)
    assert [p.name for p in out.iterdir()] == ["capture.pcapng"]
    assert (out / "capture.pcapng").read_bytes() == b"previous run"


def test_demo_is_the_product_tour(tmp_path):
    result = dataplane("demo", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["type"] for line in (tmp_path / "demo" / "events.jsonl").read_text().splitlines()]
    for kind in ("vs.placed", "scale_out.completed", "se.create.failed", "se.create.completed", "server.down",
                 "server.up", "drain.expired", "scale_in.completed", "se.promoted", "migrate.completed"):
        assert kind in events, kind
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary["flows_by_phase"]) >= 6 and summary["primary"] == "se-3"
    assert [p["from"] for p in summary["flows_by_phase"]][:3] == [0.0, 12.0, 22.0]
    assert "flows by phase:" in result.stdout
    assert tomllib.loads(DEMO.read_text())["cloud"] == "vmware"
    assert_passes_gate(tmp_path / "demo" / "capture.pcapng")


def test_version_and_help():
    assert dataplane("--version").stdout.strip() == "dataplane 0.1.0"
    helptext = dataplane("--help").stdout
    for command in ("run", "demo", "diff", "check"):
        assert command in helptext
