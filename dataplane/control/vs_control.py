"""
The controller's work on one virtual service: placement, scale out and in, migrate, failover, HA modes.

``VsControl`` owns every change to one VS's set of SEs, by the behaviours
of docs/design.md: placement and the primary's gratuitous ARP (B1), scale
out (B8), scale in with its drain (B9), migrate (B10), what a failure does
to the VS (B14) and the HA mode's rules (B15):

- ``elastic-n+m``: a VS whose SEs all failed is placed again on spare
  capacity (a connected SE with room, else a new one under write access);
- ``elastic-active-active``: the VS is kept on at least two SEs;
- ``legacy-active-standby``: the VS is active on one SE and standby on the
  other, which takes the VIP over when the active fails; no scale out.

SE-level work (life cycles, creation, failure detection) is the
``Controller``'s; it reaches this class through ``SeControl``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..clock import NS_PER_S, URGENT, Simulator, seconds
from ..errors import Refused
from ..nodes.nat import UDP_IDLE
from ..scenario import SeGroup
from ..wire import frames
from .se_state import Role
from .virtual_service import VirtualService

#: An existing, connected SE joins a VS "in seconds" (Avi docs); a new one must boot first.
SE_JOIN_DELAY = 2.0


class SeControl(Protocol):
    """What a VS's controller asks of the SE-level controller."""

    sim: Simulator
    group: SeGroup

    def log(self, kind: str, **fields: Any) -> None: ...

    def refuse(self, action: str, reason: str, vs: str | None = None) -> None: ...

    def no_room(self, exclude: set[str], vs: VirtualService) -> str: ...

    def se(self, name: str) -> Any: ...

    def describe(self, name: str, vs: VirtualService | None = None) -> str: ...

    def is_free(self, name: str, vs: VirtualService) -> bool: ...

    def spare_se(self, exclude: set[str], vs: VirtualService) -> str | None: ...

    def new_se(self, why: str, then: Callable[[str], None], failed: Callable[[str, str], None]) -> str: ...

    def can_create(self) -> str | None: ...

    def new_phase(self, label: str, vs: VirtualService) -> None: ...


class VsControl:
    def __init__(self, vs: VirtualService, control: SeControl):
        self.vs = vs
        self.control = control
        self.sim = control.sim
        self.group = control.group
        self.scaling_out: str | None = None

    def log(self, kind: str, **fields: Any) -> None:
        self.control.log(kind, vs=self.vs.name, **fields)

    @property
    def legacy(self) -> bool:
        return self.group.ha_mode == "legacy-active-standby"

    def minimum(self) -> int:
        """How many SEs the HA mode keeps the VS on."""
        if self.legacy:
            return 1
        return max(self.group.min_scaleout_per_vs, 2 if self.group.ha_mode == "elastic-active-active" else 1)

    # -- placement (B1) -----------------------------------------------------------------

    def place(self, standby: str | None) -> None:
        placement = list(self.vs.placement)
        if self.legacy:  # the active SE, and the standby: named second, or else the pair's other SE
            placement, standby = placement[:1], (placement[1:] or [standby])[0]
        else:
            standby = None
        for name in placement:
            self.control.se(name).start_monitoring(self.vs)
        self.vs.place(placement)
        if standby is not None:
            self.vs.stand_by(standby)
        self.control.se(placement[0]).announce_vip(self.vs, "placed as primary")
        self.control.log("vs.placed", vs=self.vs.name, primary=placement[0], service_engines=placement,
                         **{key: frames.ip_text(vip) for key, vip in (("vip", self.vs.vip), ("vip6", self.vs.vip6))
                            if vip is not None},
                         **({"standby": standby} if standby else {}))

    # -- scale out (B8) ------------------------------------------------------------------

    def scale_out(self, wanted: str | None, why: str) -> None:
        if self.legacy:
            raise Refused("ha_mode legacy-active-standby does not scale out")
        if self.scaling_out is not None:
            raise Refused(f"a scale out ({self.scaling_out}) is already in progress")
        if len(self.vs.members) >= self.group.max_scaleout_per_vs:
            raise Refused(f"the VS is already on {len(self.vs.members)} SEs "
                          f"(max_scaleout_per_vs = {self.group.max_scaleout_per_vs})")
        if wanted and not self.control.is_free(wanted, self.vs):
            raise Refused(f"{wanted} is {self.control.describe(wanted, self.vs)}, not a connected SE free to join")
        se = wanted or self.control.spare_se(set(self.vs.peers), self.vs)
        if se is None:
            cannot = self.control.can_create()
            if cannot:
                raise Refused(f"no connected SE has room ({self.control.no_room(set(self.vs.peers), self.vs)}); "
                              f"{cannot}")
        if se is not None:
            self.scaling_out = se
            self.log("scale_out.started", se=se, reused=True, reason=why)
            self._join(se, lambda: self._scaled_out(se), lambda reason: self._scale_out_failed(se, reason))
            return
        self.scaling_out = "new SE"
        name = self.control.new_se(why, then=lambda name: self._join(
            name, lambda: self._scaled_out(name), lambda reason: self._scale_out_failed(name, reason)),
            failed=self._scale_out_failed)
        self.scaling_out = name
        self.log("scale_out.started", se=name, reused=False, reason=why)

    def _scale_out_failed(self, name: str, reason: str) -> None:
        self.scaling_out = None
        self.log("scale_out.failed", se=name, reason=reason)
        self.ensure_minimum()

    def _join(self, name: str, then: Callable[[], None], failed: Callable[[str], None]) -> None:
        """Add ``name`` to the VS once it reports ready ("scaling out"), then call ``then``.

        A live SE is ready after ``SE_JOIN_DELAY``; one that died meanwhile never reports, and the join
        fails at ``vs_se_scaleout_ready_timeout`` (or earlier, when its failure is declared).
        """
        self.vs.join(name)
        timeout = self.group.vs_se_scaleout_ready_timeout
        delay = min(SE_JOIN_DELAY, timeout)

        def joined() -> None:
            if self.vs.role(name) is not Role.JOINING:
                failed(f"{name} failed while joining")
                return
            if not self.control.se(name).alive:
                if self.sim.now < started + seconds(timeout):
                    self.sim.at(started + seconds(timeout), joined, priority=URGENT)
                    return
                self.vs.lose(name)
                failed(f"{name} did not report ready within vs_se_scaleout_ready_timeout ({timeout:g} s)")
                return
            self.control.se(name).start_monitoring(self.vs)
            restoring = not self.vs.members
            self.vs.joined(name)
            if restoring:  # every SE had failed: the VIP needs a new owner before anything else
                self.promote(name, "the VS had no SE left", planned=False)
            then()
        started = self.sim.now
        self.sim.after(seconds(delay), joined, priority=URGENT)

    def _scaled_out(self, name: str) -> None:
        self.scaling_out = None
        self.log("scale_out.completed", se=name, service_engines=list(self.vs.members))
        self.control.new_phase(f"scale out to {name}", self.vs)
        self.ensure_minimum()

    # -- scale in and migrate (B9, B10) ----------------------------------------------------

    def scale_in(self, name: str) -> None:
        self.check_member(name)
        remaining = len(self.vs.members) - 1
        if remaining < self.group.min_scaleout_per_vs:
            raise Refused(f"the VS would be on {remaining} SEs (min_scaleout_per_vs = {self.group.min_scaleout_per_vs})")
        if self.group.ha_mode == "elastic-active-active" and remaining < 2:
            raise Refused("ha_mode elastic-active-active keeps a VS on at least 2 SEs")
        self.log("scale_in.started", se=name)
        self._drain(name, "scale in", lambda: self.log("scale_in.completed", se=name))

    def migrate(self, source: str, target: str | None) -> None:
        """Move the VS from ``source`` to ``target``, or to a new SE the controller creates (``target`` None)."""
        if self.legacy:
            raise Refused("migration is not supported in ha_mode legacy-active-standby")
        self.check_member(source)
        if target is not None and not self.control.is_free(target, self.vs):
            what = self.control.describe(target, self.vs)
            raise Refused(f"{target} is {'not created yet' if what == 'unknown' else what}, "
                          "not a connected SE free to join")
        if target is None:
            cannot = self.control.can_create()
            if cannot:
                raise Refused(f"migrate to a new SE: {cannot}")

        def joined(to: str) -> None:
            if self.vs.role(source) is not Role.MEMBER:  # failed or scaled in meanwhile: nothing left to move
                self.log("migrate.completed", se=source, to=to, note=f"{source} was already {self.control.describe(source, self.vs)}")
                return
            if self.vs.primary == source:
                self.promote(to, f"migrate from {source}", planned=True)
            self._drain(source, f"migrate to {to}", lambda: self.log("migrate.completed", se=source, to=to))

        def failed(to: str, reason: str) -> None:
            self.log("migrate.failed", se=source, to=to, reason=reason)
        if target is not None:
            self.log("migrate.started", se=source, to=target)
            self._join(target, lambda: joined(target), lambda reason: failed(target, reason))
            return
        name = self.control.new_se(f"migrate from {source} to a new SE", then=lambda name: self._join(
            name, lambda: joined(name), lambda reason: failed(name, reason)), failed=failed)
        self.log("migrate.started", se=source, to=name, new_se=True)

    def check_member(self, name: str) -> None:
        if self.vs.role(name) is not Role.MEMBER:
            raise Refused(f"{name} is {self.control.describe(name, self.vs)}, not serving the VS")

    def _drain(self, name: str, why: str, then: Callable[[], None]) -> None:
        if self.vs.primary == name:
            self.promote(self.vs.members[1], f"{why} of {name}", planned=True)
        stint = self.vs.drain(name)
        stint.until_ns = self.sim.now + seconds(self.group.vs_scalein_timeout)
        self.control.new_phase(f"{why} ({name} draining)", self.vs)

        def expired() -> None:
            # The stint identifies this drain: a timer of an earlier drain of the same SE must not end a later one.
            if self.vs.roles.stint(name) is not stint:
                return
            reset = self.control.se(name).reset_all(self.vs, f"{why}: drain of {self.group.vs_scalein_timeout:g} s expired")
            self.log("drain.expired", se=name, connections_reset=reset)
            self.vs.drained(name)
            self.control.se(name).stop_monitoring(self.vs)
            then()
        self.sim.after(seconds(self.group.vs_scalein_timeout), expired, priority=URGENT)

    def promote(self, name: str, reason: str, planned: bool) -> None:
        old = self.vs.primary if self.vs.primary != name else None
        if old is not None:
            self.control.se(old).give_up_vip(self.vs)
        if self.vs.role(name) is Role.STANDBY:
            self.vs.take_over(name)
            self.control.se(name).start_monitoring(self.vs)
        else:
            self.vs.promote(name)
        if not planned:
            # The failed primary's flow table is lost with it; the new primary asks the others (flow probes),
            # about UDP packets too while their flows may still be alive.
            self.vs.forget_flows()
            self.vs.recovering_until = self.sim.now + UDP_IDLE
        self.control.se(name).announce_vip(self.vs, f"new primary: {reason}")
        self.log("se.promoted", se=name, previous=old, reason=reason)

    # -- failures (B14, B15) ---------------------------------------------------------------

    def se_failed(self, name: str) -> None:
        """SE ``name`` was declared failed: take it out of the VS, fail over, restore the HA mode's minimum."""
        role = self.vs.role(name)
        if role is None:
            return
        if role is not Role.MEMBER:  # joining (its join timer reports it), draining, or the standby
            self.vs.lose(name)
            return
        was_primary = self.vs.primary == name
        survivors = [m for m in self.vs.members if m != name]
        standby = self.vs.standby
        if was_primary and survivors:
            self.promote(survivors[0], f"primary {name} failed", planned=False)
        elif was_primary and standby is not None:
            self.promote(standby, f"active {name} failed", planned=False)
        self.vs.lose(name)
        self.control.new_phase(f"failure of {name}", self.vs)
        if not self.vs.members:
            self.log("vs.down", reason=f"last SE {name} failed")
        self.ensure_minimum()

    def se_recovered(self, name: str) -> None:
        """A failed SE is back: the legacy pair gets its standby again; a VS that is down may go there."""
        if self.legacy and self.vs.standby is None and self.vs.role(name) is None and self.vs.members:
            self.vs.stand_by(name)
            self.log("vs.standby", se=name)
        self.ensure_minimum()

    def ensure_minimum(self) -> None:
        """Scale out while the VS is below its HA mode's minimum (placing it again if it is down)."""
        if self.scaling_out is not None or len(self.vs.members) >= self.minimum():
            return
        if self.legacy:
            if not self.vs.members and self.vs.standby is None:
                self.log("vs.down", reason="both SEs of the legacy pair are down")
            return
        why = "placing the VS again: every SE it had failed" if not self.vs.members else \
            f"ha_mode {self.group.ha_mode} keeps the VS on {self.minimum()} SEs"
        try:
            self.scale_out(None, why)
        except Refused as refusal:
            self.control.refuse("scale_out", str(refusal), self.vs.name)

    def summary(self) -> dict:
        return {"primary": self.vs.primary, "service_engines": self.vs.serving, "standby": self.vs.standby,
                "steering_share": {name: round(share, 4) for name, share in self.vs.share().items()},
                "primary_weight": self.vs.primary_weight,
                "recovering_until": round(self.vs.recovering_until / NS_PER_S, 9) or None}
