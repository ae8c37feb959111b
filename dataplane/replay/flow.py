"""
One recorded flow being replayed: its two sides, how it closed in the recording, its outcome.

``ReplayFlow`` owns one replayed connection while it is live: per side
(``SideState``) the recorded packets waiting to be sent and the counts that
order them.  The rule that keeps a replay causal is symmetric: a recorded
packet leaves its side no earlier than its (scaled) recorded time *and* no
earlier than every packet of the other side recorded before it has arrived
there.  So on every hop the two directions interleave exactly as recorded,
whatever the emulated latency, and Wireshark's TCP analysis of a clean
input stays clean.  Sequence and acknowledgement numbers are never touched
(NAT does not).

``RecordedClose`` follows how the flow ended *in the recording* (FINs, their
acknowledgements, RST), which is what lets the replayer forget a flow's
input as soon as its last packet has been read, and what tells a completed
TCP flow from one still open when the capture ended (``final_outcome``).  ``SkippedFlow`` stands for
a recorded flow that is not replayed, so later packets of it are counted
under the same reason.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..wire import dual, frames
from ..wire.frames import RST
from ..wire.headers import ETH_LEN, TCP_FLAGS
from .input6 import tcp_flags6


@dataclass(slots=True)
class SkippedFlow:
    """A recorded flow that is not replayed, and why."""

    reason: str
    last_input: int  # recorded time of its latest packet


@dataclass(slots=True)
class SideState:
    """One direction of a replayed flow: what its end has read from the recording, sent and had arrive."""

    #: Packets waiting to be sent: (frame or packet, packets of the other side that must arrive first,
    #: the input frame's account row).
    queue: deque = field(default_factory=deque)
    read: int = 0
    sent: int = 0
    arrived: int = 0
    #: Segments still to arrive of the TCP super-segments this side sent cut (``segments``): each
    #: recorded packet counts as one arrival, so all but its last segment are not counted.
    extra_pieces: int = 0
    #: This side sent a recorded RST: a reset arriving at the other end is the recording's, not the network's.
    sent_reset: bool = False
    #: Packets read and deliberately never sent (``proxied``: a recorded retransmission or duplicate ACK).
    withheld: int = 0


@dataclass(slots=True)
class RecordedClose:
    """How the flow closed in the recording."""

    client_fin: bool = False
    server_fin: bool = False
    reset: bool = False
    client_acked_server_fin: bool = False
    server_acked_client_fin: bool = False
    #: Sequence number just past each side's FIN: the ACK that acknowledges it carries it.
    client_fin_end: int | None = None
    server_fin_end: int | None = None

    @property
    def closed(self) -> bool:
        """Both FINs were sent, or a RST: the connection is over in the recording."""
        return (self.client_fin and self.server_fin) or self.reset

    @property
    def closing(self) -> bool:
        return self.client_fin or self.server_fin

    @property
    def finished(self) -> bool:
        """Both FINs sent and both acknowledged: nothing more of this flow can be in the recording."""
        return (self.client_fin and self.server_fin and self.client_acked_server_fin
                and self.server_acked_client_fin)


class ReplaySink(Protocol):
    """What a flow reports to the replayer that owns it."""

    unsent_total: int

    def progressed(self, flow: "ReplayFlow", arrived: bool = True) -> None: ...

    def send_from_client(self, flow: "ReplayFlow", frame: bytes, row: Any) -> None: ...

    def not_sent(self, row: Any, reason: str) -> None: ...


class ReplayFlow:
    """One recorded flow being replayed; counts, not copies, once packets are out."""

    __slots__ = ("replay", "number", "proto", "client_ip", "client_port", "recorded", "client", "server_side",
                 "input_done", "outcome", "reset_reason", "server", "peer_ip", "peer_port", "se", "close",
                 "last_input", "unsent", "rec_client", "rec_server", "loop", "to_vip", "to_peer", "peer_text",
                 "unseen", "accounted", "first_frame", "last_frame", "send_client", "vs")
    #: The account calls ``captured(row)`` when a frame of this flow crosses a captured segment (``proxied``).
    watches_capture = False
    #: Recorded server packets never sent because the SE never connected to the server (``proxied``).
    unconnected = 0

    def __init__(self, replay: ReplaySink, number: int, proto: int, client_ip: bytes, client_port: int,
                 recorded: str, loop: int = 1):
        self.replay = replay
        self.number = number
        self.proto = proto
        self.client_ip = client_ip
        self.client_port = client_port
        self.recorded = recorded          # "client:port>server:port" as recorded, for humans
        self.client = SideState()         # frames ready for the access link
        self.server_side = SideState()    # recorded IPv4 packets for the pool server to send
        self.input_done = False
        self.close = RecordedClose()
        self.rec_client = (b"", 0)        # the recorded client address and port (who opened the flow)
        self.rec_server = (b"", 0)        # the recorded server address and port
        self.outcome: str | None = None   # None while live; "reset" when the emulated network reset it
        self.reset_reason: str | None = None
        self.server: Any = None           # the ReplayServer the SE chose
        self.peer_ip = b""
        self.peer_port = 0
        self.se: str | None = None
        self.last_input = 0
        self.unsent = 0
        self.loop = loop                  # 1-based replay loop
        self.to_vip: Any = None           # the NAT rewrite of the client's packets to the VIP (set by the replayer)
        self.to_peer: Any = None          # the NAT rewrite of the server's packets into the SE's connection
        self.peer_text = ""
        self.unseen = 0                   # frames sent but not yet seen on a captured segment (account)
        self.accounted = False            # its account row is written: no more SE to wait for
        self.first_frame = self.last_frame = 0
        self.vs = ""                      # the name of the virtual service that takes it (set by the replayer)
        #: Puts a client frame on the access link: the clients node's send, bound once (the replayer's
        #: ``send_from_client`` by default).
        self.send_client: Any = replay.send_from_client

    # -- input side --------------------------------------------------------------

    def from_client(self, frame: bytes, row: Any) -> None:
        client, other = self.client, self.server_side
        client.read += 1
        if not client.queue and other.read <= other.arrived and self.outcome is None:
            self._send_client(frame, row)   # nothing to wait for: the common case skips the queue
            return
        client.queue.append((frame, other.read, row))
        self.pump_client()

    def from_server(self, packet: bytes, row: Any) -> None:
        side, other = self.server_side, self.client
        side.read += 1
        if not side.queue and other.read <= other.arrived and self.server is not None and self.outcome is None:
            side.sent += 1
            self.server.send_recorded(self, packet, row)
            return
        side.queue.append((packet, other.read, row))
        self.pump_server()

    def not_sent(self, from_client: bool, row: Any) -> None:
        """A packet of a flow the network already reset: read, never sent."""
        (self.client if from_client else self.server_side).read += 1
        self.give_up(row, "flow_reset")

    def give_up(self, row: Any, reason: str) -> None:
        """``row``'s packet, read, is never sent: count it and tell the account why."""
        self.unsent += 1
        self.replay.unsent_total += 1
        self.replay.not_sent(row, reason)

    # -- sending -----------------------------------------------------------------

    def pump_client(self) -> None:
        queue = self.client.queue
        while queue and queue[0][1] <= self.server_side.arrived and self.outcome is None:
            frame, _, row = queue.popleft()
            self._send_client(frame, row)

    def _send_client(self, frame: bytes, row: Any) -> None:
        side = self.client
        side.sent += 1
        if self.proto == frames.PROTO_TCP and frame[ETH_LEN + (frame[ETH_LEN] & 0x0F) * 4 + TCP_FLAGS] & RST:
            side.sent_reset = True
        self.send_client(self, frame, row)

    def pump_server(self) -> None:
        side, queue = self.server_side, self.server_side.queue
        while queue and queue[0][1] <= self.client.arrived and self.server is not None and self.outcome is None:
            packet, _, row = queue.popleft()
            side.sent += 1
            self.server.send_recorded(self, packet, row)

    # -- arrivals ----------------------------------------------------------------

    def arrived_at_server(self, frame: bytes, view: Any) -> None:
        flags = view.flags
        if flags & RST and not self.client.sent_reset:
            self.reset("reset toward the server by the emulated network")
            return
        if self.client.extra_pieces:
            self.client.extra_pieces -= 1
            return
        self.client.arrived += 1
        if self.server_side.queue:
            self.pump_server()
        self.replay.progressed(self)

    def arrived_at_client(self, frame: bytes, view: Any) -> None:
        flags = view.flags
        if flags & RST and not self.server_side.sent_reset:
            self.reset("reset toward the client by the emulated network")
            return
        if self.server_side.extra_pieces:
            self.server_side.extra_pieces -= 1
            return
        self.server_side.arrived += 1
        if self.client.queue:
            self.pump_client()
        self.replay.progressed(self)

    def reset(self, why: str) -> None:
        if self.outcome is None:
            self.outcome = "reset"
            self.reset_reason = why
            self.drop_queued("flow_reset")
            self.replay.progressed(self, arrived=False)

    def drop_queued(self, reason: str) -> None:
        """Give up the packets still waiting on either side: they are never sent."""
        for side in (self.client, self.server_side):
            for _, _, row in side.queue:
                self.give_up(row, reason)
            side.queue.clear()

    # -- state ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Packets read but not yet arrived at the other end (queued or on the wire)."""
        return (self.client.read + self.server_side.read - self.client.arrived - self.server_side.arrived
                - self.unsent)

    @property
    def delivered(self) -> bool:
        return self.client.arrived == self.client.read and self.server_side.arrived == self.server_side.read

    @property
    def settled(self) -> bool:
        """Nothing more can happen to this flow: input over and everything delivered, or reset."""
        if self.outcome is not None:
            return self.input_done
        return self.input_done and self.delivered

    def final_outcome(self) -> str:
        """``reset`` (by the emulated network), ``stalled`` (something never arrived), ``open_at_end`` (a
        TCP flow delivered whole but never closed in the recording: no FIN pair, no RST) or ``completed``."""
        if self.outcome is not None:
            return self.outcome
        if not self.delivered:
            return "stalled"
        if self.proto == frames.PROTO_TCP and not self.close.closed:
            return "open_at_end"
        return "completed"

    def report(self) -> dict:
        report = {"flow": self.number, "recorded": self.recorded,
                  "client": dual.endpoint(self.client_ip, self.client_port),
                  "protocol": "tcp" if self.proto == frames.PROTO_TCP else "udp",
                  "vs": self.vs, "se": self.se, "server": self.server.name if self.server else None,
                  "outcome": self.final_outcome(),
                  "client_packets": _counts(self.client), "server_packets": _counts(self.server_side)}
        if self.reset_reason:
            report["reset_reason"] = self.reset_reason
        return report


class ReplayFlow6(ReplayFlow):
    """A recorded IPv6 flow: its TCP flags are found past the extension headers."""

    __slots__ = ()

    def _send_client(self, frame: bytes, row: Any) -> None:
        side = self.client
        side.sent += 1
        if self.proto == frames.PROTO_TCP and tcp_flags6(frame, ETH_LEN) & RST:
            side.sent_reset = True
        self.send_client(self, frame, row)


def _counts(side: SideState) -> dict:
    return {"recorded": side.read, "sent": side.sent, "arrived": side.arrived, "withheld": side.withheld}
