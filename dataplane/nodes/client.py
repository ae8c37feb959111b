"""
Clients: hosts behind the gateway router that open connections to the VIP.

Each ``Client`` is one IP address on the ``clients`` segment.  It speaks
real TCP (three-way handshake, requests and responses of the configured
sizes with correct sequence and acknowledgement numbers, FIN close, RST
handling) or UDP request/response.  A TCP connection that gets no answer for
``RESPONSE_TIMEOUT`` is aborted with a RST and counted as failed.  Until
then the client retransmits what it last sent (SYN, request or FIN) on a
doubling timeout from ``INITIAL_RTO``, as a TCP stack does, so a flow whose
SE died meets the steering that replaced it.  A UDP client asks again after
``traffic.udp_timeout``, up to ``traffic.udp_tries`` times, as a resolver
does, then goes on with its next request; the flow fails if a request went
unanswered.  Every retransmission and abort says why in its comment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..clock import NS_PER_S, Timer
from ..l2 import Segment
from ..scenario import Traffic
from ..wire import dual, frames
from ..wire.frames import ACK, FIN, PSH, RST, SYN, ZERO_MAC
from .context import Runtime, ServedService
from .host import Host
from .tcp_state import TcpState, advance

RESPONSE_TIMEOUT = 5 * NS_PER_S
INITIAL_RTO = NS_PER_S
EPHEMERAL_PORTS = (32768, 60999)


def _host_header(vip: bytes) -> str:
    """The Host header's value for a VIP: an IPv6 literal in brackets (RFC 7230 5.4, RFC 3986)."""
    text = frames.ip_text(vip)
    return f"[{text}]" if len(vip) == 16 else text


def http_request(number: int, size: int, host: str) -> bytes:
    """Return an HTTP/1.1 GET of exactly ``size`` bytes (raw filler when too small for HTTP)."""
    head = f"GET /r{number} HTTP/1.1\r\nHost: {host}\r\nX-Pad: "
    tail = "\r\n\r\n"
    pad = size - len(head) - len(tail)
    if pad < 0:
        return b"q" * size
    return (head + "x" * pad + tail).encode()


@dataclass(eq=False)
class ClientConnection:
    client: "Client"
    number: int
    sport: int
    proto: int
    #: The virtual service, its port this connection is to, and the traffic it follows (request sizes, timers).
    target: ServedService = field(repr=False)
    dport: int
    traffic: Traffic = field(repr=False)
    #: The VIP of the client's family this connection goes to (the VS's vip or vip6).
    vip: bytes = b""
    isn: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    state: TcpState = TcpState.SYN_SENT
    requests_left: int = 1
    request_number: int = 0
    received: int = 0
    outcome: str = "open"
    timer: Timer | None = field(default=None, repr=False)
    #: What to send again if no answer comes: (seq, flags, payload, why) of the last send.
    unanswered: list = field(default_factory=list, repr=False)
    deadline: int = 0
    rto: int = INITIAL_RTO
    unacked: int = 0
    opened_ns: int = 0
    closed_ns: int | None = None
    #: UDP: the request being asked, how many times, and how many requests got no answer at all.
    datagram: bytes = b""
    tries: int = 0
    awaiting: bool = False
    unanswered_requests: int = 0
    fail_reason: str = ""

    @property
    def tuple_text(self) -> str:
        return f"{dual.endpoint(self.client.ip, self.sport)}>{dual.endpoint(self.vip, self.dport)}"


class Client(Host):
    """One client address; owns the connections opened from it to the virtual services."""

    kind = "client"

    def __init__(self, runtime: Runtime, name: str, ip: bytes, gateway: bytes, segment: Segment, seed: int):
        super().__init__(runtime, name, ip, segment)
        self.gateway = gateway
        self.rng = random.Random(f"{seed}:{name}")
        self.connections: dict[int, ClientConnection] = {}
        self.used_ports: set[int] = set()
        #: The MSS of this client's family on a 1500-byte MTU.
        self.mss = dual.mss_for(ip)

    def can_reach(self, target: ServedService) -> bool:
        """True if ``target`` has a VIP of this client's family."""
        return (target.vip6 if len(self.ip) == 16 else target.vip) is not None
    # -- opening ---------------------------------------------------------------

    def open(self, number: int, target: ServedService, dport: int, traffic: Traffic) -> ClientConnection:
        """Open connection ``number`` to ``target``'s port ``dport``, following ``traffic``."""
        sport = self._free_port()
        proto = frames.PROTO_UDP if target.proto == frames.PROTO_UDP else frames.PROTO_TCP
        conn = ClientConnection(self, number, sport, proto, target, dport, traffic,
                                target.vip6 if len(self.ip) == 16 else target.vip,
                                requests_left=traffic.requests_per_connection, opened_ns=self.sim.now)
        self.connections[sport] = conn
        self.runtime.counters.flow_opened(target.name)
        if proto == frames.PROTO_TCP:
            conn.isn = self.rng.getrandbits(32)
            conn.snd_nxt = (conn.isn + 1) & 0xFFFFFFFF
            self._send_tcp(conn, conn.isn, 0, SYN, b"", f"connect #{number}", mss=self.mss)
            self._arm(conn, [(conn.isn, 0, SYN, b"", f"connect #{number}")])
        else:
            conn.state = TcpState.ESTABLISHED  # UDP: no handshake
            self._send_request(conn)
        return conn

    def _free_port(self) -> int:
        # Like a stack in TIME_WAIT, avoid reusing a recent port: Wireshark flags reuse,
        # and a reused 4-tuple would meet the previous connection's state in the SEs.
        low, high = EPHEMERAL_PORTS
        if len(self.used_ports) > (high - low) // 2:
            self.used_ports = set(self.connections)
        while True:
            port = self.rng.randint(low, high)
            if port not in self.used_ports:
                self.used_ports.add(port)
                return port

    # -- sending ---------------------------------------------------------------

    def _send_tcp(self, conn: ClientConnection, seq: int, ack: int, flags: int, payload: bytes,
                  why: str, mss: int | None = None, noted: bool = False) -> None:
        """Send one segment; ``noted``: the router repeats ``why`` (the access link is not captured)."""
        frame = dual.tcp(ZERO_MAC, self.nic.mac, self.ip, conn.vip, conn.sport, conn.dport, seq, ack, flags, payload,
                         self.next_ident(), mss)
        if noted:
            self.runtime.note(frame, f"{self.name} {why}")
        self.send_ip(self.nic, self.gateway, frame, f"{self.name} {why} {conn.tuple_text}")

    def _send_request(self, conn: ClientConnection) -> None:
        conn.request_number += 1
        conn.received = 0
        payload = http_request(conn.request_number, conn.traffic.request_bytes, _host_header(conn.vip))
        why = f"request {conn.request_number} ({len(payload)} bytes)"
        if conn.proto == frames.PROTO_TCP:
            segments = []
            for start in range(0, len(payload), self.mss):
                chunk = payload[start:start + self.mss]
                last = start + len(chunk) >= len(payload)
                segments.append((conn.snd_nxt, conn.rcv_nxt, (PSH | ACK) if last else ACK, chunk, why))
                conn.snd_nxt = (conn.snd_nxt + len(chunk)) & 0xFFFFFFFF
            for segment in segments:
                self._send_tcp(conn, *segment)
            self._arm(conn, segments)
        else:
            conn.datagram, conn.tries, conn.awaiting = payload, 1, True
            self._send_datagram(conn, why)

    def _send_datagram(self, conn: ClientConnection, why: str) -> None:
        frame = dual.udp(ZERO_MAC, self.nic.mac, self.ip, conn.vip, conn.sport, conn.dport, conn.datagram,
                         self.next_ident())
        if conn.tries > 1:
            self.runtime.note(frame, f"{self.name} {why}")
        self.send_ip(self.nic, self.gateway, frame, f"{self.name} {why} {conn.tuple_text}")
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = self.sim.after(round(conn.traffic.udp_timeout * NS_PER_S), self._udp_timeout, conn)

    def _udp_timeout(self, conn: ClientConnection) -> None:
        conn.timer = None
        if not conn.awaiting:
            return
        if conn.tries < conn.traffic.udp_tries:
            conn.tries += 1
            self._send_datagram(conn, f"try {conn.tries} of request {conn.request_number}, no answer for "
                                      f"{conn.traffic.udp_timeout:g} s")
            return
        conn.awaiting = False
        conn.unanswered_requests += 1
        self._response_complete(conn)  # give up on this request, go on with the flow

    def _arm(self, conn: ClientConnection, unanswered: list | None = None) -> None:
        """Wait for an answer: retransmit ``unanswered`` on a doubling timeout, give up at the deadline."""
        if conn.timer is not None:
            conn.timer.cancel()
        if unanswered is not None:
            conn.unanswered = unanswered
            conn.rto = INITIAL_RTO
        conn.deadline = self.sim.now + RESPONSE_TIMEOUT
        conn.timer = self.sim.after(min(conn.rto, RESPONSE_TIMEOUT), self._retransmit, conn)

    def _retransmit(self, conn: ClientConnection) -> None:
        if self.sim.now >= conn.deadline:
            self._timed_out(conn)
            return
        if not conn.unanswered:  # nothing of ours is unacknowledged: just wait for the deadline
            conn.timer = self.sim.after(conn.deadline - self.sim.now, self._retransmit, conn)
            return
        waited = (self.sim.now - (conn.deadline - RESPONSE_TIMEOUT)) / NS_PER_S
        for seq, ack, flags, payload, why in conn.unanswered:
            self._send_tcp(conn, seq, ack if flags & ACK else 0, flags, payload,
                           f"retransmit {why}, no answer for {waited:g} s", mss=self.mss if flags & SYN else None,
                           noted=True)
        conn.rto *= 2
        conn.timer = self.sim.after(min(conn.rto, conn.deadline - self.sim.now), self._retransmit, conn)

    def _timed_out(self, conn: ClientConnection) -> None:
        seconds_ = RESPONSE_TIMEOUT // NS_PER_S
        if conn.state is TcpState.SYN_SENT:
            self._finish(conn, "failed", "abort", f"no answer to the SYN in {seconds_} s")
            return
        # The application gives up and closes with data unread: the stack sends a RST,
        # which also frees the SE's NAT entry and the server's connection.
        self._send_tcp(conn, conn.snd_nxt, 0, RST, b"", f"abort after {seconds_} s without answer", noted=True)
        what = "to the close" if conn.state is TcpState.FIN_WAIT else "to a request"
        self._finish(conn, "failed", "abort", f"no answer {what} in {seconds_} s")

    def _finish(self, conn: ClientConnection, outcome: str, event: str, reason: str = "") -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        conn.state = advance(conn.state, event)
        conn.outcome = outcome
        conn.fail_reason = reason
        conn.closed_ns = self.sim.now
        self.connections.pop(conn.sport, None)
        self.runtime.counters.flow_closed(conn.target.name, outcome, reason, id(conn))

    # -- receiving -------------------------------------------------------------

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if view.dst != self.ip or view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self.drop("client_not_for_me")
            return
        conn = self.connections.get(view.dport)
        if conn is None or view.proto != conn.proto:
            self.drop("client_no_connection")
            return
        if conn.proto == frames.PROTO_UDP:
            self._udp_response(conn, view)
        else:
            self._tcp_segment(conn, frame, view)

    def _udp_response(self, conn: ClientConnection, view: frames.FlowView) -> None:
        if not conn.awaiting:  # the answer to an earlier try, after the request was answered or given up
            self.drop("client_late_answer")
            return
        conn.received += view.payload_len
        if conn.received >= conn.traffic.response_bytes:
            conn.awaiting = False
            self._response_complete(conn)

    def _tcp_segment(self, conn: ClientConnection, frame: bytes, view: frames.FlowView) -> None:
        seq, ack = dual.seq_ack(frame, view)
        flags = view.flags
        if flags & RST:
            # RFC 5961: only a RST at exactly the next expected sequence number (in SYN-SENT: one that
            # acknowledges the SYN) ends the connection; any other is ignored, as a real stack does.
            if (ack == conn.snd_nxt and flags & ACK) if conn.state is TcpState.SYN_SENT else seq == conn.rcv_nxt:
                why = "refused: a RST to the SYN" if conn.state is TcpState.SYN_SENT else "reset by the VIP"
                self._finish(conn, "reset", "reset", why)
            else:
                self.drop("client_rst_out_of_window")
            return
        if conn.state is TcpState.SYN_SENT:
            if flags & (SYN | ACK) == SYN | ACK and ack == conn.snd_nxt:
                conn.rcv_nxt = (seq + 1) & 0xFFFFFFFF
                conn.state = advance(conn.state, "syn_ack")
                self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK, b"", "handshake ack")
                self._send_request(conn)
            return
        if seq != conn.rcv_nxt:
            self.drop("client_out_of_order")
            return
        if view.payload_len:
            conn.rcv_nxt = (conn.rcv_nxt + view.payload_len) & 0xFFFFFFFF
            conn.received += view.payload_len
            self._arm(conn, [])
            if conn.received >= conn.traffic.response_bytes:
                self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK, b"",
                               f"ack response {conn.request_number} ({conn.received} bytes)")
                conn.unacked = 0
                self._response_complete(conn)
            else:
                conn.unacked += view.payload_len
                if conn.unacked >= 2 * self.mss:  # ACK every second full segment (RFC 1122)
                    conn.unacked = 0
                    self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK, b"",
                                   f"ack {conn.received}/{conn.traffic.response_bytes} bytes")
        if flags & FIN:
            conn.rcv_nxt = (conn.rcv_nxt + 1) & 0xFFFFFFFF
            if conn.state is TcpState.FIN_WAIT:
                self._send_tcp(conn, conn.snd_nxt, conn.rcv_nxt, ACK, b"", "ack close")
                self._finish(conn, "completed", "fin")

    def _response_complete(self, conn: ClientConnection) -> None:
        conn.requests_left -= 1
        if conn.requests_left > 0:
            if conn.timer is not None:
                conn.timer.cancel()
            interval = round(conn.traffic.request_interval * NS_PER_S)
            conn.timer = self.sim.after(interval, self._send_request, conn)
        elif conn.proto == frames.PROTO_UDP:
            total = conn.traffic.requests_per_connection
            if conn.unanswered_requests:
                self._finish(conn, "failed", "done", f"{conn.unanswered_requests} of {total} requests unanswered "
                                                     f"after {conn.traffic.udp_tries} tries")
            else:
                self._finish(conn, "completed", "done")
        else:
            conn.state = advance(conn.state, "close")
            fin = (conn.snd_nxt, conn.rcv_nxt, FIN | ACK, b"", "close")
            self._send_tcp(conn, *fin)
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            self._arm(conn, [fin])
