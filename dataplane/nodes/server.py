"""
Pool servers: accept TCP on one port, answer requests, close cleanly.

A server sees only the SE's side of the NAT: its peers are Service Engine
backend addresses.  It answers each request of ``request_bytes`` with an
HTTP response of ``response_bytes`` split into MSS-sized segments, replies
to a FIN with FIN+ACK, and answers a segment for an unknown connection with
a RST, as a real stack does.  A failed server is silent.

Half-open connections are bounded as Linux bounds them: at most
``SYN_BACKLOG`` (``tcp_max_syn_backlog``) wait for their final ACK, each
retransmits its SYN-ACK ``SYNACK_RETRIES`` times on a doubling timer
(``tcp_synack_retries``) and is forgotten 63 s after the SYN; past the
backlog the server answers with a SYN cookie and keeps no state until the
client's ACK proves the handshake (``tcp_syncookies``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .. import flowhash
from ..clock import NS_PER_S, Timer
from ..l2 import Segment
from ..wire import dual, frames
from ..wire.frames import ACK, FIN, PSH, RST, SYN
from ..wire.headers import ETH_SRC
from .context import Runtime
from .host import Host
from .tcp_state import TcpState, advance

UDP_DATAGRAM_MAX = 1472  # one Ethernet frame: 1500 - 20 (IPv4) - 8 (UDP)
UDP_DATAGRAM_MAX6 = 1452  # 1500 - 40 (IPv6) - 8
SYN_BACKLOG = 256
SYNACK_RETRIES = 5
SYNACK_RTO = NS_PER_S


def http_response(size: int) -> bytes:
    """Return an HTTP/1.1 200 response of exactly ``size`` bytes (raw filler when too small)."""
    for digits in range(1, 9):
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {'0' * digits}\r\n\r\n"
        body = size - len(head)
        if body >= 0 and len(str(body)) == digits:
            return head.replace("0" * digits, str(body)).encode() + b"b" * body
    return b"s" * size


@dataclass(eq=False)
class ServerConnection:
    peer: bytes
    peer_port: int
    snd_nxt: int
    rcv_nxt: int
    state: TcpState = TcpState.SYN_RECEIVED
    pending: int = 0
    #: Response bytes not sent yet: they go out as the client's window opens (RFC 793 flow control).
    unsent: bytes = b""
    sent_of_response: int = 0
    snd_una: int = 0
    window: int = 65535
    peer_mac: bytes = b""
    synack_sent: int = 0
    timer: Timer | None = field(default=None, repr=False)


class Server(Host):
    """One pool member: an IP and a listening port on the backend segment."""

    kind = "server"

    def __init__(self, runtime: Runtime, name: str, ip: bytes, port: int, segment: Segment,
                 request_bytes: int, response_bytes: int, seed: int):
        super().__init__(runtime, name, ip, segment)
        self.port = port
        self.endpoint = dual.endpoint(ip, port)
        #: The MSS this server announces and sends, for its family on a 1500-byte MTU.
        self.mss = dual.mss_for(ip)
        self.rng = random.Random(f"{seed}:{name}")
        self.connections: dict[tuple[bytes, int], ServerConnection] = {}
        self.request_bytes = request_bytes
        self.response = http_response(response_bytes)
        self.failed = False
        self.half_open = 0
        self._cookie_key = random.Random(f"{seed}:{name}:syn-cookies").randbytes(16)  # not from self.rng: ISNs stay

    def handle_ip(self, nic, frame: bytes, view: frames.FlowView) -> None:
        if self.failed or view.dst != self.ip:
            return
        if view.fragment or view.proto not in (frames.PROTO_TCP, frames.PROTO_UDP):
            self._answer_ping(frame, view)
            return
        if view.dport != self.port:
            if view.proto == frames.PROTO_TCP and not view.flags & RST:
                self._reset(frame, view, "port closed")
            return
        if view.proto == frames.PROTO_UDP:
            self._answer_udp(frame, view)
        else:
            self._tcp(frame, view)

    # -- TCP -------------------------------------------------------------------

    def _tcp(self, frame: bytes, view: frames.FlowView) -> None:
        key = (view.src, view.sport)
        conn = self.connections.get(key)
        seq, ack = dual.seq_ack(frame, view)
        flags = view.flags
        if flags & RST:
            if conn is not None:
                self._forget(key, conn)
            return
        if flags & SYN:
            self._syn(frame, view, key, conn, seq)
            return
        if conn is None:
            conn = self._from_cookie(frame, view, key, seq, ack)
            if conn is None:
                self._reset(frame, view, "no such connection")
                return
        if conn.state is TcpState.SYN_RECEIVED and flags & ACK:
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            conn.snd_una = conn.snd_nxt
            conn.state = advance(conn.state, "ack")
            self._handshake_done(conn)
        if flags & ACK and 0 < (ack - conn.snd_una) & 0xFFFFFFFF <= (conn.snd_nxt - conn.snd_una) & 0xFFFFFFFF:
            conn.snd_una = ack
        if flags & ACK:
            conn.window = dual.window(frame, view)
            self._push(conn, frame)
        if seq != conn.rcv_nxt:
            self.drop("server_out_of_order")
            return
        if view.payload_len:
            conn.rcv_nxt = (conn.rcv_nxt + view.payload_len) & 0xFFFFFFFF
            conn.pending += view.payload_len
            while conn.pending >= self.request_bytes:
                conn.pending -= self.request_bytes
                self._respond(conn, frame)
            if conn.pending and view.payload(frame).endswith(b"\r\n\r\n"):
                # A short HTTP request (a health monitor's GET) ends at its blank line.
                conn.pending = 0
                self._respond(conn, frame)
        if flags & FIN:
            conn.rcv_nxt = (conn.rcv_nxt + 1) & 0xFFFFFFFF
            self._send(conn, frame, conn.snd_nxt, FIN | ACK, b"", "close")
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            conn.state = advance(conn.state, "fin")
        elif conn.state is TcpState.LAST_ACK and flags & ACK:
            conn.state = advance(conn.state, "ack")
            del self.connections[key]

    # -- handshake: backlog, SYN-ACK retransmission, SYN cookies ---------------------

    def _syn(self, frame: bytes, view: frames.FlowView, key: tuple, conn: ServerConnection | None,
             seq: int) -> None:
        if conn is None:
            if self.half_open >= SYN_BACKLOG:  # no state: the SYN-ACK's sequence number is a cookie
                self.drop("server_syn_backlog_full")
                cookie = ServerConnection(view.src, view.sport, self._cookie(view.src, view.sport, seq),
                                          (seq + 1) & 0xFFFFFFFF)
                self._send(cookie, frame, cookie.snd_nxt, SYN | ACK, b"", "accept with a syn cookie (backlog full)",
                           mss=self.mss)
                return
            conn = ServerConnection(view.src, view.sport, self.rng.getrandbits(32), (seq + 1) & 0xFFFFFFFF,
                                    peer_mac=frame[ETH_SRC])
            self.connections[key] = conn
            self.half_open += 1
            conn.timer = self.sim.after(SYNACK_RTO, self._synack_timeout, key, conn)
        self._send(conn, frame, conn.snd_nxt, SYN | ACK, b"", "accept", mss=self.mss)

    def _synack_timeout(self, key: tuple, conn: ServerConnection) -> None:
        if self.connections.get(key) is not conn or conn.state is not TcpState.SYN_RECEIVED:
            return
        if conn.synack_sent >= SYNACK_RETRIES or self.failed:
            self.drop("server_half_open_expired")
            self._forget(key, conn)
            return
        conn.synack_sent += 1
        self._send(conn, None, conn.snd_nxt, SYN | ACK, b"", f"retransmit syn-ack ({conn.synack_sent})",
                   mss=self.mss)
        conn.timer = self.sim.after(SYNACK_RTO << conn.synack_sent, self._synack_timeout, key, conn)

    def _handshake_done(self, conn: ServerConnection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
            self.half_open -= 1

    def _forget(self, key: tuple, conn: ServerConnection) -> None:
        if conn.state is TcpState.SYN_RECEIVED:
            self._handshake_done(conn)
        self.connections.pop(key, None)

    def _cookie(self, peer: bytes, port: int, seq: int) -> int:
        return flowhash.siphash24(self._cookie_key, peer + port.to_bytes(2, "big") + seq.to_bytes(4, "big")) \
            & 0xFFFFFFFF

    def _from_cookie(self, frame: bytes, view: frames.FlowView, key: tuple, seq: int,
                     ack: int) -> ServerConnection | None:
        """The connection a SYN cookie stands for, if this ACK carries one: the handshake is proved."""
        if not view.flags & ACK or (ack - 1) & 0xFFFFFFFF != self._cookie(view.src, view.sport, (seq - 1) & 0xFFFFFFFF):
            return None
        conn = ServerConnection(view.src, view.sport, (ack - 1) & 0xFFFFFFFF, seq, peer_mac=frame[ETH_SRC])
        self.connections[key] = conn
        return conn

    def _respond(self, conn: ServerConnection, request: bytes) -> None:
        conn.unsent += self.response
        self._push(conn, request)

    def _push(self, conn: ServerConnection, request: bytes) -> None:
        """Send queued response bytes while they fit in the client's advertised window."""
        total = len(self.response)
        while conn.unsent:
            in_flight = (conn.snd_nxt - conn.snd_una) & 0xFFFFFFFF
            chunk = conn.unsent[:self.mss]
            if in_flight + len(chunk) >= conn.window:
                return  # never fill the window to the byte: no silly small segments either
            conn.unsent = conn.unsent[len(chunk):]
            conn.sent_of_response = (conn.sent_of_response + len(chunk)) % total or total
            last = conn.sent_of_response == total
            self._send(conn, request, conn.snd_nxt, (PSH | ACK) if last else ACK, chunk,
                       f"response {conn.sent_of_response}/{total} bytes")
            conn.snd_nxt = (conn.snd_nxt + len(chunk)) & 0xFFFFFFFF

    def _send(self, conn: ServerConnection, request: bytes | None, seq: int, flags: int, payload: bytes,
              why: str, mss: int | None = None) -> None:
        eth_dst = request[ETH_SRC] if request is not None else conn.peer_mac
        frame = dual.tcp(eth_dst, self.nic.mac, self.ip, conn.peer, self.port, conn.peer_port, seq, conn.rcv_nxt,
                         flags | ACK, payload, self.next_ident(), mss)
        self.send_ip(self.nic, conn.peer, frame,
                     f"{self.name} {why} {self.endpoint}>{dual.endpoint(conn.peer, conn.peer_port)}")

    def _reset(self, frame: bytes, view: frames.FlowView, why: str) -> None:
        reply = dual.reset_for(frame, self.nic.mac)
        self.send_ip(self.nic, view.src, reply, f"{self.name} reset {dual.endpoint(self.ip, view.dport)}>"
                                                f"{dual.endpoint(view.src, view.sport)} ({why})")

    # -- UDP -------------------------------------------------------------------

    def _answer_udp(self, frame: bytes, view: frames.FlowView) -> None:
        body = self.response
        most = UDP_DATAGRAM_MAX if len(self.ip) == 4 else UDP_DATAGRAM_MAX6
        for start in range(0, len(body), most):
            chunk = body[start:start + most]
            reply = dual.udp(frame[ETH_SRC], self.nic.mac, self.ip, view.src, self.port, view.sport, chunk,
                             self.next_ident())
            self.send_ip(self.nic, view.src, reply, f"{self.name} response {start + len(chunk)}/{len(body)} bytes "
                                 f"{self.endpoint}>{dual.endpoint(view.src, view.sport)}")

    # -- ICMP ------------------------------------------------------------------

    def _answer_ping(self, frame: bytes, view: frames.FlowView) -> None:
        echo = dual.parse_echo(frame, view)
        if echo is None or not echo[0]:
            return
        _, ident, sequence, data = echo
        peer = view.src
        reply = dual.echo_frame(frame[ETH_SRC], self.nic.mac, self.ip, peer, True, ident, sequence, data,
                                self.next_ident())
        self.send_ip(self.nic, peer, reply, f"{self.name} echo reply to {frames.ip_text(peer)} seq {sequence}")
