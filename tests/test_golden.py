"""Golden captures, one small scenario per cloud type (pcaps/golden/).

When forwarding output drifts, the failure names the first differing frames
field by field.  After an intended change, regenerate and review:
``python3 -m pytest tests/test_golden.py --update-golden`` then ``git diff --stat pcaps``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane import scenario
from dataplane.emulation import run_scenario
from dataplane.testing import assert_matches_golden
from conftest import assert_passes_gate

GOLDEN = Path(__file__).resolve().parent.parent / "pcaps" / "golden"


@pytest.mark.parametrize("cloud", ["vmware", "openstack-nuage", "openstack-neutron"])
def test_capture_matches_golden(tmp_path, cloud):
    run_scenario(scenario.load(GOLDEN / f"{cloud}.toml"), tmp_path)
    capture = tmp_path / "capture.pcapng"
    assert_passes_gate(capture)
    assert_matches_golden(capture, GOLDEN / f"{cloud}.pcapng")
    assert_passes_gate(GOLDEN / f"{cloud}.pcapng")
