"""
Failure messages for the packet-test verbs: why an expectation did not hold.

This module owns what ``DataplaneNet.expect``, ``expect_none`` and
``expect_no_other`` say when they fail: the expected frame, what was seen at
the place instead, a field-level diff against the nearest frames (or against
the frame inside their VXLAN tunnel, when that is nearer), each frame's
decision comment, and where the capture will be written.  It only renders:
the frames seen and the place are handed in by ``net``.
"""

from __future__ import annotations

from ..clock import NS_PER_S
from ..wire.masks import VXLAN_PORTS, Mask, layout
from .seen import Place, Seen

NEAREST = 3  # like PTF's POLL_MAX_RECENT_PACKETS: enough to see the pattern, short enough to read
LISTED = 10
FIELDS_SHOWN = 8  # a frame of another kind differs everywhere; its first fields say enough


def summarize(frame: bytes) -> str:
    """One-line Scapy dissection, with the VXLAN tunnel's inner frame dissected too."""
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    try:
        packet = Ether(frame)
        packet.summary()
    except Exception:  # Scapy can trip over hostile bytes; a failure message must not
        return f"{len(frame)} bytes that Scapy cannot dissect"
    if UDP in packet and packet[UDP].dport in VXLAN_PORTS:
        fields = layout(frame).by_name()
        if "inner.eth.dst" in fields:
            inner_at = fields["inner.eth.dst"].bit_off // 8
            vni = fields["vxlan.vni"].value(frame)
            packet[UDP].remove_payload()
            return f"{packet.summary()} / VXLAN vni {vni} / {Ether(frame[inner_at:]).summary()}"
    return packet.summary()


def unwanted_at(place: Place, matcher: Mask | None, unwanted: list[Seen], artefact) -> str:
    """Why ``expect_none`` failed: frames (like ``matcher``'s, if given) were seen at ``place``."""
    what = "a frame like" if matcher else "nothing"
    head = f"expected {what} at {place}"
    if matcher:
        head = f"expected no frame like\n    {summarize(matcher.expected)}\nat {place}"
    return f"{head}, but {_count(unwanted)} seen there:\n" + _listing(unwanted) + "\n" + _artefact_note(artefact)


def unmatched(unwanted: list[Seen], artefact) -> str:
    """Why ``expect_no_other`` failed: frames no ``expect`` consumed."""
    return (f"expected no other frames, but {_count(unwanted)} not matched by any "
            f"expect:\n" + _listing(unwanted) + "\n" + _artefact_note(artefact))


def missing(place: Place, matcher: Mask, dropped: bool, seen: list[Seen], now_ns: int, drained: bool,
            artefact) -> str:
    """Why ``expect`` failed: what was expected, what was seen instead, and the nearest frames' diffs."""
    here = [s for s in seen if place.covers(s)]
    kind = "dropped frame" if dropped else "frame"
    lines = [f"expected {kind} at {place}:", f"    {summarize(matcher.expected)}"]
    if matcher.ignored:
        lines.append(f"  don't care: {', '.join(matcher.ignored)}")
    lines.append(_what_was_seen(place, here, now_ns, drained))
    candidates, where_note = (here, "") if here else (seen, " elsewhere")
    own = [s for s in candidates if not s.by_test] or candidates  # the test's own frames are rarely news
    kind_of = stack(matcher.expected)
    alike = [s for s in own if _same_kind(kind_of, s.frame)]  # an ARP frame says nothing about a missing TCP one
    if own and not alike:
        lines.append(f"no {'/'.join(kind_of)} frame was seen{where_note or ' there'} to compare with")
    scored = sorted((_compare(matcher, s) + (s,) for s in alike), key=lambda t: (len(t[0]), t[2].index))
    for rank, (diffs, tunnel_note, s) in enumerate(scored[:NEAREST]):
        lines.extend(_nearest(rank, diffs, tunnel_note, s, dropped, where_note))
    lines.append(_artefact_note(artefact))
    return "\n".join(line for line in lines if line)


def stack(frame: bytes) -> tuple[str, ...]:
    """A frame's protocols, outermost first, in the field table's names: ("eth", "ip", "tcp")."""
    return tuple(dict.fromkeys(_protocol(f.name) for f in layout(frame).fields))


def _protocol(field_name: str) -> str:
    parts = field_name.split(".")
    return ".".join(parts[:2]) if parts[0] == "inner" else parts[0]


def _same_kind(kind: tuple[str, ...], frame: bytes) -> bool:
    """The frame has the expected protocol stack, or carries a frame that has it inside its VXLAN tunnel."""
    have = stack(frame)
    return have == kind or tuple(p[6:] for p in have if p.startswith("inner.")) == kind


def _what_was_seen(place: Place, here: list[Seen], now_ns: int, drained: bool) -> str:
    now = f"{now_ns / NS_PER_S:.9f} s"
    if not here:
        return (f"nothing was seen at {place.text} (virtual time now {now}; "
                f"{'nothing is in flight' if drained else 'frames are still in flight'})")
    matched = sum(s.consumed and not s.by_test for s in here)
    sent = sum(s.by_test for s in here)
    parts = [f"{sent} sent by the test"] * bool(sent) + [f"{matched} matched by earlier expectations"] * bool(matched)
    note = f" ({', '.join(parts)})" if parts else ""
    return f"{_count(here)} seen there by {now}{note}, none matching"


def _nearest(rank: int, diffs: list, tunnel_note: str, s: Seen, dropped: bool, where_note: str) -> list[str]:
    """One near frame: its label and state, how far it is, its comment, dissection and differing fields."""
    title = "nearest" if rank == 0 else "next nearest"
    state = " [sent by the test]" if s.by_test else " [cleared by discard()]" if s.discarded else \
        " [already matched by an earlier expect]" if s.consumed else ""
    if s.dropped != dropped:
        state += " [dropped]" if s.dropped else " [not dropped]"
    if diffs:
        count = f"{len(diffs)} field{'s' if len(diffs) != 1 else ''} differ{'s' if len(diffs) == 1 else ''}"
    elif tunnel_note:
        count, tunnel_note = "it carries the expected frame inside its VXLAN tunnel", ""
    elif s.consumed or s.dropped != dropped or where_note:
        count = "its fields match"
    else:
        count = "only its length differs"
    lines = [f"{title} frame{where_note}: {s.label()}{state}, {count}{tunnel_note}:",
             f"  comment: {s.comment}",
             f"  frame:   {summarize(s.frame)}"]
    lines.extend(f"  {d}" for d in diffs[:FIELDS_SHOWN])
    if len(diffs) > FIELDS_SHOWN:
        lines.append(f"  ... and {len(diffs) - FIELDS_SHOWN} more fields")
    return lines


def _compare(matcher: Mask, s: Seen) -> tuple[list, str]:
    """Diff against the frame, or against the frame inside its VXLAN tunnel if that is nearer."""
    diffs = matcher.differences(s.frame)
    inner = layout(s.frame).by_name().get("inner.eth.dst")
    if inner is not None:
        inside = matcher.differences(s.frame[inner.bit_off // 8:])
        if len(inside) < len(diffs):
            return inside, " (compared with the frame inside its VXLAN tunnel)"
    return diffs, ""


def _count(items: list) -> str:
    return f"{len(items)} frame{'s' if len(items) != 1 else ''}"


def _listing(items: list[Seen]) -> str:
    lines = []
    for s in items[:LISTED]:
        lines.append(f"  {s.label()}: {s.comment}\n      {summarize(s.frame)}")
    if len(items) > LISTED:
        lines.append(f"  ... and {len(items) - LISTED} more")
    return "\n".join(lines)


def _artefact_note(artefact) -> str:
    return f"capture: {artefact} (written when the test ends)" if artefact else ""
