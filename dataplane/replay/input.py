"""
Replay input: link-layer decoding, the IPv4 packet inside a frame, and the skip reasons.

This module owns the questions replay asks of every recorded frame before
any emulation happens:

1. *What IP packet is inside?*  ``decoder_for(linktype)`` returns a
   function that strips the link layer (Ethernet with any number of
   802.1Q/802.1ad tags, Linux cooked SLL and SLL2, raw IP, raw IPv6,
   BSD/OpenBSD loopback) and returns the bytes from the IPv4 or IPv6 header
   on, or ``None`` and the reason it cannot be replayed (another
   ethertype...).  An IPv6 packet goes on to ``input6``.
   ``ipv4_packet`` then checks the header and cuts the packet to its total
   length, or, for a frame cut by the capture's snap length, fills the
   missing payload with zeros (the headers must be whole).  Reasons are
   the keys of ``summary.json``'s ``skipped`` (``SKIP_REASONS``).
2. *Can its client sit behind the router?*  ``client_address_problem``.
   Which flows are replayed, and by which virtual service, is ``services``'
   question, asked once per flow.

It also holds the up-front check that refuses, in one line, a file that is
not a capture, has no interface replay can decode, or lacks the interface
``--interface`` names.  Everything here is pure and per packet, so it is
tested without a network.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable

import netaddr

from ..wire import capture_reader as cr
from ..wire import frames
from ..wire.headers import IPV4_PROTO
from .fragments import FRAGMENT_REASONS
from .input6 import IPV6_REASONS
from .options import ReplayError
from .services import SERVICE_REASONS

_U16 = struct.Struct("!H")
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_IPV6 = 0x86DD
LINKTYPE_NULL, LINKTYPE_LOOP = 0, 108

#: Why an input packet was not replayed (the keys of ``skipped``), with the text the CLI prints.
SKIP_REASONS = {
    "not_ip": "not IP (ARP, LLDP, other ethertypes)",
    "other_protocol": "IPv4 but neither TCP nor UDP (ICMP, ...)",
    **IPV6_REASONS,
    "malformed": "malformed IPv4/IPv6/TCP/UDP header",
    "snaplen_headers": "cut by the capture's snap length inside its IP/TCP/UDP headers",
    "snaplen_truncated": "cut by the capture's snap length (--skip-truncated-frames)",
    "unsupported_link_type": "on an interface whose link type replay does not decode",
    "other_interface": "on another interface than --interface",
    **FRAGMENT_REASONS,
    "not_vs_protocol": "TCP/UDP flow of the protocol the VS does not serve",
    "not_selected": "flow not for a virtual service (server port / --port-map / --match)",
    **SERVICE_REASONS,
    "ipv4_no_vip": "IPv4 flow, but the virtual service has no IPv4 vip (only a vip6)",
    "mid_flow": "TCP flow seen mid-way (its SYN is not in the capture)",
    "client_address_unusable": "client address that cannot sit behind the router",
}

Decoded = tuple[bytes | None, str | None]


def ipv4_packet(raw: bytes, cut: bool, skip_cut: bool = False) -> tuple[bytes | None, str | None, int]:
    """Check the IPv4 packet at the start of ``raw``; return (packet, skip reason, bytes filled).

    The packet is cut to its total length (link-layer padding goes).  When the frame was cut by
    the snap length (``cut``) and misses payload, the payload is filled with zeros to the total
    length, unless ``skip_cut``; its headers must be whole either way.  Fragments come back as
    they are (the caller reassembles them); their transport header is checked once whole.
    """
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None, ("snaplen_headers" if cut and raw and raw[0] >> 4 == 4 else "malformed"), 0
    ihl = (raw[0] & 0x0F) * 4
    total = _U16.unpack_from(raw, 2)[0]
    if ihl < 20 or total < ihl:
        return None, "malformed", 0
    fragment = _U16.unpack_from(raw, 6)[0] & 0x3FFF
    proto = raw[IPV4_PROTO]
    if proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
        return None, "other_protocol", 0
    filled = 0
    if len(raw) < total:
        if not cut:
            return None, "malformed", 0     # a total length past the frame that the capture did not cut
        if skip_cut:
            return None, "snaplen_truncated", 0
        headers = ihl if fragment & 0x1FFF else _headers_length(raw, ihl, proto)
        if headers is None or len(raw) < headers:
            return None, "snaplen_headers", 0
        filled = total - len(raw)
        packet = raw + bytes(filled)
    else:
        packet = raw if len(raw) == total else raw[:total]
    if not fragment:
        # transport_problem, inlined for the common TCP packet.
        if proto == frames.PROTO_TCP:
            if total < ihl + 20 or not 20 <= (packet[ihl + 12] >> 4) * 4 <= total - ihl:
                return None, "malformed", 0
        elif total < ihl + 8:
            return None, "malformed", 0
    return packet, None, filled


def _headers_length(raw: bytes, ihl: int, proto: int) -> int | None:
    if proto == frames.PROTO_UDP:
        return ihl + 8
    if len(raw) < ihl + 13:
        return None
    return ihl + max((raw[ihl + 12] >> 4) * 4, 20)


def transport_problem(packet: bytes) -> str | None:
    """"malformed" when the TCP/UDP header of a whole ``packet`` does not fit in it, else None."""
    ihl = (packet[0] & 0x0F) * 4
    total = len(packet)
    if packet[IPV4_PROTO] == frames.PROTO_TCP:
        if total < ihl + 20 or (packet[ihl + 12] >> 4) * 4 < 20 or total < ihl + (packet[ihl + 12] >> 4) * 4:
            return "malformed"
    elif total < ihl + 8:
        return "malformed"
    return None


def _by_ethertype(data: bytes, offset: int, kind: int) -> Decoded:
    # Any depth of VLAN tags (802.1Q, QinQ): the tag is 4 bytes, the inner ethertype its last two.
    while kind in VLAN_TPIDS:
        if len(data) < offset + 4:
            return None, "malformed"
        kind = _U16.unpack_from(data, offset + 2)[0]
        offset += 4
    if kind == frames.ETHERTYPE_IPV4 or kind == ETHERTYPE_IPV6:
        return data[offset:], None
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
    return data, None


def _null(data: bytes) -> Decoded:
    # BSD loopback: a 4-byte address family in the writer's byte order; AF_INET is 2 everywhere, AF_INET6 is
    # 10 (Linux), 24 (OpenBSD, NetBSD), 28 (FreeBSD) or 30 (macOS).
    if len(data) < 4:
        return None, "malformed"
    family = struct.unpack_from("<I", data)[0]
    if family > 0xFFFF:
        family = struct.unpack_from(">I", data)[0]
    if family == 2 or family in (10, 24, 28, 30):
        return data[4:], None
    return None, "not_ip"


#: Link type -> decoder (``decoder_for``); the replayer reads it directly on its per-frame path.
DECODERS: dict[int, Callable[[bytes], Decoded]] = {
    cr.LINKTYPE_ETHERNET: _ethernet, cr.LINKTYPE_LINUX_SLL: _sll, cr.LINKTYPE_LINUX_SLL2: _sll2,
    cr.LINKTYPE_RAW: _raw, cr.LINKTYPE_IPV4: _raw, LINKTYPE_NULL: _null, LINKTYPE_LOOP: _null,
    cr.LINKTYPE_IPV6: _raw,
}
LINKTYPE_NAMES = {cr.LINKTYPE_ETHERNET: "Ethernet", cr.LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
                  cr.LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)", cr.LINKTYPE_RAW: "raw IP",
                  cr.LINKTYPE_IPV4: "raw IPv4", cr.LINKTYPE_IPV6: "raw IPv6",
                  LINKTYPE_NULL: "BSD loopback", LINKTYPE_LOOP: "OpenBSD loopback"}


def decoder_for(linktype: int) -> Callable[[bytes], Decoded] | None:
    return DECODERS.get(linktype)


def supported_linktypes() -> str:
    return ", ".join(f"{LINKTYPE_NAMES[t]} ({t})" for t in sorted(DECODERS))


# -- up-front checks ----------------------------------------------------------------

def check_capture(path, interface: str | None = None) -> None:
    """Fail early, with one line, on a file that is not a capture, has no interface of a link type
    replay decodes, or lacks the interface ``--interface`` names (among those defined before the
    first frame, which is where capture tools write them)."""
    seen: list[tuple[int, int, int, str | None]] = []
    name = os.path.basename(os.fspath(path))
    try:
        records = cr.open_capture(path, on_interface=lambda *defined: seen.append(defined))
        next(records, None)
        records.close()
    except cr.CaptureError as error:
        # A truncated record is found after the whole ones before it, which replay first (the
        # run then fails naming it); anything else wrong with the file is refused up front.
        if "truncated" not in str(error) or error.frame_number < 1:
            raise ReplayError(str(error)) from None
    except OSError as error:
        raise ReplayError(f"{name}: cannot read: {error.strerror or error}") from None
    if interface is not None:
        chosen = [i for i in seen if InterfaceChoice(interface).takes(i[1], i[3])]
        if not chosen:
            raise ReplayError(f"{name}: --interface {interface}: no such interface (the capture has "
                              f"{_interface_list(seen) or 'none'})")
        seen = chosen
    if seen and not any(decoder_for(linktype) for _, _, linktype, _ in seen):
        kinds = ", ".join(sorted({str(linktype) for _, _, linktype, _ in seen}))
        raise ReplayError(f"{name}: unsupported link type {kinds} (supported: {supported_linktypes()})")


def _interface_list(seen) -> str:
    return ", ".join(f"{ident} '{label or '-'}' (link type {linktype})" for _, ident, linktype, label in seen)


@dataclass(frozen=True)
class InterfaceChoice:
    """``--interface N|NAME``: an interface id (pcapng, per section) or name; None takes every interface."""

    wanted: str | None

    def takes(self, interface: int, name: str | None) -> bool:
        wanted = self.wanted
        if wanted is None:
            return True
        return interface == int(wanted) if wanted.isdigit() else name == wanted

    def skip_reason(self, record: cr.Record) -> str | None:
        """Why ``record`` is not replayed on account of its interface, or None."""
        if self.wanted is not None and not self.takes(record.interface, record.interface_name):
            return "other_interface"
        return None if record.linktype in DECODERS else "unsupported_link_type"


def client_address_problem(ip: bytes, frontend: netaddr.IPNetwork, reserved: set[bytes]) -> bool:
    """True for a client address the emulated router cannot route to the clients side."""
    value = int.from_bytes(ip, "big")
    first = ip[0]
    return (frontend.first <= value <= frontend.last or ip in reserved or first in (0, 127)
            or first >= 224)
