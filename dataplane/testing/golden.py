"""
Golden captures: compare a run's capture with a reviewed one, or rewrite it.

This module owns ``assert_matches_golden``.  The comparison is the one
``dataplane diff`` prints (per interface, field by field, decision comments
included), so a failing test and the command line tell the same story.
``pytest --update-golden`` (set through ``UPDATE``) rewrites the golden
file atomically instead of comparing; review the change with ``git diff``
or ``dataplane diff``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from ..files import write_atomically
from .diff import diff_captures

#: Set by the pytest plugin from ``--update-golden``.
UPDATE = False
#: Directory that relative golden paths are resolved against (the running test's folder).
BASE_DIR: Path | None = None


def _capture_bytes(capture) -> bytes:
    if hasattr(capture, "capture_bytes"):
        return capture.capture_bytes()
    if isinstance(capture, (bytes, bytearray)):
        return bytes(capture)
    return Path(capture).read_bytes()


def assert_matches_golden(capture, path: str | os.PathLike, ignore: Iterable[str] = (), limit: int = 5) -> None:
    """Fail with a field-level diff unless ``capture`` matches the golden capture at ``path``.

    ``capture`` is a ``DataplaneNet`` (its capture so far), capture bytes, or a
    file.  A relative ``path`` is relative to the test file's folder.  ``ignore``
    takes field names as ``dataplane diff --ignore`` does.
    """
    golden = Path(path)
    if not golden.is_absolute() and BASE_DIR is not None:
        golden = BASE_DIR / golden
    data = _capture_bytes(capture)
    if UPDATE:
        if not golden.exists() or golden.read_bytes() != data:
            write_atomically(golden, data)
        return
    if not golden.exists():
        raise AssertionError(f"golden capture {golden} does not exist; run `pytest --update-golden` to create "
                             f"it from this run, then review and commit it")
    with tempfile.TemporaryDirectory(prefix="dataplane-golden-") as temp:
        actual = Path(temp) / "actual.pcapng"
        actual.write_bytes(data)
        report = diff_captures(golden, actual, ignore, limit=limit)
    if not report.same:
        raise AssertionError(f"capture differs from golden {golden} (A = golden, B = this run); if the change "
                             f"is intended, run `pytest --update-golden` and review it:\n{report.format()}")
