"""
Replay a recorded capture through a scenario's network, streaming, on virtual time.

``Replayer`` owns the input side of a replay: it reads the capture one
record at a time (a single pending "next input packet" event on the virtual
clock, so memory follows the live flows, not the capture's length), maps
recorded time to virtual time (recorded gaps, ``speed``, ``topspeed``,
``loop``, ``limit``), splits every packet into a flow and a side the way
tcpprep's automatic modes do (the sender of the first SYN, or of the first
UDP datagram, is the client), and hands it to that flow's end
(``flow``, ``endpoints``).  It counts every input packet it does not replay by
reason, and keeps per-flow state only while a flow is live: a flow leaves
the input tables when it closes in the recording (both FINs or a RST, then
``CLOSE_LINGER`` of recorded time) or idles for ``IDLE_TIMEOUT``, and leaves
the emulation once everything it sent has arrived.

The run lasts until the input is over and every flow has settled (or made
no progress for ``STALL_TIMEOUT``: it is reported ``stalled``), or until the
scenario's duration, whichever is later, so the whole timeline still runs.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Callable

from ..clock import NS_PER_S, seconds
from ..emulation import Hooks, Network
from ..l2 import Segment
from ..nodes.context import Runtime
from ..nodes.router import Router
from ..scenario import Scenario
from ..wire import capture_reader, frames
from ..wire.frames import ACK, FIN, RST, SYN
from ..wire.headers import IPV4_DST, IPV4_PROTO, IPV4_SRC, TCP_FLAGS, TCP_SEQ
from . import input as rin
from .endpoints import ReplayClients, ReplayServer
from .flow import ReplayFlow, SkippedFlow
from .input import ReplayOptions, _linktype_message

IDLE_TIMEOUT = 300 * NS_PER_S         # recorded time without a packet before an open flow is forgotten
CLOSE_LINGER = 2 * NS_PER_S           # recorded time a closed flow keeps collecting its last ACKs
STALL_TIMEOUT = 5 * NS_PER_S          # virtual time without progress before live flows count as stalled
MAX_BACKLOG = 4096                    # packets read but not yet arrived before reading pauses
PAUSE_POLL = NS_PER_S // 1000
RUN_STEP = NS_PER_S // 10
MAX_FLOW_DETAILS = 100
MAX_IGNORED = 100_000
PROGRESS_EVERY = 2048
_PORTS = struct.Struct("!HH")
_SEQ_ACK = struct.Struct("!II")


class Replayer:
    """Plays one capture through one network: build the network with ``hooks()``, then ``attach`` and ``run``."""

    def __init__(self, scenario: Scenario, capture_path, options: ReplayOptions | None = None,
                 on_progress: Callable[[int], None] | None = None):
        self.scenario = scenario
        self.path = Path(capture_path)
        self.options = options or ReplayOptions()
        self.on_progress = on_progress
        self.clients: ReplayClients | None = None
        self._ses_by_ip: dict[bytes, object] = {}
        self._flows_by_client: dict[tuple[bytes, int, int], ReplayFlow] = {}
        # Input state.
        self._records = self._read()
        self._open: OrderedDict = OrderedDict()     # key -> ReplayFlow or SkippedFlow
        self._closing: OrderedDict = OrderedDict()  # key -> ReplayFlow closed in the recording
        self.live: dict[int, ReplayFlow] = {}
        self.input_packets = self.accepted = 0
        self.skipped: Counter[str] = Counter()
        self.input_over = False
        self.stopped_at_limit = False
        self.input_error: str | None = None
        self.truncated: list[str] = []
        self.loop_index = self._loop_seen = 0
        self._loop_base = seconds(scenario.traffic.start)
        self._loop_first: int | None = None
        self._last_rec = 0
        self._last_virtual = 0
        self.first_ns: int | None = None
        self.last_input_ns = 0
        # Flow accounting (totals only once a flow has settled: memory stays flat).
        self.flows_total = 0
        self.outcomes: Counter[str] = Counter()
        self.packets: Counter[str] = Counter()
        self.flow_details: list[dict] = []
        self.arrived_total = self.unsent_total = 0
        self._backlog_floor = self._dead = 0
        self._paused_at: int | None = None
        self.progress_count = 0

    # -- wiring ----------------------------------------------------------------------

    def hooks(self) -> Hooks:
        """The builder hooks that put replay's clients and servers into the network."""
        return Hooks(server_class=self._server, access_link=self._access_link)

    def _server(self, *args) -> ReplayServer:
        return ReplayServer(*args, directory=self)

    def _access_link(self, runtime: Runtime, segment: Segment, router: Router, first_ip: bytes) -> ReplayClients:
        self.clients = ReplayClients(runtime, "replay-clients", segment, first_ip, router.clients_nic,
                                     router.client_gateways, self)
        return self.clients

    def attach(self, net: Network) -> None:
        """Start replaying into ``net``, built with ``hooks()``."""
        if self.clients is None:
            raise TypeError("replay needs a network built with Replayer.hooks()")
        self.net = net
        self.sim = net.sim
        vs = net.vs
        self.selection = rin.Selection(vs.proto, vs.port, set(self.options.port_map), list(self.options.matches))
        self._reserved = set(net.router.client_gateways) | {net.router.clients_nic.ip, vs.vip}
        self._frontend = net.scenario.networks["frontend"].cidr
        self._header = self.clients.header_for()
        self._router_mac, self._client_mac = net.router.clients_nic.mac, self.clients.nic.mac

    def se_by_backend_ip(self, ip: bytes):
        se = self._ses_by_ip.get(ip)
        if se is None:  # SEs created by a scale out appear during the run
            self._ses_by_ip = {node.backend.ip: node for node in self.net.service_engines()}
            se = self._ses_by_ip.get(ip)
        return se

    def flow_of_client(self, client_ip: bytes, client_port: int, proto: int) -> ReplayFlow | None:
        return self._flows_by_client.get((client_ip, client_port, proto))

    def send_from_client(self, flow: ReplayFlow, frame: bytes, number: int) -> None:
        self.clients.send(flow, frame, number, self.net.vs.vip, self.net.vs.port)

    # -- reading -----------------------------------------------------------------------

    def _read(self):
        for loop in range(self.options.loop):
            self.loop_index = loop
            try:
                for record in capture_reader.open_capture(self.path):
                    yield loop, record
            except capture_reader.CaptureError as error:
                if self.options.allow_truncated and "truncated" in str(error):
                    if not self.truncated:
                        self.truncated.append(str(error))
                else:
                    self.input_error = f"{error}; replayed the {error.frame_number - 1} whole frames before it" \
                        + (" (--allow-truncated accepts a truncated capture)" if "truncated" in str(error) else "")
                    return
            self._end_loop()

    def start(self) -> None:
        self._schedule_next()

    def _schedule_next(self) -> None:
        limit = self.options.limit
        if limit is not None and self.input_packets >= limit:
            self.stopped_at_limit = True
            self._end_input()
            return
        try:
            loop, record = next(self._records)
        except StopIteration:
            self._end_input()
            return
        if loop != self._loop_seen:
            self._loop_seen, self._loop_first = loop, None
        rec = max(record.time_ns, self._last_rec) if self._loop_first is not None else record.time_ns
        if self._loop_first is None:
            self._loop_first = rec
            self._loop_base = max(self._loop_base, self._last_virtual)
        self._last_rec = rec
        now = self.sim.now
        if self.options.topspeed:
            at = now
        else:
            at = max(self._loop_base + int((rec - self._loop_first) / self.options.speed), now)
        self._last_virtual = at
        self.sim.at(at, self._inject, loop, record, rec)

    def _inject(self, loop: int, record, rec: int) -> None:
        self.input_packets += 1
        if self.first_ns is None:
            self.first_ns = self.sim.now
        self.last_input_ns = self.sim.now
        if self.on_progress is not None and self.input_packets % PROGRESS_EVERY == 0:
            self.on_progress(record.offset)
        self._handle(loop, record, rec)
        if self.input_error is not None:
            self._end_input()
        elif self._backlog() > MAX_BACKLOG:
            self._paused_at = self.sim.now
            self.sim.after(PAUSE_POLL, self._poll)
        else:
            self._schedule_next()

    def _backlog(self) -> int:
        return self.accepted - self.arrived_total - self.unsent_total - self._dead - self._backlog_floor

    def _poll(self) -> None:
        # Reading waits while the emulated network is behind the recording; a backlog that
        # does not drain (stalled flows) stops holding the input back after STALL_TIMEOUT.
        if self._backlog() > MAX_BACKLOG // 2 and self.sim.now - self._paused_at < STALL_TIMEOUT:
            self.sim.after(PAUSE_POLL, self._poll)
            return
        if self._backlog() > MAX_BACKLOG // 2:
            self._backlog_floor += self._backlog()
        self._schedule_next()

    def _skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def _handle(self, loop: int, record, rec: int) -> None:
        decode = rin.decoder_for(record.linktype)
        if decode is None:
            self.input_packets -= 1
            self.input_error = _linktype_message(self.path, record)
            return
        packet, reason = decode(record.data)
        if packet is None:
            self._skip(reason)
            return
        self._expire(rec)
        proto = packet[IPV4_PROTO]
        ihl = (packet[0] & 0x0F) * 4
        src, dst = packet[IPV4_SRC], packet[IPV4_DST]
        sport, dport = _PORTS.unpack_from(packet, ihl)
        flags = packet[ihl + TCP_FLAGS] if proto == frames.PROTO_TCP else 0
        key = (proto, src, sport, dst, dport, loop) if (src, sport) <= (dst, dport) else \
            (proto, dst, dport, src, sport, loop)
        table = self._open
        entry = table.get(key)
        if entry is None:
            entry = self._closing.get(key)
            table = self._closing
        opening = proto != frames.PROTO_TCP or flags & (SYN | ACK | RST) == SYN
        if entry is not None and opening and proto == frames.PROTO_TCP and (
                isinstance(entry, SkippedFlow) or entry.close.closed):
            del table[key]   # a new connection on a recorded 4-tuple that was closed or skipped
            if isinstance(entry, ReplayFlow):
                self._input_finished(entry)
            entry = None
        if entry is None:
            entry = self._classify(key, proto, flags, src, sport, dst, dport, loop, rec)
            if isinstance(entry, SkippedFlow):
                return
            table = self._open
        elif isinstance(entry, SkippedFlow):
            entry.last_input = rec
            table.move_to_end(key)
            self._skip(entry.reason)
            return
        else:
            table.move_to_end(key)
        self._feed(entry, key, table, packet, ihl, flags, src == entry.rec_client[0] and sport == entry.rec_client[1],
                   record.number, rec)

    def _feed(self, flow: ReplayFlow, key, table, packet: bytes, ihl: int, flags: int, from_client: bool,
              number: int, rec: int) -> None:
        """Hand one recorded packet of a replayed flow to its side."""
        flow.last_input = rec
        self.accepted += 1
        if self.options.fix_checksums:
            packet = rin.fix_checksums(packet)
        if flags & (FIN | RST):
            self._closing_flags(key, flow, from_client, bool(flags & FIN), table)
        if flow.outcome is not None:
            flow.not_sent(from_client)
            return
        if from_client:
            frame = frames.rewrite_ipv4_l4(self._header + packet, self._router_mac, self._client_mac,
                                           flow.client_ip, flow.client_port, self.net.vs.vip, self.net.vs.port,
                                           ttl_decrement=0)
            flow.from_client(frame, number)
        else:
            flow.from_server(packet, number)
        if flow.close.closing or flags & FIN:
            self._track_close(key, flow, from_client, packet, ihl, flags)

    def _track_close(self, key, flow: ReplayFlow, from_client: bool, packet: bytes, ihl: int, flags: int) -> None:
        """Forget a flow's input as soon as both FINs are acknowledged in the recording (its last
        packet), rather than after CLOSE_LINGER: short connections then hold no state at all."""
        seq, ack = _SEQ_ACK.unpack_from(packet, ihl + TCP_SEQ)
        close = flow.close
        if flags & FIN:
            end = (seq + len(packet) - ihl - (packet[ihl + 12] >> 4) * 4 + 1) & 0xFFFFFFFF
            if from_client:
                close.client_fin_end = end
            else:
                close.server_fin_end = end
        other = close.server_fin_end if from_client else close.client_fin_end
        if flags & ACK and other is not None and (ack - other) & 0xFFFFFFFF < 0x80000000:
            if from_client:
                close.client_acked_server_fin = True
            else:
                close.server_acked_client_fin = True
        if close.finished and self._closing.pop(key, None) is flow:
            self._input_finished(flow)

    def _closing_flags(self, key, flow: ReplayFlow, from_client: bool, fin: bool, table) -> None:
        close = flow.close
        if not fin:
            close.reset = True
        elif from_client:
            close.client_fin = True
        else:
            close.server_fin = True
        if close.closed and table is self._open:
            del self._open[key]
            self._closing[key] = flow

    def _classify(self, key, proto, flags, src, sport, dst, dport, loop, rec):
        sel = self.selection
        if proto == frames.PROTO_TCP and flags & (SYN | ACK | RST) != SYN:
            reason = "mid_flow" if sel.could_be_server_port(dport) or sel.could_be_server_port(sport) \
                else "not_selected"
        else:
            reason = sel.verdict(proto, src, sport, dst, dport)
        client_ip = self._client_address(src, loop) if reason is None else None
        if reason is None and client_ip is None:
            reason = "client_address_unusable"
        if reason is not None:
            self._skip(reason)
            skipped = self._open[key] = SkippedFlow(reason, rec)
            if len(self._open) > MAX_IGNORED:
                self._evict_one()
            return skipped
        self.flows_total += 1
        flow = ReplayFlow(self, self.flows_total, proto, client_ip, sport,
                          f"{frames.ip_text(src)}:{sport}>{frames.ip_text(dst)}:{dport}")
        flow.rec_client = (src, sport)
        old = self._flows_by_client.get((client_ip, sport, proto))
        if old is not None:      # the same client 4-tuple reopened before the old flow settled
            old.reset("replaced by a new recorded flow on the same client address and port")
        self._flows_by_client[(client_ip, sport, proto)] = flow
        self.live[flow.number] = flow
        self._open[key] = flow
        return flow

    def _client_address(self, ip: bytes, loop: int) -> bytes | None:
        if loop:  # later loops need distinct flows (tcpreplay --unique-ip): move the client's first octet
            ip = bytes(((ip[0] + loop) & 0xFF,)) + ip[1:]
        if rin.client_address_problem(ip, self._frontend, self._reserved):
            return None
        return ip

    def _evict_one(self) -> None:
        for key, entry in self._open.items():
            if isinstance(entry, SkippedFlow):
                del self._open[key]
                return

    def _expire(self, rec: int) -> None:
        for table, linger in ((self._closing, CLOSE_LINGER), (self._open, IDLE_TIMEOUT)):
            while table:
                key, entry = next(iter(table.items()))
                if entry.last_input + linger >= rec:
                    break
                del table[key]
                if isinstance(entry, ReplayFlow):
                    self._input_finished(entry)

    def _end_loop(self) -> None:
        for table in (self._closing, self._open):
            for entry in table.values():
                if isinstance(entry, ReplayFlow):
                    self._input_finished(entry)
            table.clear()

    def _end_input(self) -> None:
        self._end_loop()
        self.input_over = True
        if self.on_progress is not None:
            self.on_progress(-1)

    # -- flow lifecycle ------------------------------------------------------------------

    def _input_finished(self, flow: ReplayFlow) -> None:
        flow.input_done = True
        self._settle(flow)

    def progressed(self, flow: ReplayFlow, arrived: bool = True) -> None:
        self.progress_count += 1
        if arrived:
            self.arrived_total += 1
        if flow.input_done:
            self._settle(flow)

    def _settle(self, flow: ReplayFlow, force: bool = False) -> None:
        if not (force or flow.settled) or self.live.pop(flow.number, None) is None:
            return
        if self._flows_by_client.get((flow.client_ip, flow.client_port, flow.proto)) is flow:
            del self._flows_by_client[(flow.client_ip, flow.client_port, flow.proto)]
        if flow.server is not None:
            flow.server.forget(flow)
        self._dead += max(flow.backlog, 0)   # what it still owed will never arrive
        outcome = flow.final_outcome()
        self.outcomes[outcome] += 1
        recorded = flow.client.read + flow.server_side.read
        sent = flow.client.sent + flow.server_side.sent
        arrived = flow.client.arrived + flow.server_side.arrived
        self.packets["recorded"] += recorded
        self.packets["sent"] += sent
        self.packets["arrived"] += arrived
        if recorded > sent:
            self.packets["not_sent_" + ("flow_reset" if outcome == "reset" else "stalled")] += recorded - sent
        if sent > arrived:
            self.packets["lost_in_network"] += sent - arrived
        if len(self.flow_details) < MAX_FLOW_DETAILS:
            self.flow_details.append(flow.report())

    # -- running -------------------------------------------------------------------------

    def run(self) -> dict:
        """Run the scenario's control plane and the replay; return summary.json's content."""
        self.net.start(traffic=False)
        self.start()
        sim = self.sim
        seen, quiet_since = -1, 0
        while True:
            sim.run(until_ns=sim.now + RUN_STEP)
            if not self.input_over:
                continue
            if not self.live:
                break
            if self.progress_count != seen:
                seen, quiet_since = self.progress_count, sim.now
            elif sim.now - quiet_since >= STALL_TIMEOUT:
                break
        self.replay_end_ns = sim.now
        for flow in list(self.live.values()):
            flow.input_done = True
            self._settle(flow, force=True)
        duration = seconds(self.net.scenario.duration)
        if sim.now < duration:
            sim.run(until_ns=duration)
        return self.summary()

    def summary(self) -> dict:
        summary = self.net.summary()
        summary["duration"] = round(self.sim.now / NS_PER_S, 9)
        outcomes = self.outcomes
        summary["flows"] = {"total": self.flows_total, "completed": outcomes["completed"],
                            "reset": outcomes["reset"], "failed": outcomes["stalled"], "open": len(self.live)}
        summary["skipped"] = dict(sorted(self.skipped.items()))
        opts = self.options
        summary["replay"] = {
            "capture": str(self.path),
            "timing": "topspeed" if opts.topspeed else ("recorded" if opts.speed == 1 else f"speed x{opts.speed:g}"),
            "loops": opts.loop, "limit": opts.limit, "stopped_at_limit": self.stopped_at_limit,
            "input_packets": self.input_packets, "replayed_packets": self.accepted,
            "skipped_packets": sum(self.skipped.values()),
            "skipped": summary["skipped"],
            "input_error": self.input_error, "accepted_truncation": self.truncated[0] if self.truncated else None,
            "first_packet_at": None if self.first_ns is None else round(self.first_ns / NS_PER_S, 9),
            "last_packet_at": round(self.last_input_ns / NS_PER_S, 9),
            "replay_ended_at": round(self.replay_end_ns / NS_PER_S, 9),
            "flows": {"total": self.flows_total, **{k: outcomes[k] for k in ("completed", "reset", "stalled")}},
            "packets": dict(sorted(self.packets.items())),
            "flow_details": self.flow_details,
            "flow_details_truncated": self.flows_total > len(self.flow_details),
        }
        return summary
