"""
A TCP connection's states, events and output: the half of ``TcpEndpoint`` that decides what leaves and when.

Owns: the states as a transition table (every change of ``state`` goes
through ``_advance``; an event the table does not allow raises
``IllegalTransition`` and changes nothing: the ``tcp_state`` discipline);
the owner's events, fired in order once the endpoint is consistent; our
segments, within the windows ``SendStream`` keeps; the one timer that
retransmits and probes zero windows (its deadline moves with every ACK
without touching the clock's queue); the delayed ACK; TIME_WAIT.
``TcpEndpoint`` (``tcp_endpoint``, where the contract is) adds the owner's
API, the handshake and segment arrival.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from ..clock import NS_PER_S, Simulator
from ..wire.headers import ACK, RST, SYN
from .tcp_algorithms import SEQ_MASK, RetransmitTimeout
from .tcp_state import IllegalTransition
from .tcp_streams import ReceiveStream, SendStream


@dataclass(frozen=True)
class TcpTuning:
    """The timers and limits, Linux's defaults unless said otherwise (times in nanoseconds)."""

    initial_rto: int = NS_PER_S  # RFC 6298 2.1
    min_rto: int = NS_PER_S // 5  # TCP_RTO_MIN
    max_rto: int = 120 * NS_PER_S  # TCP_RTO_MAX
    retries: int = 15  # tcp_retries2: retransmissions, or unanswered zero-window probes, before giving up
    syn_retries: int = 6  # tcp_syn_retries
    synack_retries: int = 5  # tcp_synack_retries
    delayed_ack: int = NS_PER_S // 25  # 40 ms, TCP_DELACK_MIN
    time_wait: int = 2 * NS_PER_S  # ours: 2 MSL would be minutes of nothing in a capture
    initial_window: int = 10  # segments, RFC 6928


class EndpointState(Enum):
    INITIAL = "initial"
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    FIN_WAIT_1 = "fin-wait-1"
    FIN_WAIT_2 = "fin-wait-2"
    CLOSE_WAIT = "close-wait"
    CLOSING = "closing"
    LAST_ACK = "last-ack"
    TIME_WAIT = "time-wait"
    CLOSED = "closed"

    # Members are singletons: hash them by identity, in C.  Enum's own hash is a Python call on the name,
    # and the per-segment path asks "state in ..." several times a segment.
    __hash__ = object.__hash__


S = EndpointState
_END = {"reset": S.CLOSED, "timeout": S.CLOSED, "abort": S.CLOSED}
#: Every change of ``state``, and the owner's calls each state allows ("send" and "close" keep the state:
#: the FIN leaves with "send_fin" once everything queued before it was sent).
TRANSITIONS: dict[EndpointState, dict[str, EndpointState]] = {
    S.INITIAL: {"open": S.SYN_SENT, "accept": S.SYN_RECEIVED, "send": S.INITIAL, "abort": S.CLOSED},
    S.SYN_SENT: {"syn_ack": S.ESTABLISHED, "syn": S.SYN_RECEIVED, "send": S.SYN_SENT, "close": S.SYN_SENT, **_END},
    S.SYN_RECEIVED: {"ack_of_syn": S.ESTABLISHED, "send": S.SYN_RECEIVED, "close": S.SYN_RECEIVED, **_END},
    S.ESTABLISHED: {"send": S.ESTABLISHED, "close": S.ESTABLISHED, "send_fin": S.FIN_WAIT_1,
                    "fin": S.CLOSE_WAIT, **_END},
    S.FIN_WAIT_1: {"ack_of_fin": S.FIN_WAIT_2, "fin": S.CLOSING, **_END},
    S.FIN_WAIT_2: {"fin": S.TIME_WAIT, "reset": S.CLOSED, "abort": S.CLOSED},
    S.CLOSE_WAIT: {"send": S.CLOSE_WAIT, "close": S.CLOSE_WAIT, "send_fin": S.LAST_ACK, **_END},
    S.CLOSING: {"ack_of_fin": S.TIME_WAIT, **_END},
    S.LAST_ACK: {"ack_of_fin": S.CLOSED, **_END},
    S.TIME_WAIT: {"expire": S.CLOSED, "reset": S.CLOSED, "abort": S.CLOSED},
    S.CLOSED: {},
}
HANDSHAKE = frozenset({S.SYN_SENT, S.SYN_RECEIVED})
SYNCHRONIZED = frozenset(set(S) - {S.INITIAL, S.SYN_SENT, S.CLOSED})  # both ISNs known: RFC 9293 3.10.7.4
SENDING = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})  # data or FIN may go (again)
PEER_SENDING = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
RESET_ON_ABORT = frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT})

Transmit = Callable[[int, int, int, int, bytes, "int | None"], None]


class TcpConnection:
    """States, events, output and timers of one connection; ``TcpEndpoint`` is the class to use."""

    def __init__(self, clock: Simulator, isn: int, transmit: Transmit, callbacks: tuple, mss: int,
                 send: SendStream, receive: ReceiveStream, tuning: TcpTuning):
        self._clock, self._tuning, self.iss, self._mss = clock, tuning, isn, mss
        self._transmit = transmit
        self._on_established, self._on_data, self._on_fin, self._on_closed, self._on_writable = callbacks
        self.state = S.INITIAL
        self.close_reason: str | None = None
        self.retransmissions = 0  # segments sent again: timeouts, fast retransmits, repeated probes, SYNs
        self._snd, self._rcv = send, receive
        self._rto = RetransmitTimeout(tuning.initial_rto, tuning.min_rto, tuning.max_rto)
        self._rtx_timer = self._delack_timer = self._time_wait_timer = None
        self._rtx_timer_at = 0
        self._rtx_deadline: int | None = None  # when the retransmission/probe timer is really due
        self._retries = self._probes = 0
        self._rtt_seq: int | None = None  # the segment being timed ends here (one at a time, RFC 6298)
        self._rtt_start = 0
        self._events: deque = deque()
        self._flushing = False

    # -- state and events ---------------------------------------------------------------------------

    def _check(self, event: str) -> None:
        if event not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"a {self.state.value} connection cannot {event}")

    def _advance(self, event: str) -> None:
        self._check(event)
        self.state = TRANSITIONS[self.state][event]
        if self.state is S.TIME_WAIT:
            self._start_time_wait()

    def _notify(self, callback: Callable, *args) -> None:
        self._events.append((callback, args))

    def _flush(self) -> None:
        """Fire queued events in order; events a callback causes queue behind them."""
        if self._flushing:
            return
        self._flushing = True
        try:
            events = self._events
            while events:
                callback, args = events.popleft()
                callback(*args)
        finally:
            self._flushing = False

    def _finish(self, event: str, reason: str) -> None:
        self._advance(event)
        for timer in (self._rtx_timer, self._delack_timer, self._time_wait_timer):
            if timer is not None:
                timer.cancel()
        self._rtx_timer = self._delack_timer = self._time_wait_timer = self._rtx_deadline = None
        self.close_reason = reason
        self._events.clear()  # nothing is delivered after the end, not even what was queued before it
        self._notify(self._on_closed, reason)

    # -- sending ------------------------------------------------------------------------------------

    def _output(self) -> None:
        """Send all the windows allow; keep the timer running while anything is outstanding or waits."""
        if self.state not in SENDING:
            return
        snd = self._snd
        while (segment := snd.next_segment()) is not None:
            snd.nxt = self._send_segment(*segment)
            if segment[2]:
                break  # the FIN is the last
        if snd.max > snd.una or snd.nxt < snd.end:
            self._arm_rtx(restart=False)  # data outstanding, or a closed window to probe
        else:
            self._rtx_deadline = None

    def _send_segment(self, seq: int, length: int, fin: int) -> int:
        """Send ``length`` queued bytes from ``seq``, and a FIN after them; return the sequence number after."""
        snd = self._snd
        sent_before, first_fin = snd.max, fin and snd.fin_seq is None
        payload, flags = snd.take(seq, length, fin)
        end = seq + length + fin
        if end <= sent_before:
            self.retransmissions += 1
        elif self._rtt_seq is None and seq >= sent_before:
            self._rtt_seq, self._rtt_start = end, self._clock.now
        if first_fin:
            self._advance("send_fin")
        self._emit(seq, flags, payload)
        return end

    def _retransmit_head(self, length: int) -> None:
        """Send the oldest unacknowledged bytes (at most ``length``) again; ``nxt`` stays where it is."""
        segment = self._snd.head(length)
        self._rtt_seq = None  # Karn: never time a retransmitted segment
        if segment is not None:
            self._send_segment(*segment)

    def _send_syn(self) -> None:
        self._emit(self.iss, SYN | ACK if self.state is S.SYN_RECEIVED else SYN, b"", self._mss)

    def _send_ack(self) -> None:
        self._emit(self._snd.acceptable_seq(), ACK)

    def _emit_reset(self, seq: int) -> None:
        self._transmit(seq & SEQ_MASK, 0, RST, 0, b"", None)

    def _emit(self, seq: int, flags: int, payload: bytes = b"", mss: int | None = None) -> None:
        """Every segment of ours but a reset to a stranger leaves here, with our ACK and window."""
        rcv = self._rcv
        rcv.ack_now, rcv.unacked = False, 0
        if self._delack_timer is not None:
            self._delack_timer.cancel()
            self._delack_timer = None
        self._transmit(seq & SEQ_MASK, rcv.nxt & SEQ_MASK if flags & ACK else 0, flags, rcv.window(), payload, mss)

    # -- timers -------------------------------------------------------------------------------------

    def _arm_rtx(self, restart: bool) -> None:
        if not restart and self._rtx_deadline is not None:
            return
        self._rtx_deadline = deadline = self._clock.now + self._rto.current
        if self._rtx_timer is None or self._rtx_timer_at > deadline:
            if self._rtx_timer is not None:
                self._rtx_timer.cancel()
            self._rtx_timer, self._rtx_timer_at = self._clock.at(deadline, self._on_rtx_timer), deadline

    def _on_rtx_timer(self) -> None:
        self._rtx_timer = None
        deadline = self._rtx_deadline
        if deadline is None:
            return
        if deadline > self._clock.now:  # ACKs moved the deadline on since this was scheduled
            self._rtx_timer, self._rtx_timer_at = self._clock.at(deadline, self._on_rtx_timer), deadline
            return
        self._rtx_deadline = None
        snd = self._snd
        if self.state in HANDSHAKE:
            self._handshake_timeout()
        elif snd.wnd == 0 or snd.max == snd.una:
            self._probe()
        else:
            self._timeout()
        self._flush()

    def _handshake_timeout(self) -> None:
        syn_sent = self.state is S.SYN_SENT
        limit = self._tuning.syn_retries if syn_sent else self._tuning.synack_retries
        if self._retries >= limit:
            syn = "SYN" if syn_sent else "SYN-ACK"
            self._finish("timeout", f"timeout: no answer to the {syn} after {limit} retransmissions")
            return
        self._retries += 1
        self._rto.backoff += 1
        self._rtt_seq = None
        self.retransmissions += 1
        self._send_syn()
        self._arm_rtx(restart=True)

    def _timeout(self) -> None:
        """RFC 6298 5.5-5.6, RFC 5681 3.1: back off, fall to one segment, resend from the oldest unacknowledged."""
        limit = self._tuning.retries
        if self._retries >= limit:
            self._finish("timeout", f"timeout: {limit} retransmissions unanswered")
            return
        self._retries += 1
        self._rto.backoff += 1
        self._rtt_seq = None
        snd = self._snd
        snd.cc.on_timeout(snd.max - snd.una, snd.max)
        snd.nxt = snd.una  # go back N
        self._output()

    def _probe(self) -> None:
        """The persist timer (RFC 1122 4.2.2.17): poke a zero window with one byte, or send what a small one takes."""
        limit, snd = self._tuning.retries, self._snd
        if self._probes >= limit:
            self._finish("timeout", f"timeout: {limit} zero-window probes unanswered")
            return
        if snd.max > snd.una:
            self._retransmit_head(1)
        else:
            length = min(max(snd.wnd, 1), snd.end - snd.nxt, snd.mss)
            if length <= 0:
                return  # nothing left to probe with
            end = self._send_segment(snd.nxt, length, 0)
            if snd.wnd:
                snd.nxt = end  # what a small window takes is sent; a zero window refuses the probe byte, so
            self._rtt_seq = None  # sending goes on from it once the window opens (BSD pulls snd_nxt back too)
        self._probes += 1
        self._rto.backoff += 1
        self._arm_rtx(restart=True)

    def _on_delayed_ack(self) -> None:
        self._delack_timer = None
        if self._rcv.unacked or self._rcv.ack_now:
            self._send_ack()

    def _start_time_wait(self) -> None:
        if self._time_wait_timer is not None:
            self._time_wait_timer.cancel()
        self._rtx_deadline = None
        self._time_wait_timer = self._clock.after(self._tuning.time_wait, self._on_time_wait)

    def _on_time_wait(self) -> None:
        self._time_wait_timer = None
        self._finish("expire", "closed")
        self._flush()
