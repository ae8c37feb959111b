"""
Output files written all or nothing.

``write_outputs`` writes a run's ``capture.pcapng``, ``events.jsonl`` and
``summary.json`` (and any extra outputs the caller names, such as replay's
per-frame account) under temporary names in the output folder and renames
them only when the run has finished, so an interrupted or failed run never
leaves a half-written file behind a good name, nor a folder it made and
left empty (``run``, ``demo`` and ``replay`` use it).  Nothing is written
outside that folder.  ``write_atomically`` does the same for one file
(golden captures, test artefacts), and ``folder_name`` turns a name from a
scenario into one path component that stays inside its parent.  It
imports nothing of dataplane, so the pytest plugin can use it cheaply.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

OUTPUTS = ("capture.pcapng", "events.jsonl", "summary.json")


def write_outputs(out_dir: str | os.PathLike, run: Callable[..., dict], extra: Sequence[str] = ()) -> dict:
    """Call ``run(capture_file, on_event, stack)`` with the outputs open under temporary names.

    With ``extra`` output names, ``run`` gets a fourth argument: ``{name: temporary path}``, a
    file for each to write as it likes (it exists, empty).  Only when ``run`` returns are the
    files renamed into place (with the summary it returned); if it raises, every temporary
    file is removed and no good name is touched.
    """
    out = Path(out_dir)
    made = _make_folder(out)
    names = OUTPUTS + tuple(extra)
    temps: dict[str, Path] = {}
    finished = False
    try:
        temps = {name: temp_output_path(out, name) for name in names}
        with ExitStack() as stack:
            capture = stack.enter_context(open(temps["capture.pcapng"], "wb", buffering=1 << 20))
            events = stack.enter_context(open(temps["events.jsonl"], "w", encoding="utf-8"))
            args: tuple = (capture, lambda event: events.write(json.dumps(event) + "\n"), stack)
            if extra:
                args += ({name: temps[name] for name in extra},)
            summary = run(*args)
            summary["outputs"] = {name: str(out / name) for name in names}
        with open(temps["summary.json"], "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
        for name, temp in temps.items():
            os.replace(temp, out / name)
        finished = True
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()
        if not finished:
            _remove_if_empty(made)
    return summary


def _make_folder(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; return the folders made, deepest first."""
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first, so a parent empties as its child goes
        try:
            folder.rmdir()
        except OSError:  # not empty (another writer put something there) or already gone: leave it
            return


def folder_name(name: str, fallback: str = "scenario") -> str:
    """``name`` as one safe path component: ASCII letters, digits, '.', '_' and '-', no leading dot.

    A scenario name like ``../../x`` becomes ``x``: the folder stays inside its parent whatever the name.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:100].rstrip(".-")
    return safe or fallback


def temp_output_path(out: Path, name: str) -> Path:
    """Return a new empty file in ``out`` to write ``name`` into before renaming it."""
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out)
    os.close(handle)
    os.chmod(path, 0o644)  # mkstemp's 0600 would hide the results from other users
    return Path(path)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``, never leaving it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_output_path(path.parent, path.name)
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
