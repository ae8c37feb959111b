"""
The life cycle of a Service Engine as the controller sees it, as a transition table.

Rule: every change of an SE's state goes through ``SeLifecycle.apply``, and
the table below is the whole truth about which changes exist.  An event
that the table does not allow raises ``IllegalTransition`` and leaves the
state unchanged (the h11 ``_state.py`` discipline).

- ``CREATING``: the controller (write access) or an administrator is booting it.
- ``READY``: created and connected, serving no VS: a scale out may reuse it.
- ``JOINING``: being added to the VS ("scaling out"), takes no flows yet.
- ``MEMBER``: takes new flows (the first member is the primary).
- ``DRAINING``: takes no new flows; its flows continue until the drain ends.
- ``FAILED``: dead (the SE, or its host); ``recover`` makes it ``READY``.
- ``GONE``: a creation that failed for good.
"""

from __future__ import annotations

from enum import Enum


class SeState(Enum):
    CREATING = "creating"
    READY = "ready"
    JOINING = "joining"
    MEMBER = "member"
    DRAINING = "draining"
    FAILED = "failed"
    GONE = "gone"


TRANSITIONS: dict[SeState, dict[str, SeState]] = {
    SeState.CREATING: {"created": SeState.READY, "creation_failed": SeState.GONE},
    SeState.READY: {"join": SeState.JOINING, "place": SeState.MEMBER, "fail": SeState.FAILED},
    SeState.JOINING: {"joined": SeState.MEMBER, "fail": SeState.FAILED},
    SeState.MEMBER: {"drain": SeState.DRAINING, "fail": SeState.FAILED},
    SeState.DRAINING: {"drained": SeState.READY, "fail": SeState.FAILED},
    SeState.FAILED: {"recover": SeState.READY},
    SeState.GONE: {},
}


class IllegalTransition(Exception):
    pass


class SeLifecycle:
    """The states of all SEs by name."""

    def __init__(self) -> None:
        self.states: dict[str, SeState] = {}

    def add(self, name: str, state: SeState) -> None:
        self.states[name] = state

    def get(self, name: str) -> SeState | None:
        return self.states.get(name)

    def apply(self, name: str, event: str) -> SeState:
        state = self.states[name]
        target = TRANSITIONS[state].get(event)
        if target is None:
            raise IllegalTransition(f"{name} is {state.value}: cannot {event}")
        self.states[name] = target
        return target

    def named(self, state: SeState) -> list[str]:
        return [name for name, current in self.states.items() if current is state]
