"""
Service Engine life cycles and their part in a virtual service, as transition tables.

Rule: every change of an SE's state, and of its part in a VS, goes through
``SeLifecycle.apply`` or ``Roles.apply``, and the two tables below are the
whole truth about which changes exist.  An event a table does not allow
raises ``IllegalTransition`` and leaves the state unchanged (the h11
``_state.py`` discipline).

An SE's own life (``SE_TRANSITIONS``):

- ``CREATING``: the controller (write access) or an administrator is booting it.
- ``READY``: created and connected to the controller.
- ``FAILED``: dead (the SE, or its host); ``recover`` makes it ``READY``.
- ``GONE``: a creation that failed for good.

Its part in one virtual service (``ROLE_TRANSITIONS``; no entry: not in it):

- ``JOINING``: being added to the VS ("scaling out"), takes no flows yet.
- ``MEMBER``: takes new flows (one member is the primary).
- ``DRAINING``: takes no new flows; its flows continue until the drain ends.
- ``STANDBY``: legacy active/standby only: configured and ready, takes no
  flows; ``take_over`` makes it the member (and primary) when the active fails.

Each stint in a role is its own ``Stint`` object, so a timer that belongs to
an earlier stint (a drain that was ended by a failure, say) can tell it is
stale: membership, draining and drain identity are one table, not four sets.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterator


class SeState(Enum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"
    GONE = "gone"


class Role(Enum):
    JOINING = "joining"
    MEMBER = "member"
    DRAINING = "draining"
    STANDBY = "standby"


SE_TRANSITIONS: dict[SeState, dict[str, SeState]] = {
    SeState.CREATING: {"created": SeState.READY, "creation_failed": SeState.GONE},
    SeState.READY: {"fail": SeState.FAILED},
    SeState.FAILED: {"recover": SeState.READY},
    SeState.GONE: {},
}

#: ``None`` stands for "not in the VS": where an SE starts and where every stint ends.
ROLE_TRANSITIONS: dict[Role | None, dict[str, Role | None]] = {
    None: {"place": Role.MEMBER, "join": Role.JOINING, "stand_by": Role.STANDBY},
    Role.JOINING: {"joined": Role.MEMBER, "fail": None},
    Role.MEMBER: {"drain": Role.DRAINING, "fail": None},
    Role.DRAINING: {"drained": None, "fail": None},
    Role.STANDBY: {"take_over": Role.MEMBER, "fail": None},
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
        target = SE_TRANSITIONS[state].get(event)
        if target is None:
            raise IllegalTransition(f"{name} is {state.value}: cannot {event}")
        self.states[name] = target
        return target

    def named(self, state: SeState) -> list[str]:
        return [name for name, current in self.states.items() if current is state]


class Stint:
    """One SE's time in one role of one VS (``until_ns``: when a drain ends)."""

    __slots__ = ("role", "until_ns")

    def __init__(self, role: Role):
        self.role = role
        self.until_ns = 0


class Roles:
    """The part each SE plays in one VS, in the order the SEs came in."""

    def __init__(self) -> None:
        self._stints: dict[str, Stint] = {}

    def get(self, name: str) -> Role | None:
        stint = self._stints.get(name)
        return stint.role if stint else None

    def stint(self, name: str) -> Stint | None:
        return self._stints.get(name)

    def apply(self, name: str, event: str) -> Role | None:
        current = self.get(name)
        if event not in ROLE_TRANSITIONS[current]:
            where = current.value if current else "not in the VS"
            raise IllegalTransition(f"{name} is {where}: cannot {event}")
        target = ROLE_TRANSITIONS[current][event]
        if target is None:
            del self._stints[name]
        elif current is None:
            self._stints[name] = Stint(target)  # a new stint joins at the end of the order
        elif target is not current:
            self._stints[name] = Stint(target)  # same place in the order, a new stint
        return target

    def named(self, role: Role) -> Iterator[str]:
        return (name for name, stint in self._stints.items() if stint.role is role)
