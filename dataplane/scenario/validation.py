"""Typed, path-naming validation of TOML tables into frozen dataclasses.

This module owns the generic toolkit that `dataplane.scenario.schema` describes its
file contract with: converters that check one value's type and range, the
table check that rejects unknown keys (suggesting the nearest known one) and
fills defaults, and the field specs that let a dataclass carry its own
converters. Every problem is raised as `_Invalid(path, message)`, with the
dotted key path and a message in TOML's own terms; the caller adds the
source file. Nothing here is specific to the scenario contract, and it
imports no dataplane module.

The names keep their leading underscore: they are the package's internal
toolkit, not part of dataplane's public API.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, field, fields
from datetime import date, datetime, time

from netaddr import AddrFormatError, IPAddress, IPNetwork


class _Invalid(Exception):
    """Raised deep inside; the caller (like scenario.parse) adds the source prefix once."""

    def __init__(self, path: str, msg: str):
        super().__init__(f"{path}: {msg}")


# ----------------------------------------------------------------- converters
# A converter is conv(value, path) -> typed value, raising _Invalid.

# TOML's own type names, so messages speak of what the user wrote, not Python.
_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
               dict: "table", datetime: "datetime", date: "date", time: "time"}


def _tname(v) -> str:
    return _TOML_TYPES.get(type(v), type(v).__name__)


def _show(v) -> str:
    return f"'{v}'" if isinstance(v, str) else str(v)


def _expect(v, p, types, what):
    # bool is an int subclass in Python but never a number in a scenario.
    if isinstance(v, bool) and bool not in types or not isinstance(v, types):
        raise _Invalid(p, f"expected {what}, got {_tname(v)}")
    return v


def _num(kind=float, lo=None, hi=None, lo_open=False):
    def conv(v, p):
        v = _expect(v, p, (int,) if kind is int else (int, float),
                    "integer" if kind is int else "number")
        v = kind(v)
        if kind is float and not math.isfinite(v):
            raise _Invalid(p, f"must be a finite number, got {v}")
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise _Invalid(p, f"{v} is out of range {lo}..{hi}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise _Invalid(p, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        return v
    return conv


def _str(pattern=None, what=None):
    def conv(v, p):
        v = _expect(v, p, (str,), "string")
        if pattern is not None and not pattern.fullmatch(v):
            raise _Invalid(p, f"{_show(v)} is not a valid {what}")
        return v
    return conv


def _enum(*choices):
    def conv(v, p):
        if _expect(v, p, (str,), "string") not in choices:
            raise _Invalid(p, f"{_show(v)} is not one of {', '.join(choices)}")
        return v
    return conv


def _bool(v, p):
    return _expect(v, p, (bool,), "boolean")


def _ip(v, p):
    v = _expect(v, p, (str,), "IP address string")
    try:
        ip = IPAddress(v)
    except (AddrFormatError, ValueError):
        raise _Invalid(p, f"{_show(v)} is not an IP address") from None
    if ip.version != 4:
        raise _Invalid(p, "IPv6 addresses are not supported yet")
    return ip


def _net(v, p):
    v = _expect(v, p, (str,), "CIDR string")
    try:
        net = IPNetwork(v) if "/" in v else None
    except (AddrFormatError, ValueError):
        net = None
    if net is None:
        raise _Invalid(p, f"{_show(v)} is not a network in CIDR notation (like 10.10.0.0/24)")
    if net.version != 4:
        raise _Invalid(p, "IPv6 networks are not supported yet")
    if net.ip != net.network:
        # 10.10.0.5/24 is usually a typo for a host address; don't guess silently.
        raise _Invalid(p, f"{v} has host bits set; did you mean {net.cidr}?")
    return net


def _list(item, nonempty=False, unique=False):
    def conv(v, p):
        _expect(v, p, (list,), "array")
        if nonempty and not v:
            raise _Invalid(p, "must not be empty")
        out = []
        for i, x in enumerate(v):
            x = item(x, f"{p}[{i}]")
            if unique and x in out:
                raise _Invalid(f"{p}[{i}]", f"duplicate {_show(x)}")
            out.append(x)
        return tuple(out)
    return conv


def _raw_table(v, p):
    return _expect(v, p, (dict,), "table")


def _join(path, key):
    return f"{path}.{key}" if path else key


def _table(data, path, spec, keys=None) -> dict:
    """Reject unknown keys (in file order), then convert `keys` (spec order)."""
    _raw_table(data, path)
    for key in data:
        if key not in spec:
            near = difflib.get_close_matches(key, spec, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"expected one of: {', '.join(spec)}"
            raise _Invalid(_join(path, key), f"unknown key; {hint}")
    out = {}
    for key in spec if keys is None else keys:
        (conv, default), kp = spec[key], _join(path, key)
        if key in data:
            out[key] = conv(data[key], kp)
        elif default is MISSING:
            raise _Invalid(kp, "missing required key")
        else:
            out[key] = default
    return out


# ------------------------------------------------------------- field specs
# Each dataclass field that comes from the file carries its converter in its
# metadata, so the field list, the defaults and the spec table
# used for validation are one and the same; _spec() reads them back as a
# TOML key -> (converter, default) table.

def _f(conv, default=MISSING, key=None):
    return field(default=default, metadata={"conv": conv, "key": key})


def _spec(cls) -> dict:
    return {f.metadata["key"] or f.name: (f.metadata["conv"], f.default)
            for f in fields(cls) if "conv" in f.metadata}


def _build(cls, data, path, **fixed):
    names = {f.metadata["key"] or f.name: f.name for f in fields(cls) if "conv" in f.metadata}
    return cls(**fixed, **{names[k]: v for k, v in _table(data, path, _spec(cls)).items()})
