"""
Neighbor Discovery for IPv6 over Ethernet (RFC 4861): solicitations, advertisements, parsing.

IPv6's ARP.  Built with ``struct``: an NS or NA with one link-layer address
option is 86 fixed bytes.  ``parse_nd`` validates as RFC 4861 sections
7.1.1 and 7.1.2 require (hop limit 255, so the message cannot have come
through a router; valid checksum; code 0; a unicast target; options of
non-zero length; an unspecified source only toward a solicited-node group
and without a source link-layer option; no Solicited flag toward a
multicast destination) and raises ``Malformed`` otherwise.

What the nodes do with it (the host behaviour lives in ``nodes``):

- **Resolving** a next hop without a neighbor entry: queue the frame, send
  ``neighbor_solicitation`` (to the target's solicited-node group, which
  ``solicited_node`` and ``multicast_mac`` spell, carrying the sender's MAC),
  retry as for ARP; an NA for the target fills the entry and flushes the
  queue.
- **Answering**: a node receives frames to its own MAC, broadcast, and the
  multicast MACs of the groups it is in (``multicast_mac(solicited_node(a))``
  for each of its addresses ``a``, and ``ALL_NODES_MAC``).  For an NS whose
  target is one of its addresses it learns the sender from the NS's source
  link-layer option (when the source is specified) and replies with
  ``advertisement_for`` (Solicited set, Override set, Router set only on a
  router).  An NS for any other target is ignored.
- **The VIP**: only the VS's primary SE answers NS for the VIP6, exactly as
  only it answers ARP for the IPv4 VIP: Router clear, Solicited set,
  Override set (the VIP is the SE's own address, not a proxied one).  On
  becoming primary (placement, migration, failover) it sends
  ``unsolicited_advertisement`` (to all-nodes ff02::1; Solicited clear,
  Override set, so every cache that has the old primary's MAC takes the new
  one: RFC 4861 section 7.2.6), as it sends gratuitous ARP for IPv4.
  Secondaries never answer for the VIP6.
- **Learning from an NA**: Override set replaces a cached MAC; Override
  clear only fills an entry that has none (RFC 4861 section 7.2.5,
  simplified: the emulator keeps no INCOMPLETE/STALE states).
- No Duplicate Address Detection: the scenario assigns every address once
  and checks it, so the emulator has no duplicates to detect.  A DAD probe
  (unspecified source) from outside still parses, and the answer goes to
  all-nodes as RFC 4861 section 7.2.4 says.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .frames import Malformed
from .headers import ETH_LEN, PROTO_ICMPV6
from .icmpv6 import NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION, icmpv6_checksum_ok, icmpv6_frame
from .ipv6 import FlowView6, ipv6_bytes, is_multicast

#: RFC 4861 section 7.1: ND messages are sent with hop limit 255 and accepted with nothing else.
ND_HOP_LIMIT = 255
UNSPECIFIED = bytes(16)
ALL_NODES = ipv6_bytes("ff02::1")
ALL_ROUTERS = ipv6_bytes("ff02::2")
_SOLICITED_NODE_PREFIX = ipv6_bytes("ff02::1:ff00:0")[:13]
# NA flags (the top three bits of the word after the checksum).
FLAG_ROUTER, FLAG_SOLICITED, FLAG_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
# Option types (RFC 4861 section 4.6).
OPTION_SOURCE_LINK_ADDRESS, OPTION_TARGET_LINK_ADDRESS = 1, 2
ND_HEADER = 24  # type, code, checksum, flags or reserved, target address

_BODY = struct.Struct("!I16s")  # after type, code and checksum: flags or reserved, target
_LINK_OPTION = struct.Struct("!BB6s")  # type, length in units of 8 bytes (1 for Ethernet), MAC
_U32 = struct.Struct("!I")


def solicited_node(address: bytes) -> bytes:
    """The solicited-node multicast group of ``address``: ff02::1:ff plus its last 24 bits (RFC 4291 2.7.1)."""
    return _SOLICITED_NODE_PREFIX + address[13:]


def multicast_mac(group: bytes) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 and the group's last 32 bits (RFC 2464 section 7)."""
    return b"\x33\x33" + group[12:]


ALL_NODES_MAC = multicast_mac(ALL_NODES)


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One parsed NS or NA: what a node needs to answer it or learn from it."""

    kind: int  # icmpv6.NEIGHBOR_SOLICITATION or NEIGHBOR_ADVERTISEMENT
    src: bytes  # IPv6 source (all zeros: a DAD probe)
    dst: bytes
    target: bytes
    link_address: bytes | None  # the source (NS) or target (NA) link-layer address option, if any
    eth_src: bytes
    router: bool = False
    solicited: bool = False
    override: bool = False

    @property
    def is_solicitation(self) -> bool:
        return self.kind == NEIGHBOR_SOLICITATION


# -- building ----------------------------------------------------------------

def _nd_frame(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, kind: int, word: int, target: bytes,
              option: int | None) -> bytes:
    body = _BODY.pack(word, target)
    if option is not None:
        body += _LINK_OPTION.pack(option, 1, eth_src)
    return icmpv6_frame(eth_dst, eth_src, src, dst, kind, 0, body, ND_HOP_LIMIT)


def neighbor_solicitation(eth_src: bytes, src: bytes, target: bytes, dst: bytes | None = None,
                          eth_dst: bytes | None = None) -> bytes:
    """An NS from ``src`` asking for ``target``'s MAC, carrying ``eth_src`` as source link-layer option.

    Multicast to the target's solicited-node group unless ``dst`` (and
    ``eth_dst``) say otherwise, as a reachability probe to a known neighbor
    does.  From the unspecified address (a DAD probe) it carries no option.
    """
    dst = solicited_node(target) if dst is None else dst
    eth_dst = multicast_mac(dst) if eth_dst is None else eth_dst
    option = None if src == UNSPECIFIED else OPTION_SOURCE_LINK_ADDRESS
    return _nd_frame(eth_dst, eth_src, src, dst, NEIGHBOR_SOLICITATION, 0, target, option)


def neighbor_advertisement(eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, target: bytes,
                           router: bool = False, solicited: bool = True, override: bool = True) -> bytes:
    """An NA saying ``target`` is at ``eth_src`` (the target link-layer option), with the R, S and O flags."""
    flags = (FLAG_ROUTER if router else 0) | (FLAG_SOLICITED if solicited else 0) | (FLAG_OVERRIDE if override else 0)
    return _nd_frame(eth_dst, eth_src, src, dst, NEIGHBOR_ADVERTISEMENT, flags, target, OPTION_TARGET_LINK_ADDRESS)


def unsolicited_advertisement(mac: bytes, address: bytes, router: bool = False) -> bytes:
    """The NA announcing ``address`` at ``mac`` to all nodes (Solicited clear, Override set): IPv6's gratuitous ARP."""
    return neighbor_advertisement(ALL_NODES_MAC, mac, address, ALL_NODES, address, router=router, solicited=False,
                                  override=True)


def advertisement_for(solicitation: Neighbor, mac: bytes, router: bool = False, override: bool = True) -> bytes:
    """The NA answering ``solicitation`` (an NS for one of our addresses) with ``mac`` (RFC 4861 section 7.2.4).

    To the solicitor's address and its link-layer option (or the frame's
    source MAC); to all-nodes with Solicited clear when the NS came from the
    unspecified address.
    """
    target = solicitation.target
    if solicitation.src == UNSPECIFIED:
        return neighbor_advertisement(ALL_NODES_MAC, mac, target, ALL_NODES, target, router, False, override)
    eth_dst = solicitation.link_address or solicitation.eth_src
    return neighbor_advertisement(eth_dst, mac, target, solicitation.src, target, router, True, override)


# -- parsing -----------------------------------------------------------------

def parse_nd(frame: bytes, view: FlowView6) -> Neighbor | None:
    """The NS or NA in ``frame`` (``view`` is its parse), None for any other frame; ``Malformed`` if invalid."""
    if view.version != 6 or view.proto != PROTO_ICMPV6 or view.fragment:
        return None
    kind = frame[view.l4]
    if kind not in (NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT):
        return None
    name = "neighbor solicitation" if kind == NEIGHBOR_SOLICITATION else "neighbor advertisement"
    _check_header(frame, view, name)
    word, target = _BODY.unpack_from(frame, view.l4 + 4)
    if is_multicast(target):
        raise Malformed("nd_target", f"{name} for a multicast target")
    link_address = _link_address(frame, view, name, OPTION_SOURCE_LINK_ADDRESS if kind == NEIGHBOR_SOLICITATION
                                 else OPTION_TARGET_LINK_ADDRESS)
    neighbor = Neighbor(kind, view.src, view.dst, target, link_address, frame[6:12], bool(word & FLAG_ROUTER),
                        bool(word & FLAG_SOLICITED), bool(word & FLAG_OVERRIDE))
    if kind == NEIGHBOR_SOLICITATION and view.src == UNSPECIFIED:
        if view.dst != solicited_node(target) or link_address is not None:
            raise Malformed("nd_unspecified_source", "neighbor solicitation from the unspecified address must go "
                                                     "to the target's solicited-node group without a link option")
    if kind == NEIGHBOR_ADVERTISEMENT and neighbor.solicited and is_multicast(view.dst):
        raise Malformed("nd_solicited_multicast", "solicited neighbor advertisement to a multicast address")
    return neighbor


def _check_header(frame: bytes, view: FlowView6, name: str) -> None:
    if view.ttl != ND_HOP_LIMIT:
        raise Malformed("nd_hop_limit", f"{name} with hop limit {view.ttl} (must be 255: it may not cross a router)")
    if frame[view.l4 + 1]:
        raise Malformed("nd_code", f"{name} with code {frame[view.l4 + 1]}")
    if view.end - view.l4 < ND_HEADER:
        raise Malformed("nd_truncated", f"{name} of {view.end - view.l4} bytes (at least {ND_HEADER})")
    if not icmpv6_checksum_ok(frame, view):
        raise Malformed("icmpv6_checksum", f"{name} with a bad checksum")


def _link_address(frame: bytes, view: FlowView6, name: str, wanted: int) -> bytes | None:
    """The MAC in the one link-layer option of type ``wanted``; other options are skipped (RFC 4861 4.6)."""
    found, at, end = None, view.l4 + ND_HEADER, view.end
    while at < end:  # every option is at least 8 bytes long, so this runs at most (end - at) / 8 times
        if at + 2 > end or not frame[at + 1] or at + frame[at + 1] * 8 > end:
            raise Malformed("nd_option_length", f"{name} option at byte {at - view.l4} has a bad length")
        kind, units = frame[at], frame[at + 1]
        if kind == wanted:
            if units != 1 or found is not None:
                raise Malformed("nd_link_option", f"{name} with a bad or repeated link-layer address option")
            found = frame[at + 2:at + 8]
        at += units * 8
    return found


assert ETH_LEN + 40 + ND_HEADER + _LINK_OPTION.size == 86
