"""
One side of one TCP connection, sans-IO: the endpoint the TCP proxy profile is built from (issue 12).

The endpoint never touches a frame, a NIC or the wall clock.  Its owner hands
it the header fields of every segment of the connection and builds a frame
from each segment it asks to send; time comes from the ``Simulator``.

Contract (what the owner may rely on and must do):

- ``TcpEndpoint(clock, isn, transmit=..., on_established=..., on_data=...,
  on_fin=..., on_closed=..., on_writable=None, mss=1460,
  receive_buffer=65535, send_buffer=131072, tuning=TcpTuning())``.  The
  owner draws ``isn`` from a seeded RNG.  ``receive_buffer`` is also the
  largest window advertised (no window scaling, so at most 65535).
- ``transmit(seq, ack, flags, window, payload, mss_option)``: send one
  segment.  Numbers are 32-bit wire values, ``flags`` the ``wire.headers``
  bits, ``ack`` is 0 when ACK is not set, ``mss_option`` is an int only on
  SYN and SYN-ACK.  It must not deliver the segment to the peer endpoint
  synchronously (put it on the clock, as a wire does).
- ``open()`` sends a SYN; ``accept(seq, mss)`` answers a received SYN (its
  sequence number and MSS option, None if absent) with a SYN-ACK.  Every
  later segment of the connection, a retransmitted SYN included, goes to
  ``receive(seq, ack, flags, window, payload, mss_option)``.
- ``send(data)`` queues bytes and returns how many fitted (``send_space()``
  says how many fit); ``on_writable()`` fires when acknowledgements free
  space, until ``close()``.  Bytes may be queued before the handshake.
- ``on_data(bytes)`` delivers in-order bytes exactly once.  They occupy the
  receive buffer, and so shrink the advertised window, until the owner
  calls ``consume(n)`` (e.g. once the other side of a proxy took them):
  an owner that stops consuming closes the peer's window.
- ``close()`` sends a FIN once every queued byte has been sent (queued
  before the handshake completes, it waits for it); ``on_fin()`` says the
  peer closed its direction, after its last byte was delivered.
- ``abort(reason)`` sends a RST with an ACK (in the states RFC 9293 3.10.4
  names; at the highest sequence number sent, or the peer's window edge if
  that is lower, as Linux does) and closes at once.
- ``on_closed(reason)`` fires exactly once, last, when the endpoint may be
  forgotten.  ``reason`` starts with ``closed`` (both FINs exchanged;
  after TIME_WAIT for the side that closed first), ``reset`` (an exact RST
  from the peer), ``refused`` (a RST answering our SYN), ``timeout``
  (retransmissions, SYNs or zero-window probes unanswered) or ``aborted:``
  followed by the owner's reason.  A closed endpoint answers segments as a
  closed port does (RST, RFC 9293 3.10.7.1), which completes the RFC 5961
  challenge-ACK exchange after an abort; after ``on_closed`` the owner may
  drop it and answer strays with ``frames.tcp_reset_for`` instead.
- Events are fired after the endpoint's state is consistent, in order
  (established, data, fin, closed); a callback may call any method.  A
  method the state does not allow raises ``IllegalTransition`` and changes
  nothing.  ``state`` is an ``EndpointState``; ``TRANSITIONS`` (kept in
  ``tcp_connection``) is every change it can make.
- Read-only for the owner: ``state``, ``iss``, ``close_reason``,
  ``retransmissions``, ``send_mss``, ``peer_window``, ``receive_window``,
  ``unacknowledged``, ``unconsumed``, ``rto``.
- Nothing ends an idle connection (no keep-alive, no FIN_WAIT_2 timeout,
  as for a Linux socket that is still open): the owner's idle timeout
  aborts it.

Behaviour (RFC 9293, 1122, 5681, 5961, 6298, 6582, 6928): sequence numbers
modulo 2**32 (see ``tcp_algorithms``); no segment larger than the peer's
MSS (536 without the option); never more unacknowledged bytes than the
peer's window, except the one-byte zero-window probe, sent on the
retransmission timer with back-off; a bare FIN is sent even into a zero
window and accepted at one, as Linux does.  Out-of-order segments are held
and acknowledged at once with a duplicate ACK.  Delayed ACK: at once for a
second full-sized segment, an out-of-order or gap-filling segment or a FIN,
else after ``tuning.delayed_ack`` (40 ms).  Receiver and sender silly-window
avoidance; a window update when consuming at least doubles a window that
had fallen below half the buffer (Linux's rule).  RFC 6298 RTO (1 s
initially, 200 ms to 120 s, doubling); the connection times out after
``tuning.retries`` (15) retransmissions or unanswered probes, or
``syn_retries`` (6) / ``synack_retries`` (5) for the handshake, with no RST.
After a handshake whose SYN went again the RTO is 3 s until an RTT is
measured (RFC 6298 5.7, as Linux).  Congestion window: slow start from 10
segments, congestion avoidance, fast retransmit on three duplicates,
NewReno recovery; a timeout goes back to one segment and resends from the
oldest unacknowledged byte.  RSTs are
accepted only at exactly the next expected sequence number, answered with a
challenge ACK elsewhere in the window and ignored outside it; a SYN on a
synchronized connection gets a challenge ACK (RFC 5961).  TIME_WAIT lasts
``tuning.time_wait`` (2 s, not 2 MSL: this is an emulator), restarts on
a retransmitted FIN and ends at an exact RST (Linux's default, without
RFC 1337).  Not modelled: window scaling, SACK, timestamps, urgent data,
data on a SYN, keep-alive, challenge-ACK rate limits.
"""

from __future__ import annotations

from typing import Callable

from ..clock import NS_PER_S, Simulator
from ..wire.headers import ACK, FIN, RST, SYN, TCP_MSS
from .tcp_algorithms import SEQ_MASK, unwrap
from .tcp_connection import (PEER_SENDING, RESET_ON_ABORT, SYNCHRONIZED, TRANSITIONS, EndpointState, S,
                             TcpConnection, TcpTuning, Transmit)
from .tcp_state import IllegalTransition
from .tcp_streams import ReceiveStream, SendStream

__all__ = ["DEFAULT_SEND_BUFFER", "MAX_WINDOW", "EndpointState", "IllegalTransition", "TRANSITIONS", "TcpEndpoint",
           "TcpTuning"]

MAX_WINDOW = 0xFFFF  # without window scaling (RFC 7323) a window field holds no more
DEFAULT_PEER_MSS = 536  # RFC 9293 3.7.1: the peer sent no MSS option
DEFAULT_SEND_BUFFER = 128 * 1024  # two full peer windows: enough to keep a 64 KiB pipe full


class TcpEndpoint(TcpConnection):
    """One side of one TCP connection; the module docstring is its contract."""

    def __init__(self, clock: Simulator, isn: int, *, transmit: Transmit, on_established: Callable[[], None],
                 on_data: Callable[[bytes], None], on_fin: Callable[[], None], on_closed: Callable[[str], None],
                 on_writable: Callable[[], None] | None = None, mss: int = TCP_MSS,
                 receive_buffer: int = MAX_WINDOW, send_buffer: int = DEFAULT_SEND_BUFFER,
                 tuning: TcpTuning = TcpTuning()):
        if not 0 <= isn <= SEQ_MASK:
            raise ValueError(f"isn {isn} is not a 32-bit sequence number")
        if not 1 <= mss <= 65495:
            raise ValueError(f"mss {mss} is not between 1 and 65495")
        if not 1 <= receive_buffer <= MAX_WINDOW:
            raise ValueError(f"receive_buffer {receive_buffer} is not between 1 and {MAX_WINDOW} (no window scaling)")
        if send_buffer < 1:
            raise ValueError(f"send_buffer {send_buffer} must be at least 1")
        first_mss = min(mss, DEFAULT_PEER_MSS)  # until the peer's SYN says more
        super().__init__(clock, isn, transmit, (on_established, on_data, on_fin, on_closed, on_writable), mss,
                         SendStream(isn, send_buffer, first_mss, tuning.initial_window),
                         ReceiveStream(receive_buffer, first_mss), tuning)

    # -- what the owner reads -----------------------------------------------------------------------

    @property
    def send_mss(self) -> int:
        """The largest segment sent: our MSS or the peer's, whichever is smaller."""
        return self._snd.mss

    @property
    def peer_window(self) -> int:
        return self._snd.wnd

    @property
    def receive_window(self) -> int:
        """The window last promised to the peer, counted from the next byte expected."""
        return self._rcv.edge - self._rcv.nxt

    @property
    def unacknowledged(self) -> int:
        """Sequence space sent and not acknowledged (a SYN or FIN counts one)."""
        return self._snd.max - self._snd.una

    @property
    def unconsumed(self) -> int:
        return self._rcv.unconsumed

    @property
    def rto(self) -> int:
        return self._rto.current

    def send_space(self) -> int:
        return self._snd.space()

    # -- what the owner does ------------------------------------------------------------------------

    def open(self) -> None:
        """Active open: send a SYN with our MSS."""
        self._advance("open")
        self._start_handshake()

    def accept(self, seq: int, mss: int | None) -> None:
        """Passive open from a received SYN: answer with a SYN-ACK carrying our ISN and MSS."""
        self._advance("accept")
        self._synchronize(seq, mss)
        self._start_handshake()

    def send(self, data: bytes) -> int:
        """Queue as much of ``data`` as the send buffer holds; return how much that was."""
        self._check("send")
        if self._snd.fin_queued:
            raise IllegalTransition(f"a {self.state.value} connection cannot send after close()")
        taken = self._snd.queue(data)
        self._output()
        self._flush()
        return taken

    def consume(self, count: int) -> None:
        """The owner is done with ``count`` delivered bytes: their space opens the window again."""
        if self._rcv.consume(count) and self.state in PEER_SENDING:
            self._send_ack()  # a window update: the peer may be stalled on the old window

    def close(self) -> None:
        """Send a FIN after every queued byte (a half close: the peer's data still arrives)."""
        self._check("close")
        if self._snd.fin_queued:
            raise IllegalTransition(f"a {self.state.value} connection is already closed")
        self._snd.fin_queued = True
        self._output()
        self._flush()

    def abort(self, reason: str) -> None:
        """Reset the connection now (RFC 9293 3.10.4) and close with ``aborted: reason``."""
        self._check("abort")
        if self.state in RESET_ON_ABORT:
            self._emit(self._snd.acceptable_seq(), RST | ACK)
        self._finish("abort", f"aborted: {reason}")
        self._flush()

    def receive(self, seq: int, ack: int, flags: int, window: int, payload: bytes,
                mss_option: int | None = None) -> None:
        """Process one segment of this connection (its header fields as on the wire)."""
        state = self.state
        if state in SYNCHRONIZED:
            self._receive_synchronized(seq, ack, flags, window, payload)
        elif state is S.SYN_SENT:
            self._receive_in_syn_sent(seq, ack, flags, window, mss_option)
        elif state is S.CLOSED:
            self._answer_as_closed(seq, ack, flags, len(payload))
        else:
            raise IllegalTransition("an initial connection cannot receive: accept() its SYN first")
        self._flush()

    # -- handshake ----------------------------------------------------------------------------------

    def _synchronize(self, seq: int, mss: int | None) -> None:
        """Learn the peer's ISN and MSS from its SYN."""
        self._rcv.synchronize(seq)
        self._snd.mss = min(self._mss, mss or DEFAULT_PEER_MSS)
        self._rcv.set_mss(self._snd.mss)

    def _start_handshake(self) -> None:
        self._snd.nxt = self._snd.max = self.iss + 1
        self._send_syn()
        self._rtt_seq, self._rtt_start = self.iss + 1, self._clock.now
        self._arm_rtx(restart=True)
        self._flush()

    def _established(self, event: str, seq: int, ack: int, window: int) -> None:
        self._advance(event)
        if self._rtt_seq is None:  # our SYN went again, so its ACK measures nothing (Karn)
            self._rto.handshake_unmeasured(3 * NS_PER_S)
        self._snd.start(self._tuning.initial_window)
        self._snd.force_window(seq, ack, window)
        self._notify(self._on_established)

    def _receive_in_syn_sent(self, seq: int, ack: int, flags: int, window: int, mss: int | None) -> None:
        if flags & ACK:
            ack = unwrap(ack, self._snd.una)
            if ack != self._snd.max:  # not an answer to our SYN (RFC 9293 3.10.7.3)
                if not flags & RST:
                    self._emit_reset(ack)
                return
            if flags & RST:
                self._finish("reset", "refused: the peer reset the connection attempt")
                return
        if flags & RST or not flags & SYN:
            return
        self._synchronize(seq, mss)
        if not flags & ACK:  # simultaneous open: both sent a SYN
            self._advance("syn")
            self._send_syn()
            return
        self._established("syn_ack", seq, ack, window)
        self._new_ack(ack)
        self._send_ack()
        self._output()

    # -- arrival in a synchronized state (RFC 9293 3.10.7.4) ----------------------------------------

    def _receive_synchronized(self, seq: int, ack: int, flags: int, window: int, payload: bytes) -> None:
        rcv = self._rcv
        seq = unwrap(seq, rcv.nxt)
        if flags & RST:
            self._receive_reset(seq)
            return
        if flags & SYN:
            if self.state is not S.SYN_RECEIVED or seq + 1 != rcv.nxt or payload:
                self._send_ack()  # RFC 5961 4.2: a SYN on a synchronized connection gets a challenge ACK
                return
            if not flags & ACK:
                self._send_syn()  # the peer's SYN again: our SYN-ACK was lost
                return
            seq += 1  # a simultaneous open's SYN-ACK: its ACK completes the handshake, as Linux lets it
        fin = flags & FIN
        if not rcv.acceptable(seq, len(payload) + fin):
            self._send_ack()  # old, or beyond the window: say what we expect instead
            return
        if not flags & ACK or not self._receive_ack(seq, ack, window, payload, fin):
            return
        if payload or fin:
            self._receive_text(seq, payload, fin)
        if self.state not in SYNCHRONIZED:
            return  # the segment ended the connection
        self._output()
        if rcv.ack_now:
            self._send_ack()
        elif rcv.unacked and self._delack_timer is None:
            self._delack_timer = self._clock.after(self._tuning.delayed_ack, self._on_delayed_ack)

    def _receive_reset(self, seq: int) -> None:
        if seq == self._rcv.nxt:
            self._finish("reset", "closed" if self.state is S.TIME_WAIT else "reset by the peer")
        elif self._rcv.nxt < seq < self._rcv.edge:
            self._send_ack()  # RFC 5961 3.2: in the window but not exact: a challenge ACK
        # outside the window: ignored (RFC 5961 3.2)

    def _receive_ack(self, seq: int, ack: int, window: int, payload: bytes, fin: int) -> bool:
        """Process the ACK field and the window; False if the segment must go no further."""
        snd = self._snd
        ack = unwrap(ack, snd.una)
        if self.state is S.SYN_RECEIVED:
            if ack != snd.max:
                self._emit_reset(ack)  # RFC 9293: an unacceptable ACK in SYN-RECEIVED gets <SEQ=SEG.ACK><RST>
                return False
            self._established("ack_of_syn", seq, ack, window)
        if ack > snd.max or ack < snd.una - snd.max_wnd:
            self._send_ack()  # acknowledges what was never sent, or too old to believe (RFC 5961 5.2)
            return False
        self._probes = 0  # the peer answers: zero-window probing goes on for as long as it does
        advanced = ack > snd.una
        if advanced:
            self._new_ack(ack)
        elif (ack == snd.una < snd.max and not payload and not fin and window == snd.wnd != 0
              and snd.cc.on_duplicate_ack(snd.max - ack, snd.max, ack)):
            self._retransmit_head(snd.mss)  # fast retransmit (RFC 5681 3.2)
        if snd.update_window(seq, ack, window, advanced):
            self._rto.backoff = 0  # the window opened: probing is over
        return self.state in SYNCHRONIZED

    def _new_ack(self, ack: int) -> None:
        """``ack`` acknowledges something new: free the bytes, time the RTT, grow the window, stop or move the timer."""
        snd = self._snd
        flight = snd.max - snd.una
        acked = snd.acknowledge(ack)
        if self._rtt_seq is not None and ack >= self._rtt_seq:
            self._rto.sample(self._clock.now - self._rtt_start)
            self._rtt_seq = None
        self._retries = self._rto.backoff = 0
        if acked and snd.cc.on_new_ack(acked, ack, flight):
            self._retransmit_head(snd.mss)  # NewReno: a partial ACK shows the next hole
        if snd.fin_seq is not None and ack > snd.fin_seq and self.state in (S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK):
            if self.state is S.LAST_ACK:
                self._finish("ack_of_fin", "closed")
                return
            self._advance("ack_of_fin")
        if ack == snd.max:
            self._rtx_deadline = None
        else:
            self._arm_rtx(restart=True)  # RFC 6298 5.3
        if acked and self._on_writable is not None and not snd.fin_queued:
            self._notify(self._on_writable)

    def _receive_text(self, seq: int, payload: bytes, fin: int) -> None:
        """Deliver the data and FIN of an acceptable segment in order; what is ahead of a gap waits."""
        if self._rcv.fin_received:  # nothing follows the peer's FIN: this is a retransmission, our ACK was lost
            self._rcv.ack_now = True
            if self.state is S.TIME_WAIT:
                self._start_time_wait()  # RFC 9293: a retransmitted FIN restarts TIME_WAIT
            return
        ready, fin_now = self._rcv.accept(seq, payload, fin)
        for chunk in ready:
            self._notify(self._on_data, chunk)
        if fin_now:
            self._notify(self._on_fin)
            self._advance("fin")

    def _answer_as_closed(self, seq: int, ack: int, flags: int, length: int) -> None:
        """RFC 9293 3.10.7.1: a segment for a closed connection gets a RST (a RST gets nothing)."""
        if flags & RST:
            return
        if flags & ACK:
            self._transmit(ack, 0, RST, 0, b"", None)
        else:
            after = (seq + length + (1 if flags & SYN else 0) + (flags & FIN)) & SEQ_MASK
            self._transmit(0, after, RST | ACK, 0, b"", None)

