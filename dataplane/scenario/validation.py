"""Typed, path-naming, bounded validation of TOML tables into frozen dataclasses.

This module owns the generic toolkit that `dataplane.scenario.schema` describes its
file contract with: converters that check one value's type and range, the
table check that rejects unknown keys (suggesting the nearest known one) and
fills defaults, and the field specs that let a dataclass carry its own
converters. Every problem is raised as `_Invalid(path, message)`, with the
dotted key path and a message in TOML's own terms; the caller adds the
source file. Nothing here is specific to the scenario contract, and it
imports no dataplane module.

Every converter is bounded (README, "Limits"): a number has a lowest and a
highest value, a string a size in UTF-8 bytes and no control characters, a
list a number of items. A converter says its own range in words (`doc`), so
the README's key table is checked against the code, and a new key gets its
bounds where it is declared, next to its default.

The names keep their leading underscore: they are the package's internal
toolkit, not part of dataplane's public API.
"""
from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, datetime, time
from typing import Any, Callable

from netaddr import AddrFormatError, IPAddress, IPNetwork

YEAR = 365 * 86400.0      # seconds; bounds every time in a scenario (the ns clock stays far inside 64 bits)
MICROSECOND = 1e-6        # the shortest interval: anything repeating faster would spin the clock
NAME_BYTES = 255          # a name or label: one DNS name's worth, far inside a pcapng option (65,535 bytes)


class _Invalid(Exception):
    """Raised deep inside; the caller (like scenario.parse) adds the source prefix once."""

    def __init__(self, path: str, msg: str):
        super().__init__(f"{path}: {msg}")


# ------------------------------------------------------------- showing values
# TOML's own type names, so messages speak of what the user wrote, not Python.
_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
               dict: "table", datetime: "datetime", date: "date", time: "time"}
_SHOWN_CHARS = 60


def _tname(v) -> str:
    return _TOML_TYPES.get(type(v), type(v).__name__)


def _show(v) -> str:
    """A value as one short, printable piece of a message, whatever the user wrote."""
    if isinstance(v, str):
        if len(v) <= _SHOWN_CHARS:
            return repr(v)  # escapes control characters: a message stays one line on any terminal
        return f"{repr(v[:_SHOWN_CHARS])[:-1]}...' ({len(v)} characters)"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10 ** 30:
        return f"an integer of {len(str(abs(v))) if v.bit_length() < 14000 else 'over 4,000'} digits"
    if isinstance(v, (int, float)):
        return _number(v)
    return _tname(v)


def _listing(names, shown: int = 8) -> str:
    """Names for a message, the first few only: a list of a thousand hosts must not make a 250 kB line."""
    names = list(names)
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _number(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        x = int(x)
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}" if abs(x) >= 100_000 else str(x)  # ports and small counts read better bare
    return f"{x:.15g}"


def _amount(x, unit: str) -> str:
    """A bound or default in words: seconds as µs/ms/s/year, other numbers with thousands separators."""
    if unit != "s":
        return _number(x) + (f" {unit}" if unit else "")
    if x == 0:
        return "0"
    if x == YEAR:
        return "1 year"
    if x >= 1:
        return f"{x:.15g} s"
    if x >= 1e-3:
        return f"{x * 1e3:.12g} ms"
    return f"{x * 1e6:.9g} µs"


# ----------------------------------------------------------------- converters
# A converter is conv(value, path) -> typed value, raising _Invalid; `doc` says what it accepts.

def _expect(v, p, types, what):
    # bool is an int subclass in Python but never a number in a scenario.
    if isinstance(v, bool) and bool not in types or not isinstance(v, types):
        raise _Invalid(p, f"expected {what}, got {_tname(v)}")
    return v


@dataclass(frozen=True)
class _num:
    """A number within lo..hi (both required: every number of a scenario is bounded).

    ``or_zero``: 0 is also accepted and means "none" (a rate of 0: no generated traffic).
    """
    kind: type
    lo: float
    hi: float
    unit: str = ""
    or_zero: bool = False

    def __call__(self, v, p):
        v = _expect(v, p, (int,) if self.kind is int else (int, float),
                    "integer" if self.kind is int else "number")
        if self.kind is float:
            try:
                v = float(v)
            except OverflowError:  # an integer beyond any float
                raise _Invalid(p, f"{_show(v)} is out of range {self.range}") from None
            if not math.isfinite(v):
                raise _Invalid(p, f"must be a finite number, got {v}")
        if self.or_zero and v == 0:
            return v
        if not self.lo <= v <= self.hi:
            raise _Invalid(p, f"{_show(v)} is out of range {'0 or ' if self.or_zero else ''}{self.range}")
        return v

    @property
    def range(self) -> str:
        if self.unit == "s":
            return f"{_amount(self.lo, 's')}..{_amount(self.hi, 's')}"
        return f"{_number(self.lo)}..{_number(self.hi)}" + (f" {self.unit}" if self.unit else "")

    @property
    def doc(self) -> str:
        kind = "integer" if self.kind is int else "number"
        return f"{kind}, {'0 or ' if self.or_zero else ''}{self.range}"


_CONTROL_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # controls, format (bidi), surrogates, line breaks


def _bad_char(text: str) -> int:
    """Index of the first character that would break a comment, a line or a terminal, or -1."""
    if text.isprintable():
        return -1
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return i
    return -1


@dataclass(frozen=True)
class _str:
    """A non-empty string of at most ``max_bytes`` UTF-8 bytes without control characters.

    ``lines``: CR LF may separate non-empty lines (an HTTP request with header lines).
    """
    pattern: re.Pattern | None = None
    what: str | None = None
    max_bytes: int = NAME_BYTES
    lines: bool = False

    def __call__(self, v, p):
        v = _expect(v, p, (str,), "string")
        if not v:
            raise _Invalid(p, "must not be empty")
        size = len(v.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            raise _Invalid(p, f"{size:,} bytes long (UTF-8), at most {self.max_bytes:,}: {_show(v[:20])[:-1]}...'")
        for number, line in enumerate(v.split("\r\n") if self.lines else [v], 1):
            if not line:
                raise _Invalid(p, f"{_show(v)} has an empty line {number}")
            at = _bad_char(line)
            if at >= 0:
                allowed = " (only CR LF between lines)" if self.lines else ""
                raise _Invalid(p, f"{_show(v)} holds control character U+{ord(line[at]):04X}{allowed}")
        if self.pattern is not None and not self.pattern.fullmatch(v):
            raise _Invalid(p, f"{_show(v)} is not a valid {self.what}")
        return v

    @property
    def doc(self) -> str:
        shape = f"{self.what}, " if self.what else ""
        lines = ", CR LF between lines" if self.lines else ""
        return f"{shape}string of 1..{self.max_bytes:,} bytes{lines}"


@dataclass(frozen=True)
class _enum:
    choices: tuple[str, ...]

    def __init__(self, *choices: str):
        object.__setattr__(self, "choices", choices)

    def __call__(self, v, p):
        if _expect(v, p, (str,), "string") not in self.choices:
            raise _Invalid(p, f"{_show(v)} is not one of {', '.join(self.choices)}")
        return v

    @property
    def doc(self) -> str:
        return " \\| ".join(f"`{c}`" for c in self.choices)


def _bool(v, p):
    return _expect(v, p, (bool,), "boolean")


_bool.doc = "`true` \\| `false`"


def _ip(v, p):
    v = _expect(v, p, (str,), "IP address string")
    if len(v) > 45:  # no address is longer; keeps a pasted blob out of netaddr and the message
        raise _Invalid(p, f"{_show(v)} is not an IP address")
    try:
        ip = IPAddress(v)
    except (AddrFormatError, ValueError):
        raise _Invalid(p, f"{_show(v)} is not an IP address") from None
    if ip.version != 4:
        raise _Invalid(p, f"{_show(v)} is an IPv6 address: give it in the key's IPv6 sibling (vip6, gateway6)")
    return ip


_ip.doc = "IPv4 address"

# ASCII digits only: netaddr would read "10.0.0.0/٨" (an Arabic-Indic 8) or " 8" as /8.
_CIDR = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}/(0|[1-9][0-9]?)")
# Address blocks no emulated host can use (RFC 6890): they can carry neither a VIP, nor an SE, nor a client.
_UNUSABLE = [(IPNetwork(cidr), what) for cidr, what in (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"), ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"), ("255.255.255.255/32", "the limited broadcast address"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4)"))]
_LINK_LOCAL_NET = IPNetwork("169.254.0.0/16")
_LINK_LOCAL = (_LINK_LOCAL_NET, "link-local (169.254.0.0/16)")


@dataclass(frozen=True)
class _net:
    """An IPv4 network in CIDR notation whose addresses hosts can use.

    ``link_local``: allow 169.254.0.0/16 (only on-link networks can use it; routed ones cannot).
    """
    link_local: bool = False
    note: str = ""

    def __call__(self, v, p):
        v = _expect(v, p, (str,), "CIDR string")
        net = None
        if len(v) <= 18 and _CIDR.fullmatch(v):
            try:
                net = IPNetwork(v)
            except (AddrFormatError, ValueError):
                pass
        if net is None:
            if ":" in v and "/" in v and len(v) <= 49:
                hint = ("the management network is IPv4 only" if p.startswith("networks.management")
                        else "give it as cidr6 (this key is IPv4)")
                raise _Invalid(p, f"{_show(v)} is an IPv6 network: {hint}")
            raise _Invalid(p, f"{_show(v)} is not a network in CIDR notation (like 10.10.0.0/24)")
        if net.ip != net.network:
            # 10.10.0.5/24 is usually a typo for a host address; don't guess silently.
            raise _Invalid(p, f"{v} has host bits set; did you mean {net.cidr}?")
        for block, what in _UNUSABLE + ([] if self.link_local else [_LINK_LOCAL]):
            if net in block:
                raise _Invalid(p, f"{v} is {what}: hosts cannot use it")
            if block in net:
                raise _Invalid(p, f"{v} contains {what}, which hosts cannot use")
        return net

    @property
    def doc(self) -> str:
        return "IPv4 CIDR, unicast" + (f", {self.note}" if self.note else "" if self.link_local else ", not link-local")


# IPv6 blocks no emulated host can use (RFC 4291, RFC 6890): the unspecified and loopback addresses,
# multicast, IPv4-mapped addresses (an IPv4 host's), and link-local (never routed, and the emulator gives
# every NIC a global address instead).
_UNUSABLE6 = [(IPNetwork(cidr), what) for cidr, what in (
    ("::/128", "the unspecified address (::)"), ("::1/128", "the loopback address (::1)"),
    ("ff00::/8", "multicast (ff00::/8)"), ("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)"),
    ("fe80::/10", "link-local (fe80::/10)"))]
_CIDR6 = re.compile(r"[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}")
#: The longest prefix an emulated IPv6 network may have: a /64, as every IPv6 subnet with hosts (RFC 4291 2.5.1).
MAX_PREFIX6 = 64


def _ip6(v, p):
    v = _expect(v, p, (str,), "IPv6 address string")
    if len(v) > 45 or ":" not in v:
        raise _Invalid(p, f"{_show(v)} is not an IPv6 address")
    try:
        ip = IPAddress(v, 6)
    except (AddrFormatError, ValueError):
        raise _Invalid(p, f"{_show(v)} is not an IPv6 address") from None
    for block, what in _UNUSABLE6:
        if ip in block:
            raise _Invalid(p, f"{v} is {what}: hosts cannot use it")
    return ip


_ip6.doc = "IPv6 address"


def _net6(v, p):
    v = _expect(v, p, (str,), "IPv6 CIDR string")
    if not _CIDR6.fullmatch(v):
        raise _Invalid(p, f"{_show(v)} is not an IPv6 network in CIDR notation (like 2001:db8:10::/64)")
    try:
        net = IPNetwork(v, version=6)
    except (AddrFormatError, ValueError):
        raise _Invalid(p, f"{_show(v)} is not an IPv6 network in CIDR notation (like 2001:db8:10::/64)") from None
    if net.ip != net.network:
        raise _Invalid(p, f"{v} has host bits set; did you mean {net.cidr}?")
    if net.prefixlen > MAX_PREFIX6:
        raise _Invalid(p, f"{v} is longer than /{MAX_PREFIX6}: an IPv6 subnet with hosts is a /64 or larger")
    for block, what in _UNUSABLE6:
        if net in block:
            raise _Invalid(p, f"{v} is {what}: hosts cannot use it")
        if block in net:
            raise _Invalid(p, f"{v} contains {what}, which hosts cannot use")
    return net


_net6.doc = f"IPv6 CIDR, /{MAX_PREFIX6} or larger, global or unique-local"


def _net_any(v, p):
    """A client network: IPv4 as ``_net`` takes it, or IPv6 as ``_net6`` does."""
    if isinstance(v, str) and ":" in v:
        return _net6(v, p)
    return _net()(v, p)


_net_any.doc = "IPv4 CIDR, unicast, not link-local; or IPv6 CIDR, /64 or larger"


@dataclass(frozen=True)
class _list:
    """An array of at most ``max_items`` items, each checked by ``item``; duplicates found in linear time."""
    item: Callable
    max_items: int
    nonempty: bool = False
    unique: bool = False

    def __call__(self, v, p):
        _expect(v, p, (list,), "array")
        if self.nonempty and not v:
            raise _Invalid(p, "must not be empty")
        if len(v) > self.max_items:
            raise _Invalid(p, f"{len(v):,} items; at most {self.max_items:,}")
        out, seen = [], set()
        for i, x in enumerate(v):
            x = self.item(x, f"{p}[{i}]")
            if self.unique:
                if x in seen:
                    raise _Invalid(f"{p}[{i}]", f"duplicate {_show(x) if isinstance(x, str) else x}")
                seen.add(x)
            out.append(x)
        return tuple(out)

    @property
    def doc(self) -> str:
        item = _doc(self.item)
        return f"array of {'1' if self.nonempty else '0'}..{self.max_items:,}" + (f": {item}" if item else "")


def _raw_table(v, p):
    return _expect(v, p, (dict,), "table")


_raw_table.doc = "table"


def _doc(conv) -> str:
    """What a converter accepts, in the README's words ('' when it has nothing to add)."""
    return getattr(conv, "doc", "")


# ------------------------------------------------------------------- tables

_SHOWN_KEY = 40


def _join(path, key):
    if len(key) > _SHOWN_KEY or not key.isprintable():  # a key is user text too: keep the line short and whole
        key = repr(key[:_SHOWN_KEY]) + ("..." if len(key) > _SHOWN_KEY else "")
    return f"{path}.{key}" if path else key


def _table(data, path, spec, keys=None) -> dict:
    """Reject unknown keys (in file order), then convert `keys` (spec order)."""
    _raw_table(data, path)
    for key in data:
        if key not in spec:
            near = difflib.get_close_matches(key, spec, n=1) if len(key) <= _SHOWN_KEY else []
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
# metadata, so the field list, the defaults, the bounds and the spec table
# used for validation are one and the same; _spec() reads them back as a
# TOML key -> (converter, default) table.

def _f(conv, default=MISSING, key=None, unit=""):
    """A field from the file: its converter (type and bounds), default, TOML key and unit for the README."""
    return field(default=default, metadata={"conv": conv, "key": key, "unit": unit or getattr(conv, "unit", "")})


def _spec(cls) -> dict:
    return {f.metadata["key"] or f.name: (f.metadata["conv"], f.default)
            for f in fields(cls) if "conv" in f.metadata}


def _build(cls, data, path, **fixed):
    names = {f.metadata["key"] or f.name: f.name for f in fields(cls) if "conv" in f.metadata}
    return cls(**fixed, **{names[k]: v for k, v in _table(data, path, _spec(cls)).items()})


def _reference(cls, path: str) -> list[tuple[str, str, str]]:
    """(dotted key, default, what is accepted) for each field of ``cls``, as README's key table has them."""
    rows = []
    for f in fields(cls):
        if "conv" in f.metadata and _doc(f.metadata["conv"]) != "table":  # a sub-table lists its own keys
            rows.append((_join(path, f.metadata["key"] or f.name), _default_text(f.default, f.metadata["unit"]),
                         _doc(f.metadata["conv"])))
    return rows


def _default_text(default: Any, unit: str = "") -> str:
    if default is MISSING:
        return "required"
    if default is None or default == ():
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, (int, float)):
        return _amount(default, unit)
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, tuple):
        return ", ".join(f"`{x}`" for x in default)
    return "see below"
