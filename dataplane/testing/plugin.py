"""
The pytest plugin (entry point ``pytest11``): the ``dataplane_net`` fixture and its options.

This module owns the pytest side of the regression toolkit: the fixture
that builds and starts networks for a test, the ``--update-golden`` and
``--dataplane-artifacts`` options, and the per-test artefacts.  Every
network a test builds leaves ``capture.pcapng`` (``capture-2.pcapng``...)
and ``events.jsonl`` in the test's artefact folder, with the test's verdict
and its expectations in the capture's section comment (``capinfos FILE``,
or Statistics > Capture File Properties in Wireshark).

The verbs live in ``net``; goldens in ``golden``.
Importing this module stays cheap: it is loaded into every pytest run of
every project that installed ``dataplane``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from ..files import write_atomically
from . import golden

_REPORTS = pytest.StashKey[dict]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("dataplane", "dataplane forwarding regression tests")
    group.addoption("--update-golden", action="store_true", default=False,
                    help="rewrite golden captures from this run instead of comparing with them")
    group.addoption("--dataplane-artifacts", metavar="DIR", default=None,
                    help="keep each test's capture under DIR/<test id>/ (default: the test's tmp_path)")


def pytest_configure(config) -> None:
    golden.UPDATE = bool(config.getoption("update_golden", False))


def pytest_unconfigure(config) -> None:
    golden.UPDATE = False
    golden.BASE_DIR = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report so the fixture's teardown can write the verdict into the capture.
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    golden.BASE_DIR = Path(item.path).parent
    yield


class NetFactory:
    """``dataplane_net(scenario, traffic=False, horizon=None, ignore=(), max_seen=100_000)`` builds a started network."""

    def __init__(self, artefact_dir: Path):
        self.artefact_dir = artefact_dir
        self.nets: list = []

    def __call__(self, scenario, *, traffic: bool = False, horizon: float | None = None, ignore=(),
                 max_seen: int | None = None):
        from .net import start_network

        if isinstance(scenario, (str, Path)) and not Path(scenario).is_absolute() and not Path(scenario).exists():
            beside_test = (golden.BASE_DIR or Path.cwd()) / scenario
            scenario = beside_test if beside_test.exists() else scenario
        net = start_network(scenario, traffic=traffic, horizon=horizon, ignore=ignore,
                            **({"max_seen": max_seen} if max_seen is not None else {}))
        self.nets.append(net)
        net.artefact = self.artefact_dir / self._name(len(self.nets))
        return net

    load = __call__

    @staticmethod
    def _name(number: int) -> str:
        return "capture.pcapng" if number == 1 else f"capture-{number}.pcapng"


def _verdict(item) -> str:
    reports = item.stash.get(_REPORTS, {})
    for when in ("setup", "call"):
        report = reports.get(when)
        if report is None:
            continue
        if report.failed:
            message = str(getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message
                          or report.longrepr).strip()
            return f"FAILED ({when}): {message}"
        if report.skipped:
            return "SKIPPED"
    return "PASSED" if "call" in reports else "NOT RUN"


def _with_section_comment(capture: bytes, comment: str) -> bytes:
    """Replace the capture's section header block by one carrying ``comment``."""
    from ..wire.pcapng import PcapngWriter

    header = io.BytesIO()
    PcapngWriter(header, application="dataplane pytest plugin", comment=comment).close()
    old_length = int.from_bytes(capture[4:8], "little")
    return header.getvalue() + capture[old_length:]


@pytest.fixture
def dataplane_net(request, tmp_path):
    """Build started emulated networks for this test; keep their captures as artefacts.

    ``net = dataplane_net(scenario)`` with a scenario dict or TOML path (relative
    paths are looked up beside the test file), ``traffic=True`` to also run the
    scenario's generated connections.  See ``dataplane.testing.DataplaneNet``.
    """
    root = request.config.getoption("dataplane_artifacts")
    if root:
        folder = Path(root) / re.sub(r"[^\w.-]+", "_", request.node.nodeid).strip("_")
    else:
        folder = tmp_path
    factory = NetFactory(folder)
    yield factory
    if not factory.nets:
        return
    folder.mkdir(parents=True, exist_ok=True)
    verdict = _verdict(request.node)
    for net in factory.nets:
        scenario = net.network.scenario
        comment = (f"test {request.node.nodeid}: {verdict}\n"
                   f"scenario {scenario.name}, seed {scenario.seed}\n"
                   + "\n".join(net.verdicts))
        net.network.capture.close()
        write_atomically(net.artefact, _with_section_comment(net.capture_bytes(), comment))
        events = net.artefact.with_name(net.artefact.stem.replace("capture", "events") + ".jsonl")
        events.write_text("".join(json.dumps(e) + "\n" for e in net.network.events), encoding="utf-8")
