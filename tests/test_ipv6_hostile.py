"""Hostile IPv6 frames: every defect is ``Malformed`` with a reason, never another exception, never a long walk.

The explicit cases pin the reasons the nodes will count drops by; the
property test mutates valid frames of every kind the wire layer builds
(TCP, UDP, ICMPv6 echo and errors, NS, NA, extension-header chains,
fragments) and runs everything that reads IPv6 bytes over the result: the
parse, the ND, echo, error and fragment parsers, the defect sentence, our
own capture checks and the masks' field table.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.testing.check import check_frame
from dataplane.wire import icmpv6, ipv6, nd
from dataplane.wire.fields import layout
from dataplane.wire.frames import Malformed, vxlan_frame
from dataplane.wire.headers import ACK, PSH
from dataplane.wire.validate import defect
from test_ipv6_wire import CLIENT, CLIENT_MAC, SE_MAC, VIP, behind_extension_headers, syn

UDP = ipv6.udp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40001, 9, b"query")
DATA = ipv6.tcp6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, 40000, 80, 1, 1, PSH | ACK, b"GET / HTTP/1.1\r\n\r\n")
NS = nd.neighbor_solicitation(CLIENT_MAC, CLIENT, VIP)
NA = nd.neighbor_advertisement(CLIENT_MAC, SE_MAC, VIP, CLIENT, VIP)
ECHO = icmpv6.echo6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, False, 1, 1, b"ping")
ERROR = icmpv6.time_exceeded(DATA, SE_MAC, VIP)


def chain(headers: list[tuple[int, bytes]], upper: int, payload: bytes, first: int | None = None) -> bytes:
    """An IPv6 frame with extension headers given as (type, body after next-header), then ``payload``."""
    types = [kind for kind, _ in headers] + [upper]
    body = b"".join(bytes((types[i + 1],)) + rest for i, (_, rest) in enumerate(headers)) + payload
    return ipv6.ipv6_frame(SE_MAC, CLIENT_MAC, CLIENT, VIP, types[0] if first is None else first, body)


PAD = bytes((0, 1, 4, 0, 0, 0, 0))  # length 0 (8 bytes in all), a PadN option
TCP_SEGMENT = syn()[54:]
FRAGMENT = chain([(44, bytes((0, 0, 9, 0, 0, 0, 7)))], 6, TCP_SEGMENT)  # offset 1 (8 bytes), more fragments
SAMPLES = [syn(), DATA, UDP, NS, NA, ECHO, ERROR, FRAGMENT, behind_extension_headers(DATA),
           chain([(0, PAD), (43, bytes((0, 0, 0)) + bytes(4)), (60, PAD)], 17, UDP[54:])]


def reason_of(frame: bytes) -> str:
    with pytest.raises(Malformed) as error:
        ipv6.FlowView6(frame)
    assert str(error.value)
    return error.value.reason


# -- the reasons ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", SAMPLES, ids=["syn", "data", "udp", "ns", "na", "echo", "error", "fragment",
                                                "extensions", "routing"])
def test_every_truncation_of_a_valid_frame_is_malformed(frame):
    ipv6.FlowView6(frame)
    for size in range(len(frame)):
        reason = reason_of(frame[:size])
        assert reason == "ipv6_truncated" if size < 54 else reason == "ipv6_payload_length"


@pytest.mark.parametrize("frame, reason", [
    (syn()[:12] + b"\x08\x00" + syn()[14:], "ipv6_version"),
    (syn()[:14] + b"\x40" + syn()[15:], "ipv6_version"),
    (syn()[:18] + b"\x00\x00" + b"\x00" + syn()[21:], "ipv6_jumbogram"),
    (syn()[:18] + b"\xff\xff" + syn()[20:], "ipv6_payload_length"),
    (syn()[:18] + b"\x00\x10" + syn()[20:], "tcp_truncated"),
    (UDP[:18] + b"\x00\x04" + UDP[20:], "udp_truncated"),
    (DATA[:54 + 12] + b"\xf0" + DATA[54 + 13:], "tcp_header_length"),
    (UDP[:54 + 4] + b"\x00\x40" + UDP[54 + 6:], "udp_length"),
    (UDP[:54 + 6] + b"\x00\x00" + UDP[54 + 8:], "udp_zero_checksum"),
    (ECHO[:18] + b"\x00\x04" + ECHO[20:58], "icmpv6_truncated"),
    (chain([(60, PAD)] * (ipv6.MAX_EXTENSION_HEADERS + 1), 6, TCP_SEGMENT), "ipv6_extension_chain"),
    (chain([(60, PAD), (0, PAD)], 6, TCP_SEGMENT), "ipv6_hop_by_hop_not_first"),
    (chain([(60, bytes((200,)) + bytes(5))], 6, TCP_SEGMENT), "ipv6_extension_length"),
    (chain([(43, bytes((0, 0, 1)) + bytes(4))], 6, TCP_SEGMENT), "ipv6_routing_header"),
    (chain([(60, PAD)], 6, b""), "tcp_truncated"),
    (chain([], 60, b"\x06\x00\x01"), "ipv6_extension_truncated"),
], ids=["ethertype", "version", "jumbogram", "payload-length", "tcp-cut", "udp-cut", "tcp-header-length",
        "udp-length", "udp-zero-checksum", "icmpv6-cut", "nine-headers", "hop-by-hop-second", "header-too-long",
        "segments-left", "nothing-after-the-chain", "header-cut"])
def test_hostile_ipv6_frames_are_malformed_with_their_reason(frame, reason):
    assert reason_of(frame) == reason
    assert defect(frame) is not None


def test_a_chain_that_names_itself_again_and_again_stops_at_the_bound():
    """Destination Options pointing at Destination Options, as far as the payload length allows: bounded."""
    looping = chain([(60, PAD)] * 1000, 60, b"")
    assert reason_of(looping) == "ipv6_extension_chain"
    assert len(layout(looping).fields) < 40 and check_frame(looping)


def test_the_longest_accepted_chain_parses():
    view = ipv6.FlowView6(chain([(60, PAD)] * ipv6.MAX_EXTENSION_HEADERS, 6, TCP_SEGMENT))
    assert (view.proto, view.sport, view.l4) == (6, 40000, 54 + 8 * ipv6.MAX_EXTENSION_HEADERS)


def test_neighbor_discovery_with_hop_limit_254_is_refused_everywhere():
    hop_254 = NS[:21] + b"\xfe" + NS[22:]
    view = ipv6.FlowView6(hop_254)  # the IPv6 frame itself is fine
    with pytest.raises(Malformed) as error:
        nd.parse_nd(hop_254, view)
    assert error.value.reason == "nd_hop_limit" and "254" in str(error.value)
    assert "hop limit 254" in defect(hop_254)
    tunnelled = vxlan_frame(SE_MAC, CLIENT_MAC, bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2)), 50000, 1550, 1, hop_254)
    assert defect(tunnelled).startswith("inside the tunnel: neighbor solicitation with hop limit 254")


# -- generated frames ------------------------------------------------------------------------------------------------

FIELDS = {  # offset in the frame -> width: the IPv6 header, the first extension header, the transport header
    12: 2, 14: 1, 18: 2, 20: 1, 21: 1, 54: 1, 55: 1, 56: 2, 58: 2, 60: 2, 62: 1, 63: 1, 66: 1, 67: 1, 78: 1, 79: 1,
}


@st.composite
def hostile_ipv6(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for offset, width in draw(st.lists(st.sampled_from(sorted(FIELDS.items())), max_size=4)):
        if offset + width <= len(data):
            data[offset:offset + width] = draw(st.binary(min_size=width, max_size=width))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data + draw(st.binary(max_size=40)))


def read_everything(frame: bytes) -> None:
    """What the nodes and the regression kit run over an IPv6 frame; only ``Malformed`` may escape."""
    defect(frame)
    check_frame(frame)
    layout(frame)
    try:
        view = ipv6.FlowView6(frame)
    except Malformed:
        return
    assert 54 <= view.l4 <= view.end <= len(frame) and 0 <= view.payload_len <= view.end - view.l4
    assert len(view.payload(frame)) == view.payload_len
    icmpv6.parse_icmpv6_echo(frame, view)
    icmpv6.parse_icmpv6_error(frame, view)
    icmpv6.may_send_error(frame, view)
    ipv6.fragment_fields(frame, view)
    if not view.fragment and view.proto in (6, 17):
        rewrite = ipv6.NatRewrite6(view.src, view.sport, view.dst, view.dport, VIP, 1, CLIENT, 2,
                                   hop_decrement=min(view.ttl, 1))  # the router answers hop limit 0 instead
        rewrite.apply(frame, SE_MAC, CLIENT_MAC)
    nd.parse_nd(frame, view)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(frame=hostile_ipv6())
def test_generated_ipv6_frames_raise_nothing_but_malformed(frame):
    try:
        read_everything(frame)
    except Malformed as error:
        assert error.reason and str(error)
