"""
Replay a recorded capture through a scenario's network, streaming, on virtual time.

``Replayer`` owns the input side of a replay: it reads the capture one
record at a time (a single pending "next input packet" event on the virtual
clock, so memory follows the live flows, not the capture's length), paces
it (``timing``: recorded gaps and ``--speed``, ``--topspeed``, ``--pps``,
``--mbps``; ``--loop``, ``--limit``), and takes every frame through the
same steps, each of which may skip it with a reason:

1. its interface and link layer (``input``), the IPv4 packet inside, a
   snap-length cut filled with zeros (an IPv6 packet branches off here, once,
   to ``input6``, which takes it through the same steps);
2. IP fragments reassembled (``fragments``);
3. its flow and side (``recorded_flows``), and, once per flow, its virtual
   service and port (``services``);
4. checksums verified and fixed (``repair``) unless ``--keep-checksums``;
5. handed to its flow's end (``flow``, ``endpoints``).

Every input frame gets one row in the account (``account``): skipped with
its reason, or replayed as output frame N.  The scenario's ``[[events]]``
count from the first replayed packet (``--timeline-from first-packet``,
the default) or from virtual time 0.

The run lasts until the input is over and every flow has settled (or made
no progress for ``STALL_TIMEOUT``: it is reported ``stalled``), or until the
scenario's duration (counted like the events), whichever is later.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from ..clock import NS_PER_S, seconds
from ..emulation import Hooks, Network
from ..l2 import Segment
from ..nodes.context import Runtime
from ..nodes.router import Router
from ..scenario import Scenario
from ..wire import capture_reader, dual, frames
from ..wire.frames import FIN, RST
from . import input as rin
from . import report, repair
from .account import Account, OrderedRows, Row
from .endpoints import ReplayClients, ReplayServer
from .flow import ReplayFlow, ReplayFlow6
from .fragments import Reassembler
from .input6 import Input6, ToVip6
from .options import MAX_VIRTUAL_SECONDS, ReplayOptions
from .proxied import ProxiedFlow
from .recorded_flows import RecordedFlows
from .services import Services, Target
from .timing import Pacer

STALL_TIMEOUT = 5 * NS_PER_S          # virtual time without progress before live flows count as stalled
MAX_BACKLOG = 4096                    # packets read but not yet arrived before reading pauses
PAUSE_POLL = NS_PER_S // 1000
RUN_STEP = NS_PER_S // 10
MAX_FLOW_DETAILS = 100
PROGRESS_EVERY = 2048
MAX_VIRTUAL_NS = MAX_VIRTUAL_SECONDS * NS_PER_S
BATCH = OrderedRows.BATCH


class Replayer:
    """Plays one capture through one network: build the network with ``hooks()``, then ``attach`` and ``run``."""

    def __init__(self, scenario: Scenario, capture_path, account: Account, options: ReplayOptions | None = None,
                 on_progress: Callable[[int], None] | None = None):
        self.scenario = scenario
        self.path = Path(capture_path)
        self.options = options = options or ReplayOptions()
        self.account = account
        self.on_progress = on_progress
        self._waiting = account.waiting
        self.clients: ReplayClients | None = None
        self._ses_by_ip: dict[bytes, object] = {}
        self._flows_by_client: dict[tuple[bytes, int, int], ReplayFlow] = {}
        # Input state.
        self._records = self._read()
        self.pacer = Pacer(options, seconds(scenario.traffic.start))
        self.interfaces = rin.InterfaceChoice(options.interface)
        self.reassembler = Reassembler()
        self.v6 = Input6(self)
        self.live: dict[int, ReplayFlow] = {}
        self.input_packets = self.accepted = self.reassembled_parts = 0
        self.skipped: Counter[str] = Counter()
        self.input_over = False
        self.stopped_at_limit = False
        self.input_error: str | None = None
        self.truncated: list[str] = []
        self._loop_seen = 0
        self._last_rec, self._rec_loop = 0, -1
        self._wake = 0
        self.first_ns: int | None = None
        self.last_input_ns = 0
        self.first_replayed_ns: int | None = None
        self.last_replayed_ns: int | None = None
        self.timeline_origin: int | None = None if options.timeline_from == "first-packet" else 0
        # Repairs.
        self.checksums_fixed = dict.fromkeys(repair.CHECKSUM_AT, 0)
        self.checksums_kept = dict.fromkeys(repair.CHECKSUM_AT, 0)
        self.snaplen_filled = 0
        self.entered: Counter[str] = Counter()  # reassembled: whole/as_fragments; tcp_super_segments cut
        self.proxy_counts: Counter[str] = Counter()  # what replay into tcp-proxy VSs translated or withheld
        # Flow accounting (totals only once a flow has settled: memory stays flat).
        self.flows_total = 0
        self.flows_by_vs: Counter[str] = Counter()
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
        if any(vs.vip6 is not None for vs in self.scenario.virtual_services):
            self.clients.enable_ipv6(router)
        return self.clients

    def attach(self, net: Network) -> None:
        """Start replaying into ``net``, built with ``hooks()``."""
        if self.clients is None:
            raise TypeError("replay needs a network built with Replayer.hooks()")
        self.net = net
        self.sim = net.sim
        self.services = Services(net.services, self.options.port_map, self.options.matches, self.options.vs_map)
        nic = net.router.clients_nic
        reserved = set(net.router.client_gateways) | {ip for ip in (nic.ip, nic.ip6) if ip} | self.services.vips
        frontend = net.scenario.networks["frontend"]
        self.flows = RecordedFlows(self, self.services, frontend.cidr, reserved, frontend.cidr6)
        self._header = self.clients.header_for()
        self._router_mac, self._client_mac = net.router.clients_nic.mac, self.clients.nic.mac
        # Frames kept with wrong checksums are what a real SE drops: the SEs verify them then (only then:
        # every frame the emulation builds is right, so the fast path skips the check).
        net.runtime.verify_checksums = self.options.keep_checksums
        net.controller.timeline_deferred = self.timeline_origin is None
        net.observers.append(self.account.observe)

    # -- what the endpoints ask --------------------------------------------------------

    def se_by_backend_ip(self, ip: bytes):
        se = self._ses_by_ip.get(ip)
        if se is None:  # SEs created by a scale out appear during the run
            self._ses_by_ip = {ip: node for node in self.net.service_engines()
                               for ip in (node.backend.ip, node.backend.ip6) if ip is not None}
            se = self._ses_by_ip.get(ip)
        return se

    def flow_of_client(self, client_ip: bytes, client_port: int, proto: int) -> ReplayFlow | None:
        return self._flows_by_client.get((client_ip, client_port, proto))

    def send_from_client(self, flow: ReplayFlow, frame: bytes, row: Row) -> None:
        self.clients.send(flow, frame, row)

    def sending(self, row: Row, frames_sent: int) -> None:
        self.account.sent[(row.loop, row.frame)] = row   # Account.sending, inlined: once per replayed packet
        row.flow.unseen += 1
        if row.entered:   # reassembled (whole or as fragments), or over the MTU and cut
            self.entered[row.entered] += 1

    def untold(self, row: Row, why: str) -> None:
        self.account.settle(row, "replayed", "", why)

    def not_sent(self, row: Row, reason: str) -> None:
        self.account.settle(row, "not_sent", reason, report.NOT_SENT[reason])

    # -- reading -----------------------------------------------------------------------

    def _read(self):
        for loop in range(self.options.loop):
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
            self._loop_seen = loop
            self.pacer.new_loop()
        at = max(self.pacer.due(record.time_ns, len(record.data)), self.sim.now)
        if at > MAX_VIRTUAL_NS:
            self.input_error = (f"{self.path.name}: frame {record.number} would enter the network "
                                f"{at / NS_PER_S:.0f} s into the run, past the one-year bound of virtual time "
                                f"({MAX_VIRTUAL_SECONDS} s): raise --speed, or use --topspeed, --pps or --mbps")
            self._end_input()
            return
        self._wake = at
        self.sim.at(at, self._inject, loop, record)

    def _inject(self, loop: int, record: capture_reader.Record) -> None:
        self.input_packets += 1
        now = self.sim.now
        if self.first_ns is None:
            self.first_ns = now
        self.last_input_ns = now
        if self.on_progress is not None and self.input_packets % PROGRESS_EVERY == 0:
            self.on_progress(record.offset)
        row = Row(loop + 1, record.number, record.time_ns)   # Account.row, inlined
        self._waiting.append(row)
        self._handle(loop, record, row)
        if len(self._waiting) >= BATCH:
            self.account.flush(now=True)
        if self.input_error is not None:
            self._end_input()
        elif self.accepted - self.arrived_total - self.unsent_total - self._dead - self._backlog_floor > MAX_BACKLOG:
            self._paused_at = now   # (the test is _backlog(), inlined: it runs for every input frame)
            self._wake = now + PAUSE_POLL
            self.sim.after(PAUSE_POLL, self._poll)
        else:
            self._schedule_next()

    def _backlog(self) -> int:
        return self.accepted - self.arrived_total - self.unsent_total - self._dead - self._backlog_floor

    def _poll(self) -> None:
        # Reading waits while the emulated network is behind the recording; a backlog that
        # does not drain (stalled flows) stops holding the input back after STALL_TIMEOUT.
        if self._backlog() > MAX_BACKLOG // 2 and self.sim.now - self._paused_at < STALL_TIMEOUT:
            self._wake = self.sim.now + PAUSE_POLL
            self.sim.after(PAUSE_POLL, self._poll)
            return
        if self._backlog() > MAX_BACKLOG // 2:
            self._backlog_floor += self._backlog()
        self._schedule_next()

    def skip(self, row: Row, reason: str) -> None:
        self.skipped[reason] += 1
        self.account.settle(row, "skipped", reason)

    # -- one input frame -----------------------------------------------------------------

    def _handle(self, loop: int, record: capture_reader.Record, row: Row) -> None:
        decode = rin.DECODERS.get(record.linktype)
        if decode is None or self.options.interface is not None:
            reason = self.interfaces.skip_reason(record)
            if reason is not None:
                self.skip(row, reason)
                return
        raw, reason = decode(record.data)
        if not raw:   # None (a reason), or nothing after the link layer
            self.skip(row, reason or "malformed")
            return
        if raw[0] == 0x45 and raw[9] == 6 and len(raw) == (raw[2] << 8 | raw[3]) >= 40 and not raw[6] & 0x3F \
                and not raw[7] and 20 <= (raw[32] >> 4) * 4 <= len(raw) - 20:
            packet = raw   # ipv4_packet's verdict on the common frame: a whole, unfragmented TCP segment
        elif raw[0] >> 4 == 6:
            self.v6.handle(loop, record, row, raw)   # the one branch on the version: IPv6 takes its own path
            return
        else:
            packet, reason, row.filled = rin.ipv4_packet(raw, record.orig_len > len(record.data),
                                                         self.options.skip_truncated_frames)
            if packet is None:
                self.skip(row, reason)
                return
        # Recorded time never runs backwards within a loop (a merged capture may be slightly out of order).
        rec = record.time_ns if loop != self._rec_loop else max(record.time_ns, self._last_rec)
        self._last_rec, self._rec_loop = rec, loop
        if rec > self.flows.next_expiry:
            self.flows.expire(rec)
        if self.reassembler.queues:
            for outcome in self.reassembler.expire(rec):
                self._discard_fragments(outcome.tokens, outcome.reason)
        parts = ()
        if packet[6] & 0x3F or packet[7]:
            packet, parts = self._reassemble(packet, rec, row, loop)
            if packet is None:
                return
        found = self.flows.lookup(packet, loop, rec, row)
        if found is not None:
            flow, from_client, flags, key = found
            for part in parts:
                part.flow = flow
            self._feed(flow, key, packet, flags, from_client, row, rec)

    def _reassemble(self, packet: bytes, rec: int, row: Row, loop: int) -> tuple[bytes | None, tuple]:
        packet, parts = self.took_fragment(self.reassembler.add(packet, rec, row, loop), row)
        if packet is not None and rin.transport_problem(packet) is not None:
            self.skip(row, "malformed")
            return None, ()
        return packet, parts

    def took_fragment(self, outcome, row: Row) -> tuple[bytes | None, tuple]:
        """What the reassembler did with the fragment of ``row``: the whole datagram and its earlier parts,
        or (None, ()) once the fragment's fate is accounted."""
        if outcome.status == "held":
            return None, ()
        if outcome.status in ("duplicate", "dropped"):
            self.skip(row, outcome.reason or "fragment_duplicate")
            return None, ()
        if outcome.status == "discarded":
            self._discard_fragments(outcome.tokens, outcome.reason)
            return None, ()
        for part in outcome.tokens:
            self.reassembled_parts += 1
            row.filled += part.filled
            self.account.settle(part, "reassembled", "", f"part of the datagram input frame {row.frame} completed")
        numbers = sorted(part.frame for part in outcome.tokens) + [row.frame]
        row.parts = len(numbers)
        row.note("reassembled from input frames " + ", ".join(map(str, numbers)))
        return outcome.packet, outcome.tokens

    def _discard_fragments(self, rows, reason: str) -> None:
        for part in rows:
            self.skip(part, reason)

    def _feed(self, flow: ReplayFlow, key, packet: bytes, flags: int, from_client: bool, row: Row, rec: int) -> None:
        """Hand one recorded packet of a replayed flow to its side."""
        flow.last_input = rec
        flow.last_frame = row.frame
        row.flow = flow
        self.accepted += 1
        now = self.sim.now
        if self.first_replayed_ns is None:
            self.first_replayed_ns = now
            if self.timeline_origin is None:
                self._align_timeline(now)
        self.last_replayed_ns = now
        if row.filled or row.parts:
            packet = self._repair(packet, row)
        else:   # the common packet: verify (and fix) its checksums, nothing else to repair
            wrong = repair.check_checksums(packet)
            if wrong:
                packet = self._fix(packet, wrong, row)
        if flags & (FIN | RST):
            self.flows.closing_flags(key, flow, from_client, flags)
        if flow.outcome is not None:
            flow.not_sent(from_client, row)
            return
        if from_client:
            flow.from_client(flow.to_vip.apply(self._header + packet, self._router_mac, self._client_mac), row)
        else:
            flow.from_server(packet, row)
        if flow.close.closing or flags & FIN:
            self.flows.track_close(key, flow, from_client, packet, flags)

    def _repair(self, packet: bytes, row: Row) -> bytes:
        """Fill in what the snap length cut, then verify the checksums: fix them, or keep them (and say so)."""
        if row.filled:
            packet = repair.recompute_transport_checksum(packet)
            row.note(f"{row.filled} bytes cut by the snap length filled with zeros")
            self.snaplen_filled += 1
        wrong = repair.check_checksums(packet)
        return self._fix(packet, wrong, row) if wrong else packet

    def _fix(self, packet: bytes, wrong: list, row: Row) -> bytes:
        """Fix the wrong checksums (or keep them with --keep-checksums), count them and say so."""
        keep = self.options.keep_checksums
        counts = self.checksums_kept if keep else self.checksums_fixed
        for checksum in wrong:
            counts[checksum.protocol] += 1
            row.note(checksum.describe(fixed=not keep))
        return packet if keep else repair.fix_checksums(packet, wrong)

    def open_flow(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int, client_ip: bytes, loop: int,
                  row: Row, target: Target) -> ReplayFlow:
        """A recorded flow ``target.vs`` takes: a new replayed flow, its client ``client_ip:sport``."""
        self.flows_total += 1
        recorded = f"{dual.endpoint(src, sport)}>{dual.endpoint(dst, dport)}"
        proxied = proto == frames.PROTO_TCP and target.vs.spec.network_profile == "tcp-proxy"
        if len(src) == 16:
            flow = (ProxiedFlow if proxied else ReplayFlow6)(self, self.flows_total, proto, client_ip, sport,
                                                             recorded, loop + 1)
            flow.to_vip = ToVip6(src, sport, dst, dport, client_ip, sport, target.vip, target.port, hop_decrement=0)
            self.clients.serve6(client_ip)
        else:
            flow = (ProxiedFlow if proxied else ReplayFlow)(self, self.flows_total, proto, client_ip, sport,
                                                            recorded, loop + 1)
            flow.to_vip = frames.NatRewrite(src, sport, dst, dport, client_ip, sport, target.vip, target.port,
                                            ttl_decrement=0)
        flow.vs = target.vs.name
        self.flows_by_vs[flow.vs] += 1
        flow.rec_client, flow.rec_server = (src, sport), (dst, dport)
        flow.first_frame = row.frame
        flow.send_client = self.clients.send
        old = self._flows_by_client.get((client_ip, sport, proto))
        if old is not None:      # the same client 4-tuple reopened before the old flow settled
            old.reset("replaced by a new recorded flow on the same client address and port")
        self._flows_by_client[(client_ip, sport, proto)] = flow
        self.live[flow.number] = flow
        return flow

    def _align_timeline(self, origin: int) -> None:
        """The [[events]] timeline starts now (the first replayed packet, or the end of an input that had none)."""
        self.timeline_origin = origin
        self.net.controller.schedule_timeline(origin)

    def _end_loop(self) -> None:
        for outcome in self.reassembler.flush():
            self._discard_fragments(outcome.tokens, outcome.reason)
        self.flows.clear()
        self.account.flush()

    def _end_input(self) -> None:
        self._end_loop()
        self.input_over = True
        if self.timeline_origin is None:
            self._align_timeline(self.sim.now)
        if self.on_progress is not None:
            self.on_progress(-1)

    # -- flow lifecycle ------------------------------------------------------------------

    def input_finished(self, flow: ReplayFlow) -> None:
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
        outcome = flow.final_outcome()
        if force:
            flow.drop_queued("flow_stalled")
        self._dead += max(flow.backlog, 0)   # what it still owed will never arrive
        self.outcomes[outcome] += 1
        report.count_packets(self.packets, flow, outcome)
        if len(self.flow_details) < MAX_FLOW_DETAILS:
            self.flow_details.append(flow.report())
        self.account.flow_settled(flow, report.flow_row(flow, outcome))
        self.account.flush()

    # -- running -------------------------------------------------------------------------

    def run(self) -> dict:
        """Run the scenario's control plane and the replay; return summary.json's content."""
        self.net.start(traffic=False)
        self.start()
        sim = self.sim
        seen, quiet_since = -1, 0
        while True:
            # Long recorded gaps are crossed in one call (timers still run in their turn).
            sim.run(until_ns=max(sim.now + RUN_STEP, self._wake if not self.input_over else 0))
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
        end = self.timeline_origin + seconds(self.net.scenario.duration)
        if sim.now < end:
            sim.run(until_ns=end)
        self.account.close()
        return report.summary(self)
