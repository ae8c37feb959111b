"""
The states of the emulated TCP endpoints (clients and pool servers), as a transition table.

Rule: every change of a connection's state goes through ``advance``, and the
table below is the whole truth about which changes exist (the h11
``_state.py`` discipline; ``dataplane.control.se_state`` does the same for
Service Engines).  An event the table does not allow raises
``IllegalTransition`` and leaves the state unchanged.

The endpoints are deliberately small: a client opens (``SYN_SENT``), sends
its requests once ``ESTABLISHED``, closes first (``FIN_WAIT``) and is done
when the server's FIN arrives; a server accepts (``SYN_RECEIVED``), answers,
and after the client's FIN waits for the last ACK (``LAST_ACK``).  A RST,
or a client giving up, ends any state.
"""

from __future__ import annotations

from enum import Enum


class TcpState(Enum):
    SYN_SENT = "syn-sent"
    SYN_RECEIVED = "syn-received"
    ESTABLISHED = "established"
    FIN_WAIT = "fin-wait"
    LAST_ACK = "last-ack"
    CLOSED = "closed"


S = TcpState
TRANSITIONS: dict[TcpState, dict[str, TcpState]] = {
    S.SYN_SENT: {"syn_ack": S.ESTABLISHED, "reset": S.CLOSED, "abort": S.CLOSED},
    S.SYN_RECEIVED: {"ack": S.ESTABLISHED, "fin": S.LAST_ACK, "reset": S.CLOSED},
    S.ESTABLISHED: {"close": S.FIN_WAIT, "fin": S.LAST_ACK, "done": S.CLOSED, "reset": S.CLOSED,
                    "abort": S.CLOSED},
    S.FIN_WAIT: {"fin": S.CLOSED, "reset": S.CLOSED, "abort": S.CLOSED},
    S.LAST_ACK: {"fin": S.LAST_ACK, "ack": S.CLOSED, "reset": S.CLOSED},
    S.CLOSED: {},
}


class IllegalTransition(Exception):
    pass


def advance(state: TcpState, event: str) -> TcpState:
    """Return the state ``event`` leads to from ``state``; raise ``IllegalTransition`` if none."""
    target = TRANSITIONS[state].get(event)
    if target is None:
        raise IllegalTransition(f"a {state.value} connection cannot {event}")
    return target
