"""Reading a scenario file: only a regular file of bounded size, and every failure as one line.

This module owns what happens before validation (README, "Limits"): the
path must name a regular file (a FIFO would block, ``/dev/zero`` would never
end) of at most MAX_SCENARIO_BYTES, in UTF-8, that tomllib can parse.
tomllib's own failures that are not syntax errors (arrays or inline tables
nested past Python's recursion limit, integers past its 4,300-digit
conversion limit) become a ``ScenarioError`` naming the file, like every
other problem; ``schema.parse`` then checks the keys.
"""
from __future__ import annotations

import os
import re
import stat
import tomllib

from .schema import Scenario, ScenarioError, parse

MAX_SCENARIO_BYTES = 4 * 1024 * 1024  # 65,536 pool servers take about 1.3 MB


def load(path) -> Scenario:
    """Read and validate a TOML scenario file."""
    source = str(path)
    text = _read_text(path, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: TOML syntax error: {e}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ScenarioError(f"{source}: TOML syntax error: arrays or inline tables nested too deeply") from None
    except ValueError as e:  # an integer past Python's 4,300-digit conversion limit
        raise ScenarioError(f"{source}: TOML syntax error: {_huge_integer(text) or e}") from None
    return parse(data, source)


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _read_text(path, source: str) -> str:
    """The file's text, refusing anything but a regular file of at most MAX_SCENARIO_BYTES."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
                raise ScenarioError(f"{source}: cannot read: {kind}, not a regular file")
            data = f.read(MAX_SCENARIO_BYTES + 1)
    except OSError as e:
        raise ScenarioError(f"{source}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{source}: larger than {MAX_SCENARIO_BYTES // 1024 // 1024} MiB: not a scenario file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{source}: not UTF-8 text (byte {e.start})") from None


def _huge_integer(text: str) -> str:
    """Where the integer that Python refuses to convert is, as tomllib would say it ('' if not found)."""
    found = re.search(r"(?<![0-9_])[0-9][0-9_]{4299,}", text)  # from a run's start: linear
    if found is None:
        return ""
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - text.rfind("\n", 0, found.start())
    return f"integer of more than 4,300 digits (at line {line}, column {column})"
