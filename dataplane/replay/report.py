"""
What a replay reports: summary.json's ``replay`` section and each flow's row in replay-flows.csv.

summary.json keeps the network's own accounting (``Network.summary``) and
adds, under ``replay``, what happened to the input: frames read, replayed,
skipped by reason and reassembled; the flows replayed per virtual service
(``flows_by_vs``); the repairs (checksums fixed or kept by
protocol, snap-length cuts filled, fragments); flows by outcome; when the
timeline started and which ``[[events]]`` fell after the last replayed
packet.  The account files hold the same per frame and per flow.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..clock import NS_PER_S, seconds
from ..wire import dual, frames
from .proxied import NOT_SENT_PROXY, WITHHELD

if TYPE_CHECKING:
    from .flow import ReplayFlow
    from .replayer import Replayer

#: Why a frame of a replayed flow was read but never sent (account reasons), in words.
NOT_SENT = {
    "flow_reset": "its flow had been reset by the emulated network",
    "flow_stalled": "its flow stalled: a packet it answers never arrived",
    **NOT_SENT_PROXY,
}
OUTCOMES = ("completed", "open_at_end", "reset", "stalled")


def _at(ns: int | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_S, 9)


def flow_row(flow: "ReplayFlow", outcome: str) -> list:
    """``flow``'s line in replay-flows.csv (``account.FLOW_COLUMNS``)."""
    def counts(side) -> str:
        return f"{side.read}/{side.sent}/{side.arrived}"
    return [flow.number, flow.loop, flow.recorded, dual.endpoint(flow.client_ip, flow.client_port),
            "tcp" if flow.proto == frames.PROTO_TCP else "udp", flow.se or "",
            flow.server.name if flow.server else "", outcome, flow.reset_reason or "",
            counts(flow.client), counts(flow.server_side), flow.first_frame, flow.last_frame, flow.vs]


def count_packets(packets: Counter, flow: "ReplayFlow", outcome: str) -> None:
    """Add a settled flow's packets to the totals: recorded, sent, arrived, and why the rest were not."""
    client, server = flow.client, flow.server_side
    recorded, sent, arrived = client.read + server.read, client.sent + server.sent, client.arrived + server.arrived
    withheld = client.withheld + server.withheld
    packets["recorded"] += recorded
    packets["sent"] += sent
    packets["arrived"] += arrived
    if withheld:
        packets["withheld"] += withheld
    unconnected = flow.unconnected
    if unconnected:
        packets["not_sent_proxy_never_connected"] += unconnected
    if recorded - withheld - unconnected > sent:
        packets["not_sent_" + ("flow_reset" if outcome == "reset" else "stalled")] += \
            recorded - withheld - unconnected - sent
    if sent > arrived:
        packets["lost_in_network"] += sent - arrived


def _proxy(replay: "Replayer") -> dict:
    """What replay into tcp-proxy virtual services translated, withheld or could not follow (``proxied``)."""
    counts = replay.proxy_counts
    return {"flows": counts["flows"], "acks_translated": counts["acks_translated"],
            "withheld": {reason: counts[reason] for reason in WITHHELD},
            "acks_added": counts["acks_added"], "syn_acks_added": counts["syn_acks_added"],
            "retransmissions_sent": counts["retransmissions_sent"], "resent_by_replay": counts["resent_by_replay"],
            "windows_scaled": counts["windows_scaled"], "windows_capped": counts["windows_capped"],
            "options_removed": {key.removeprefix("options_removed_"): n for key, n in sorted(counts.items())
                                if key.startswith("options_removed_")}}


def summary(replay: "Replayer") -> dict:
    """summary.json's content after ``replay`` ran."""
    net = replay.net
    result = net.summary()
    result["duration"] = round(replay.sim.now / NS_PER_S, 9)
    outcomes = replay.outcomes
    result["flows"] = {"total": replay.flows_total, "completed": outcomes["completed"], "reset": outcomes["reset"],
                       "failed": outcomes["stalled"], "open": outcomes["open_at_end"]}
    result["skipped"] = dict(sorted(replay.skipped.items()))
    opts = replay.options
    result["replay"] = {
        "capture": str(replay.path),
        "timing": opts.timing,
        "loops": opts.loop, "limit": opts.limit, "stopped_at_limit": replay.stopped_at_limit,
        "interface": opts.interface,
        "input_packets": replay.input_packets, "replayed_packets": replay.accepted,
        "skipped_packets": sum(replay.skipped.values()),
        "reassembled_fragments": replay.reassembled_parts,
        "skipped": result["skipped"],
        "input_error": replay.input_error, "accepted_truncation": replay.truncated[0] if replay.truncated else None,
        "first_packet_at": _at(replay.first_ns), "last_packet_at": _at(replay.last_input_ns),
        "first_replayed_at": _at(replay.first_replayed_ns), "last_replayed_at": _at(replay.last_replayed_ns),
        "replay_ended_at": _at(replay.replay_end_ns),
        "checksums": "kept as recorded" if opts.keep_checksums else "verified and fixed",
        "checksums_fixed": replay.checksums_fixed,
        "checksums_kept": replay.checksums_kept,
        "snaplen_filled": replay.snaplen_filled,
        "tcp_super_segments_cut": replay.entered["tcp_super_segments"],
        "fragmented_over_mtu": replay.entered["fragmented_over_mtu"],
        "fragments": {"datagrams_reassembled": replay.reassembler.reassembled,
                      "entered_whole": replay.entered["whole"],
                      "entered_as_fragments": replay.entered["as_fragments"]},
        "flows": {"total": replay.flows_total, **{k: outcomes[k] for k in OUTCOMES}},
        "flows_by_vs": replay.services.counts(replay.flows_by_vs),
        "proxy": _proxy(replay),
        "packets": dict(sorted(replay.packets.items())),
        "account": dict(replay.account.actions),
        "timeline": _timeline(replay),
        "flow_details": replay.flow_details,
        "flow_details_truncated": replay.flows_total > len(replay.flow_details),
    }
    return result


def _timeline(replay: "Replayer") -> dict:
    """Where the [[events]] timeline started, and the events after the last replayed packet."""
    origin = replay.timeline_origin or 0
    last = replay.last_replayed_ns
    late = [{"at": event.at, "action": event.action, "t": _at(origin + seconds(event.at))}
            for event in replay.scenario.events if last is None or origin + seconds(event.at) > last]
    return {"from": replay.options.timeline_from, "origin_at": _at(origin), "events_after_last_packet": late}
