"""
Replay input: link-layer decoding and which flows belong to the virtual service.

This module owns the two questions replay asks of every recorded frame,
before any emulation happens:

1. *What IPv4 packet is inside?*  ``decoder_for(linktype)`` returns a
   function that strips the link layer (Ethernet with any number of
   802.1Q/802.1ad tags, Linux cooked SLL and SLL2, raw IP, BSD loopback)
   and returns the IPv4 packet trimmed to its total length, or ``None`` and
   the reason it cannot be replayed (IPv6, a fragment, another protocol...).
   Reasons are the keys of ``summary.json``'s ``skipped``.
2. *Is this flow the VS's?*  ``Selection`` decides from the flow's opener
   (tcpprep's automatic client/server split: the sender of the first SYN, or
   of the first UDP datagram, is the client) whether the flow goes to the
   VS: by default the server port is the VS port; ``--port-map`` adds other
   server ports; ``--match`` selects by client/server address and port.

It also holds the replay options and the up-front check that refuses, in
one line, a file that is not a capture or has an unsupported link type.
Everything here is pure and per packet, so it is tested without a network.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Callable

import netaddr

from ..wire import capture_reader as cr
from ..wire import frames
from ..wire.checksum import transport_checksum
from ..wire.headers import IPV4_CHECKSUM, IPV4_DST, IPV4_PROTO, IPV4_SRC

_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_IPV6 = 0x86DD
LINKTYPE_NULL, LINKTYPE_LOOP = 0, 108

#: Why an input packet was not replayed (the keys of ``skipped``), with the text the CLI prints.
SKIP_REASONS = {
    "not_ip": "not IP (ARP, LLDP, other ethertypes)",
    "ipv6": "IPv6 (not supported yet)",
    "ip_fragment": "IPv4 fragment",
    "other_protocol": "IPv4 but neither TCP nor UDP (ICMP, ...)",
    "malformed": "malformed IPv4/TCP/UDP header",
    "snaplen_truncated": "cut short by the capture's snap length",
    "not_vs_protocol": "TCP/UDP flow of the protocol the VS does not serve",
    "not_selected": "flow not for the VS (server port / --match)",
    "mid_flow": "TCP flow seen mid-way (its SYN is not in the capture)",
    "client_address_unusable": "client address that cannot sit behind the router",
}

Decoded = tuple[bytes | None, str | None]


def _ipv4(packet: bytes) -> Decoded:
    """Validate an IPv4 packet at the start of ``packet``; return it trimmed to its total length."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        if packet and packet[0] >> 4 == 6:
            return None, "ipv6"
        return None, "malformed"
    ihl = (packet[0] & 0x0F) * 4
    total = _U16.unpack_from(packet, 2)[0]
    if ihl < 20 or total < ihl:
        return None, "malformed"
    if len(packet) < total:
        return None, "snaplen_truncated"
    if _U16.unpack_from(packet, 6)[0] & 0x3FFF:
        return None, "ip_fragment"
    proto = packet[IPV4_PROTO]
    if proto == frames.PROTO_TCP:
        if total < ihl + 20 or (packet[ihl + 12] >> 4) * 4 < 20 or total < ihl + (packet[ihl + 12] >> 4) * 4:
            return None, "malformed"
    elif proto == frames.PROTO_UDP:
        if total < ihl + 8:
            return None, "malformed"
    else:
        return None, "other_protocol"
    return (packet if len(packet) == total else packet[:total]), None


def _by_ethertype(data: bytes, offset: int, kind: int) -> Decoded:
    # Any depth of VLAN tags (802.1Q, QinQ): the tag is 4 bytes, the inner ethertype its last two.
    while kind in VLAN_TPIDS:
        if len(data) < offset + 4:
            return None, "malformed"
        kind = _U16.unpack_from(data, offset + 2)[0]
        offset += 4
    if kind == frames.ETHERTYPE_IPV4:
        return _ipv4(data[offset:])
    if kind == ETHERTYPE_IPV6:
        return None, "ipv6"
    return None, "not_ip"


def _ethernet(data: bytes) -> Decoded:
    if len(data) < 14:
        return None, "malformed"
    return _by_ethertype(data, 14, _U16.unpack_from(data, 12)[0])


def _sll(data: bytes) -> Decoded:
    # SLL: packet type, ARPHRD type, address length, 8 address bytes, protocol (16 bytes).
    if len(data) < 16:
        return None, "malformed"
    return _by_ethertype(data, 16, _U16.unpack_from(data, 14)[0])


def _sll2(data: bytes) -> Decoded:
    # SLL2: protocol first, then reserved, ifindex, ARPHRD, packet type, address (20 bytes).
    if len(data) < 20:
        return None, "malformed"
    return _by_ethertype(data, 20, _U16.unpack_from(data, 0)[0])


def _raw(data: bytes) -> Decoded:
    return _ipv4(data)


def _null(data: bytes) -> Decoded:
    # BSD loopback: a 4-byte address family in the writer's byte order; AF_INET is 2 everywhere.
    if len(data) < 4:
        return None, "malformed"
    family = struct.unpack_from("<I", data)[0]
    if family > 0xFFFF:
        family = struct.unpack_from(">I", data)[0]
    if family == 2:
        return _ipv4(data[4:])
    return (None, "ipv6") if family in (10, 24, 28, 30) else (None, "not_ip")


_DECODERS: dict[int, Callable[[bytes], Decoded]] = {
    cr.LINKTYPE_ETHERNET: _ethernet, cr.LINKTYPE_LINUX_SLL: _sll, cr.LINKTYPE_LINUX_SLL2: _sll2,
    cr.LINKTYPE_RAW: _raw, cr.LINKTYPE_IPV4: _raw, LINKTYPE_NULL: _null, LINKTYPE_LOOP: _null,
    cr.LINKTYPE_IPV6: lambda data: (None, "ipv6"),
}
LINKTYPE_NAMES = {cr.LINKTYPE_ETHERNET: "Ethernet", cr.LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
                  cr.LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)", cr.LINKTYPE_RAW: "raw IP",
                  cr.LINKTYPE_IPV4: "raw IPv4", cr.LINKTYPE_IPV6: "raw IPv6",
                  LINKTYPE_NULL: "BSD loopback", LINKTYPE_LOOP: "OpenBSD loopback"}


def decoder_for(linktype: int) -> Callable[[bytes], Decoded] | None:
    return _DECODERS.get(linktype)


def supported_linktypes() -> str:
    return ", ".join(f"{LINKTYPE_NAMES[t]} ({t})" for t in sorted(_DECODERS))


def fix_checksums(packet: bytes) -> bytes:
    """Return ``packet`` with its IPv4 and TCP/UDP checksums recomputed (captures taken on a
    sending host carry unfinished checksums when the NIC offloads them, as tcprewrite -C fixes)."""
    buf = bytearray(packet)
    ihl = (buf[0] & 0x0F) * 4
    buf[IPV4_CHECKSUM] = b"\x00\x00"
    buf[IPV4_CHECKSUM] = _U16.pack(frames.checksum(bytes(buf[:ihl])))
    proto = buf[IPV4_PROTO]
    offset = ihl + (16 if proto == frames.PROTO_TCP else 6)
    buf[offset:offset + 2] = b"\x00\x00"
    buf[offset:offset + 2] = _U16.pack(transport_checksum(bytes(buf[IPV4_SRC]), bytes(buf[IPV4_DST]), proto,
                                                          bytes(buf[ihl:])))
    return bytes(buf)


# -- options and up-front checks ------------------------------------------------------

class ReplayError(Exception):
    """Bad replay input (not a capture, unsupported link type, bad option): one line for the user."""


@dataclass
class ReplayOptions:
    speed: float = 1.0
    topspeed: bool = False
    loop: int = 1
    limit: int | None = None
    allow_truncated: bool = False
    fix_checksums: bool = False
    port_map: tuple[int, ...] = ()
    matches: tuple = ()


def check_capture(path) -> None:
    """Fail early, with one line, on a file that is not a capture or has an unsupported link type."""
    try:
        for record in cr.open_capture(path):
            if decoder_for(record.linktype) is None:
                raise ReplayError(_linktype_message(path, record))
            return
    except cr.CaptureError as error:
        # A truncated record is found after the whole ones before it, which replay first (the
        # run then fails naming it); anything else wrong with the file is refused up front.
        if "truncated" not in str(error) or error.frame_number < 1:
            raise ReplayError(str(error)) from None
    except OSError as error:
        raise ReplayError(f"{path}: cannot read: {error.strerror or error}") from None


def _linktype_message(path, record) -> str:
    return (f"{os.path.basename(os.fspath(path))}: frame {record.number} at byte {record.offset}: unsupported "
            f"link type {record.linktype} (supported: {supported_linktypes()})")


# -- which flows are the VS's --------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """One side of a ``--match``: an address or network and an optional port."""
    network: netaddr.IPNetwork | None
    port: int | None

    def matches(self, ip: bytes, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        return self.network is None or int.from_bytes(ip, "big") in self._range

    @property
    def _range(self) -> range:
        return range(self.network.first, self.network.last + 1)


def parse_endpoint(text: str, what: str) -> Endpoint:
    """``ADDR[/LEN][:PORT]``, ``*:PORT`` or ``PORT`` -> Endpoint; ValueError with a one-line reason."""
    address, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if text.isdigit():
        address, port_text = "*", text
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{what}: bad port '{port_text}' in '{text}'")
        port = int(port_text)
    network = None
    if address not in ("", "*"):
        try:
            network = netaddr.IPNetwork(address)
        except (netaddr.AddrFormatError, ValueError):
            raise ValueError(f"{what}: bad address '{address}' in '{text}' (want ADDR[/LEN][:PORT])") from None
        if network.version != 4:
            raise ValueError(f"{what}: only IPv4 is replayed, got '{address}'")
    return Endpoint(network, port)


def parse_match(text: str) -> tuple[Endpoint | None, Endpoint | None]:
    """``client=SPEC,server=SPEC`` (either part optional) -> (client, server)."""
    client = server = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, sep, spec = part.partition("=")
        if not sep or side not in ("client", "server"):
            raise ValueError(f"--match: expected client=ADDR[/LEN][:PORT] and/or server=..., got '{part}'")
        endpoint = parse_endpoint(spec, f"--match {side}")
        if side == "client":
            client = endpoint
        else:
            server = endpoint
    if client is None and server is None:
        raise ValueError(f"--match: empty selection '{text}'")
    return client, server


def parse_port_map(text: str, vs_port: int) -> int:
    """``FROM[:TO]`` -> FROM; TO, when given, must be the VS port (the only port the VS listens on)."""
    source, _, target = text.partition(":")
    for value in (source, target or str(vs_port)):
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ValueError(f"--port-map: bad port '{value}' in '{text}' (want FROM[:TO])")
    if int(target or vs_port) != vs_port:
        raise ValueError(f"--port-map: '{text}' maps to port {target}, but the VS listens on {vs_port}")
    return int(source)


@dataclass
class Selection:
    vs_proto: int
    vs_port: int
    server_ports: set[int] = field(default_factory=set)
    matches: list[tuple[Endpoint | None, Endpoint | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server_ports.add(self.vs_port)

    def could_be_server_port(self, port: int) -> bool:
        return bool(self.matches) or port in self.server_ports

    def verdict(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> str | None:
        """None when the flow opened by ``client`` toward ``server`` is replayed, else the skip reason."""
        if self.matches:
            chosen = any((c is None or c.matches(client, cport)) and (s is None or s.matches(server, sport))
                         for c, s in self.matches)
        else:
            chosen = sport in self.server_ports
        if not chosen:
            return "not_selected"
        return None if proto == self.vs_proto else "not_vs_protocol"


def client_address_problem(ip: bytes, frontend: netaddr.IPNetwork, reserved: set[bytes]) -> bool:
    """True for a client address the emulated router cannot route to the clients side."""
    value = int.from_bytes(ip, "big")
    first = ip[0]
    return (frontend.first <= value <= frontend.last or ip in reserved or first in (0, 127)
            or first >= 224)
