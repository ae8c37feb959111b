"""
Replay options: what a user may ask of a replay, each value checked against a documented range.

This module owns ``ReplayOptions`` and the parsing of every option's text:
numbers (``--speed``, ``--pps``, ``--mbps``, ``--loop``, ``--limit``),
``--match``, ``--port-map`` and ``--map`` specs, and ``--interface``.  Numbers are
read from ASCII digits only (Python's ``int()`` and ``float()`` would take
"١٢" as 12, "1_000" as 1000 and "nan" or "inf" as numbers), and each has a
range (``RANGES``, printed in the README) so that no value can make a run
endless or overflow the clock.  A bad value raises ``ValueError`` with the
one line the command prints.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

import netaddr

#: option -> (lowest, highest, integer?, why the bounds): the README's table of replay option ranges.
RANGES = {
    "--speed": (0.001, 1_000_000.0, False, "a 1 s recorded gap lasts 1000 s to 1 µs"),
    "--pps": (0.001, 1_000_000_000.0, False, "one packet per 1000 s to one per ns"),
    "--mbps": (0.001, 1_000_000.0, False, "1 kbit/s to 1 Tbit/s"),
    "--loop": (1, 255, True, "loop k moves each client's first address octet by k; 256 would wrap"),
    "--limit": (1, 10**12, True, "input packets"),
}
#: Virtual time no replayed packet may pass: the year that bounds a scenario's duration.
MAX_VIRTUAL_SECONDS = 365 * 86400
TIMELINE_ORIGINS = ("first-packet", "start")

_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


class ReplayError(Exception):
    """Bad replay input (not a capture, unsupported link type, bad option): one line for the user."""


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay.  At most one of ``speed`` != 1, ``topspeed``, ``pps``, ``mbps`` sets the pace."""

    speed: float = 1.0
    topspeed: bool = False
    pps: float | None = None
    mbps: float | None = None
    loop: int = 1
    limit: int | None = None
    allow_truncated: bool = False
    #: Replay wrong IPv4/TCP/UDP checksums (IPv6 too) as recorded (the receiving SE then drops those frames).
    keep_checksums: bool = False
    #: Skip frames cut by the capture's snap length instead of filling their missing bytes with zeros.
    skip_truncated_frames: bool = False
    #: ``--port-map``: (FROM, TO) pairs; a bare FROM (an int) has no TO (``services`` says where it goes).
    port_map: tuple = ()
    matches: tuple = ()
    #: ``--map``: (recorded server address as bytes, virtual service name) pairs.
    vs_map: tuple[tuple[bytes, str], ...] = ()
    #: Replay only this pcapng interface (its number or name); None: every interface of a supported link type.
    interface: str | None = None
    #: "first-packet": [[events]] ``at`` counts from the first replayed packet; "start": from virtual time 0.
    timeline_from: str = "first-packet"

    def __post_init__(self) -> None:
        paces = [self.speed != 1.0, self.topspeed, self.pps is not None, self.mbps is not None]
        if sum(paces) > 1:
            raise ValueError("--speed, --topspeed, --pps and --mbps are exclusive: give one")
        if self.timeline_from not in TIMELINE_ORIGINS:
            raise ValueError(f"--timeline-from: expected one of {', '.join(TIMELINE_ORIGINS)}, "
                             f"got '{self.timeline_from}'")

    @property
    def timing(self) -> str:
        """The pace in words, as summary.json and the printed summary say it."""
        if self.topspeed:
            return "topspeed"
        if self.pps is not None:
            return f"{self.pps:g} packets/s"
        if self.mbps is not None:
            return f"{self.mbps:g} Mbit/s"
        return "recorded" if self.speed == 1 else f"speed x{self.speed:g}"


def parse_number(option: str, text: str) -> float | int:
    """The value of a numeric option, from ASCII digits, within ``RANGES[option]``; else ValueError."""
    low, high, integer, why = RANGES[option]
    pattern = _DIGITS if integer else _DECIMAL
    if not isinstance(text, str) or not pattern.fullmatch(text):
        want = "a whole number" if integer else "a decimal number"
        raise ValueError(f"{option}: expected {want} in ASCII digits from {low:g} to {high:g}, got '{_shown(text)}'")
    value = int(text) if integer else float(text)
    if not (low <= value <= high) or (not integer and not math.isfinite(value)):
        raise ValueError(f"{option}: {text} is out of range {low:g} to {high:g} ({why})")
    return value


def parse_interface(text: str) -> str:
    """``--interface``: an interface number (pcapng interface id) or name, as given."""
    if not text or len(text) > 255 or not text.isprintable():
        raise ValueError(f"--interface: expected an interface number or name, got '{_shown(text)}'")
    if text.isdigit() and not _DIGITS.fullmatch(text):
        raise ValueError(f"--interface: interface numbers are ASCII digits, got '{_shown(text)}'")
    return text


def _shown(text) -> str:
    """``text`` safe to print on one line."""
    shown = str(text).encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= 60 else shown[:57] + "..."


# -- which flows: --match and --port-map ---------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """One side of a ``--match``: an address or network and an optional port."""
    network: netaddr.IPNetwork | None
    port: int | None

    def matches(self, ip: bytes, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        network = self.network
        return network is None or (network.version == (4 if len(ip) == 4 else 6)
                                   and network.first <= int.from_bytes(ip, "big") <= network.last)


def _port(value: str, what: str, text: str) -> int:
    if not _PORT.fullmatch(value) or not 0 < int(value) < 65536:
        raise ValueError(f"{what}: bad port '{_shown(value)}' in '{_shown(text)}' (want 1-65535 in ASCII digits)")
    return int(value)


def parse_endpoint(text: str, what: str) -> Endpoint:
    """``ADDR[/LEN][:PORT]``, ``[IPV6[/LEN]]:PORT``, ``IPV6[/LEN]``, ``*:PORT`` or ``PORT`` -> Endpoint;
    ValueError with a one-line reason."""
    if not text.isascii():
        raise ValueError(f"{what}: '{_shown(text)}' is not ASCII (addresses and ports are ASCII digits)")
    if text.startswith("["):     # an IPv6 address (or network) in brackets, then an optional port (RFC 3986)
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{what}: bad address '{_shown(text)}' (want [IPV6[/LEN]]:PORT)")
        port_text = rest[1:]
        if rest and not port_text:
            raise ValueError(f"{what}: bad port '' in '{_shown(text)}' (want 1-65535 in ASCII digits)")
    elif text.count(":") > 1:    # an IPv6 address (or network) without a port
        address, port_text = text, ""
    else:
        address, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if _PORT.fullmatch(text):
        address, port_text = "*", text
    port = _port(port_text, what, text) if port_text else None
    network = None
    if address not in ("", "*"):
        try:
            network = netaddr.IPNetwork(address)
        except (netaddr.AddrFormatError, ValueError):
            raise ValueError(f"{what}: bad address '{_shown(address)}' in '{_shown(text)}' "
                             f"(want ADDR[/LEN][:PORT] or [IPV6[/LEN]]:PORT)") from None
        if network.version == 4 and ":" in address:   # netaddr reads "::ffff:1.2.3.4"-like text loosely
            raise ValueError(f"{what}: bad address '{_shown(address)}' in '{_shown(text)}'")
    return Endpoint(network, port)


def parse_match(text: str) -> tuple[Endpoint | None, Endpoint | None]:
    """``client=SPEC,server=SPEC`` (either part optional) -> (client, server)."""
    client = server = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, sep, spec = part.partition("=")
        if not sep or side not in ("client", "server"):
            raise ValueError(f"--match: expected client=ADDR[/LEN][:PORT] and/or server=..., got '{_shown(part)}'")
        endpoint = parse_endpoint(spec, f"--match {side}")
        if side == "client":
            client = endpoint
        else:
            server = endpoint
    if client is None and server is None:
        raise ValueError(f"--match: empty selection '{_shown(text)}'")
    return client, server


def port_list(ranges) -> str:
    """Ports and ranges as a person writes them: "80, 443, 8000-8099"."""
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def parse_port_map(text: str, ranges) -> tuple[int, int]:
    """``FROM[:TO]`` -> (FROM, TO).  ``ranges``: every (low, high) port range the scenario's virtual services
    listen on.  TO must be one of them; it may be left out only when they listen on a single port."""
    source, _, target = text.partition(":")
    what = "--port-map"
    port = _port(source, what, text)
    ranges = sorted(set(ranges))
    listened = port_list(ranges)
    if not target:
        if len(ranges) != 1 or ranges[0][0] != ranges[0][1]:
            raise ValueError(f"--port-map: '{_shown(text)}' needs a TO port: the virtual services listen on "
                             f"{listened} (write {port}:PORT)")
        return port, ranges[0][0]
    to = _port(target, what, text)
    if not any(low <= to <= high for low, high in ranges):
        who = "the VS listens" if len(ranges) == 1 else "the virtual services listen"
        raise ValueError(f"--port-map: '{_shown(text)}' maps to port {to}, but {who} on {listened}")
    return port, to


def parse_port_maps(texts, ranges) -> tuple[tuple[int, int], ...]:
    """Every ``--port-map``, each FROM port at most once."""
    rules: dict[int, int] = {}
    for text in texts:
        port, to = parse_port_map(text, ranges)
        if port in rules:
            raise ValueError(f"--port-map: port {port} is mapped twice (to {rules[port]} and to {to}): "
                             "give each FROM port once")
        rules[port] = to
    return tuple(rules.items())


def parse_vs_map(texts, names) -> tuple[tuple[bytes, str], ...]:
    """``--map SERVER_IP=VS_NAME`` (repeatable) -> ((address bytes, name), ...): an IPv4 or IPv6 address (IPv6
    with or without brackets), a virtual service of the scenario (``names``), each address at most once."""
    mapped: dict[bytes, str] = {}
    for text in texts:
        address, sep, name = text.partition("=")
        if not sep or not address or not name:
            raise ValueError(f"--map: expected SERVER_IP=VS_NAME, got '{_shown(text)}'")
        bracketed = address.startswith("[") and address.endswith("]")
        bare = address[1:-1] if bracketed else address
        try:
            if not bare.isascii() or "/" in bare or "%" in bare:
                raise ValueError
            parsed = ipaddress.ip_address(bare)
            # Brackets are for IPv6; an IPv4-mapped IPv6 address never matches an IPv4 flow.
            if (bracketed and parsed.version == 4) or (parsed.version == 6 and parsed.ipv4_mapped):
                raise ValueError
            ip = parsed.packed
        except ValueError:
            raise ValueError(f"--map: bad address '{_shown(address)}' in '{_shown(text)}' "
                             "(want an IPv4 address, or an IPv6 one with or without brackets)") from None
        if name not in names:
            raise ValueError(f"--map: no virtual service '{_shown(name)}' in the scenario "
                             f"(it has {', '.join(names)})")
        if ip in mapped:
            raise ValueError(f"--map: {ipaddress.ip_address(ip)} is mapped twice (to {mapped[ip]} and to "
                             f"{_shown(name)}): give each server address once")
        mapped[ip] = name
    return tuple(mapped.items())
