"""
The TCP proxy network profile: the owner SE terminates the client's connection and opens its own.

Under ``network_profile = "tcp-proxy"`` (the product's default for TCP,
docs/design.md B16) the SE that owns a flow answers the client's SYN with
its own ``TcpEndpoint`` (its ISN, MSS and window), and once that handshake
completes opens a second connection, from its server-network address and a
NAT port, to the pool server it chose.  Bytes are relayed both ways with
each side's own flow control: bytes one side delivered are consumed only as
the other side's send buffer takes them, so a slow reader closes the fast
writer's window.  A FIN is passed on once the bytes before it are; a RST,
a refused or timed-out connection on one side aborts the other.

The client side's segments leave the owner with the VIP as source, by the
cloud's return path (``ServiceEngine.to_client``); the server side's go out
of the backend NIC.  Frame comments say which side a segment belongs to:
``se-2 proxy client-side 10.10.0.100:80>198.51.100.7:40001 SYN-ACK`` and
``se-2 proxy server-side 10.20.0.12:4096>10.20.0.101:8080 data 200 bytes
for 198.51.100.7:40001``.
"""

from __future__ import annotations

from typing import Any

from ..wire import dual, frames
from ..wire.frames import ACK, FIN, RST, SYN, ZERO_MAC
from .tcp_endpoint import EndpointState, TcpEndpoint

_OPEN_SEND = frozenset({EndpointState.SYN_SENT, EndpointState.SYN_RECEIVED, EndpointState.ESTABLISHED,
                        EndpointState.CLOSE_WAIT})


def segment_name(flags: int, payload_len: int) -> str:
    """What a segment is, in a comment: SYN, SYN-ACK, FIN, RST, data N bytes, ACK."""
    if flags & RST:
        return "RST"
    if flags & SYN:
        return "SYN-ACK" if flags & ACK else "SYN"
    what = f"data {payload_len} bytes" if payload_len else "ACK"
    return f"{what} FIN" if flags & FIN and payload_len else ("FIN" if flags & FIN else what)


class ProxiedConnection:
    """One client connection an SE terminates, and the SE's own connection to the server it chose."""

    def __init__(self, se: Any, nat: Any, rng, why: str):
        self.se, self.nat = se, nat
        self.vip, self.vport = nat.vip, nat.vport
        self.why = why  # the steering and server choice, said once on the SYN-ACK
        self.reset_why = ""  # said on the RST an abort sends
        self.mss = dual.mss_for(nat.client_ip)
        self.client = TcpEndpoint(se.sim, rng.getrandbits(32), transmit=self._to_client,
                                  on_established=self._client_established, on_data=self._from_client,
                                  on_fin=self._client_fin, on_closed=self._client_closed,
                                  on_writable=self._pump_down, mss=self.mss)
        self.server: TcpEndpoint | None = None
        self._server_isn = rng.getrandbits(32)
        self.upstream = bytearray()    # client bytes the server side has not taken yet
        self.downstream = bytearray()  # server bytes the client side has not taken yet
        self.client_done = self.server_done = False  # each side's FIN has arrived
        self.fin_up = self.fin_down = False  # the FIN passed on to the server, to the client
        self.closed: set[str] = set()
        self.gone = False  # the SE failed or recovered: this connection's state is lost
        client_text = dual.endpoint(nat.client_ip, nat.client_port)
        self.client_label = f"{se.name} proxy client-side {dual.endpoint(self.vip, self.vport)}>{client_text}"
        self.server_label = f"{se.name} proxy server-side {nat.server_side}"
        self.for_client = f"for {client_text}"

    # -- frames in ------------------------------------------------------------------------------

    def accept(self, frame: bytes, view: frames.FlowView) -> None:
        self.client.accept(view.seq, frames.tcp_mss_option(frame, view))

    def from_client_frame(self, frame: bytes, view: frames.FlowView) -> None:
        if not self.gone:
            self._receive(self.client, frame, view)

    def from_server_frame(self, frame: bytes, view: frames.FlowView) -> None:
        if self.server is not None and not self.gone:
            self._receive(self.server, frame, view)

    @staticmethod
    def _receive(endpoint: TcpEndpoint, frame: bytes, view: frames.FlowView) -> None:
        _, ack = dual.seq_ack(frame, view)
        mss = frames.tcp_mss_option(frame, view) if view.flags & SYN else None
        endpoint.receive(view.seq, ack, view.flags, dual.window(frame, view), view.payload(frame), mss)

    # -- frames out -----------------------------------------------------------------------------

    def _to_client(self, seq: int, ack: int, flags: int, window: int, payload: bytes, mss: int | None) -> None:
        se = self.se
        if self.gone or not se.alive:
            return
        frame = dual.tcp(ZERO_MAC, se.frontend.mac, self.vip, self.nat.client_ip, self.vport, self.nat.client_port,
                         seq, ack, flags, payload, se.next_ident(), mss, window)
        why = f" ({self.nat.binding.vs.tag}{self.why})" if flags & SYN else ""
        why = f" ({self.reset_why})" if flags & RST and self.reset_why else why
        se.to_client(self.nat.binding.vs, frame, f"{self.client_label} {segment_name(flags, len(payload))}{why}")

    def _to_server(self, seq: int, ack: int, flags: int, window: int, payload: bytes, mss: int | None) -> None:
        se, server = self.se, self.nat.server
        if self.gone or not se.alive:
            return
        frame = dual.tcp(ZERO_MAC, se.backend.mac, self.nat.snat_ip, server.ip, self.nat.nat_port, server.port,
                         seq, ack, flags, payload, se.next_ident(), mss, window)
        why = f" ({self.reset_why})" if flags & RST and self.reset_why else ""
        se.later(se.send_ip, se.backend, server.ip, frame,
                 f"{self.server_label} {segment_name(flags, len(payload))} {self.for_client}{why}")

    # -- the relay ------------------------------------------------------------------------------

    def _client_established(self) -> None:
        """The client's handshake is complete: now the SE connects to the server (an L4 full proxy)."""
        self.server = TcpEndpoint(self.se.sim, self._server_isn, transmit=self._to_server,
                                  on_established=self._pump_up, on_data=self._from_server,
                                  on_fin=self._server_fin, on_closed=self._server_closed, on_writable=self._pump_up,
                                  mss=self.mss)
        self.server.open()
        self._pump_up()

    def _from_client(self, data: bytes) -> None:
        self.upstream += data
        self._pump_up()

    def _from_server(self, data: bytes) -> None:
        self.downstream += data
        self._pump_down()

    def _pump_up(self) -> None:
        server = self.server
        if server is None or server.state not in _OPEN_SEND:
            return
        if self.upstream:
            taken = server.send(bytes(self.upstream))
            del self.upstream[:taken]
            self.client.consume(taken)
        if self.client_done and not self.upstream and not self.fin_up:
            self.fin_up = True
            server.close()

    def _pump_down(self) -> None:
        client = self.client
        if client.state not in _OPEN_SEND:
            return
        if self.downstream:
            taken = client.send(bytes(self.downstream))
            del self.downstream[:taken]
            if self.server is not None:
                self.server.consume(taken)
        if self.server_done and not self.downstream and not self.fin_down:
            self.fin_down = True
            client.close()

    def _client_fin(self) -> None:
        self.client_done = True
        self._pump_up()

    def _server_fin(self) -> None:
        self.server_done = True
        self._pump_down()

    # -- endings ----------------------------------------------------------------------------------

    def _client_closed(self, reason: str) -> None:
        self._side_closed("client", reason, self.server)

    def _server_closed(self, reason: str) -> None:
        self._side_closed("server", reason, self.client)

    def _side_closed(self, side: str, reason: str, other: TcpEndpoint | None) -> None:
        self.closed.add(side)
        if not reason.startswith("closed") and other is not None and other.state is not EndpointState.CLOSED:
            self.reset_why = self.reset_why or f"the {side} side: {reason}"
            other.abort(f"the {side} side ended: {reason}")
        if other is None or other.state is EndpointState.CLOSED:
            self.se.proxy_finished(self)

    def reset_both(self, why: str) -> None:
        """Reset both connections in-window now (a drain's expiry, an idle timeout)."""
        self.reset_why = why
        for endpoint in (self.client, self.server):
            if endpoint is not None and endpoint.state not in (EndpointState.CLOSED, EndpointState.INITIAL):
                endpoint.abort(why)

    @property
    def finished(self) -> bool:
        return self.client.state is EndpointState.CLOSED and (self.server is None
                                                              or self.server.state is EndpointState.CLOSED)


__all__ = ["ProxiedConnection", "segment_name"]
