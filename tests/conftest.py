"""Shared fixtures: small scenarios built in code, runs into tmp folders, the tshark gate."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

from dataplane.testing import check, multihop
from dataplane import scenario as scenario_mod
from dataplane.emulation import run_scenario

GATE_FILTER = check.GATE_FILTER

# CI runs the same examples every time (a failure found once is found again, and a green run stays green);
# HYPOTHESIS_PROFILE=explore searches anew, with more examples, when you hunt for bugs.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BASE = {
    "name": "test-4se",
    "cloud": "vmware",
    "seed": 3,
    "duration": 6.0,
    "networks": {
        "frontend": {"cidr": "10.10.0.0/24", "gateway": "10.10.0.1"},
        "backend": {"cidr": "10.20.0.0/24"},
    },
    "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"} for i in range(1, 5)],
    # Most tests pin the packet-by-packet path (the SE translates, sequence numbers pass through);
    # tests/test_tcp_proxy.py covers the product's default, the TCP proxy.
    "virtual_service": {"name": "vs-web", "vip": "10.10.0.100", "port": 80, "protocol": "tcp",
                        "placement": ["se-1", "se-2", "se-3", "se-4"], "network_profile": "tcp-fast-path"},
    "pool": {"servers": ["10.20.0.101:8080", "10.20.0.102:8080"]},
    "traffic": {"clients": ["198.51.100.0/28"], "new_connections_per_second": 40,
                "request_bytes": 200, "response_bytes": 1200},
}


def scenario_dict(**overrides) -> dict:
    """Return BASE with dotted-key overrides applied, e.g. ``**{"traffic.response_bytes": 10}``."""
    data = copy.deepcopy(BASE)
    for dotted, value in overrides.items():
        table = data
        *parents, last = dotted.split(".")
        for key in parents:
            table = table.setdefault(key, {})
        table[last] = value
    vs = data.get("virtual_service", {})
    if vs.get("protocol") == "udp" and "virtual_service.network_profile" not in overrides:
        vs["network_profile"] = "udp-fast-path"  # BASE's tcp-fast-path is a TCP profile
    return data


def tshark(capture: Path, *args: str) -> str:
    binary = shutil.which("tshark")
    assert binary, "tshark is required by the test suite (apt-get install tshark)"
    result = subprocess.run([binary, "-n", "-r", str(capture), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fields(capture: Path, names: list[str], display_filter: str = "", *extra: str) -> list[list[str]]:
    args = [*extra, "-T", "fields", "-E", "separator=\t"]
    for name in names:
        args += ["-e", name]
    if display_filter:
        args += ["-Y", display_filter]
    return [line.split("\t") for line in tshark(capture, *args).splitlines() if line]


def assert_passes_gate(capture: Path) -> None:
    """docs/design.md ("How we check it"): checksums validated, nothing malformed, no expert error, tunnel decoded.

    The exceptions: a frame a test forged broken on purpose (its comment says "[malformed: ...]"), and one TCP
    segment seen again on a later hop (Wireshark's multi-hop artefact), when every hop then passes the gate
    in a file of its own, as ``dataplane check`` judges it.
    """
    assert shutil.which("tshark"), "tshark is required by the test suite (apt-get install tshark)"
    findings = [f for f in check.check_capture(capture, use_tshark=True) if "[malformed: " not in f.comment]
    if findings:
        findings, per_hop = multihop.explain(capture, findings)
        if per_hop is not None and per_hop.clean:
            return
        findings = per_hop.findings if per_hop is not None else findings
    assert not findings, f"{capture} fails the tshark gate:\n{check.format_findings(findings)}"


@pytest.fixture(autouse=True)
def _gate_fixture_captures(tmp_path):
    """Every capture the dataplane_net fixture leaves in a test's folder passes the tshark gate."""
    yield
    for capture in sorted(tmp_path.glob("capture*.pcapng")):
        assert_passes_gate(capture)


def capture_now(net, folder: Path) -> Path:
    """Write the capture of a fixture network as it stands now, for tshark."""
    path = folder / "snapshot.pcapng"
    path.write_bytes(net.capture_bytes())
    return path


class Run:
    def __init__(self, out: Path, summary: dict):
        self.out = out
        self.summary = summary
        self.capture = out / "capture.pcapng"
        self.events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        self.plan = summary["address_plan"]

    def mac(self, node: str, nic: str = "frontend") -> str:
        return self.plan[node][nic]["mac"]

    def ip(self, node: str, nic: str = "frontend") -> str:
        return self.plan[node][nic]["ip"]


@pytest.fixture
def run_dict(tmp_path):
    """Run a scenario dict into a fresh folder, check the capture against the gate, return a Run."""
    counter = iter(range(1000))

    def run(data: dict, gate: bool = True) -> Run:
        out = tmp_path / f"run{next(counter)}"
        summary = run_scenario(scenario_mod.parse(data, "test.toml"), out)
        result = Run(out, summary)
        if gate:
            assert_passes_gate(result.capture)
        return result

    return run
