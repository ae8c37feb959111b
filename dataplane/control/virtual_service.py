"""
A virtual service's data-plane state: who serves it and how flows are steered.

``VirtualService`` holds the VIP and port, the part each SE plays in it
(``roles``, a ``se_state.Roles`` table: joining, member, draining), which
member is the primary, the Maglev table over the members with the primary's
weight (docs/design.md, B5), and the primary's flow table.  ``members``,
``serving`` and ``draining`` are read off the roles table, never kept
beside it.  The flow table belongs to the VS rather than to one SE so that
a planned primary change (migration) hands it over, as the real product
syncs flow state before it moves the VIP; an unplanned one (failure)
starts the new primary with an empty table.

Every change of membership goes through the methods below, which rebuild
the Maglev table when the set of members or the primary changes.
"""

from __future__ import annotations

import random
from collections import Counter

from .. import flowhash
from ..scenario import SeGroup, VirtualService as VsSpec
from ..wire import frames
from .se_state import Role, Roles, Stint

SECONDARY_WEIGHT = 100
FLOW_TABLE_CAPACITY = 1 << 18
MAGLEV_SIZE = 65537


class VirtualService:
    def __init__(self, spec: VsSpec, se_group: SeGroup, seed: int, index: int = 0, several: bool = False):
        self.name = spec.name
        self.spec = spec
        self.index = index
        #: The VIPs: IPv4, IPv6 (dual stack: both); None for a family the VS does not have.
        self.vip = frames.ip_bytes(str(spec.vip)) if spec.vip is not None else None
        self.vip6 = frames.ip_bytes(str(spec.vip6)) if spec.vip6 is not None else None
        self.vips = tuple(vip for vip in (self.vip, self.vip6) if vip is not None)
        #: The first port: where generated traffic goes when there is one, and what old single-port code names.
        self.port = spec.port
        #: One byte per port, 1 where the VS listens: the steering path's port check is one index.
        self.listens = bytearray(65536)
        for low, high in spec.ports:
            self.listens[low:high + 1] = b"\x01" * (high - low + 1)
        self.proto = frames.PROTO_UDP if spec.protocol == "udp" else frames.PROTO_TCP
        self.placement = tuple(spec.placement)
        #: How comments name this VS when the scenario has several ("vs-b, "), else nothing.
        self.tag = f"{spec.name}, " if several else ""
        #: The primary's weight in the Maglev table; None in the scenario means "follow the primary's CPU headroom".
        self.auto_share = se_group.primary_weight is None
        self.primary_weight = 100 if se_group.primary_weight is None else se_group.primary_weight
        # The first VS keeps the key every single-VS run has had: old captures stay byte-identical.
        self.hash_key = random.Random(f"{seed}:flow-hash-key" + (f":{spec.name}" if index else "")).randbytes(16)
        self.roles = Roles()
        self._primary: str | None = None
        self.flow_table = flowhash.FlowTable(FLOW_TABLE_CAPACITY)
        self.table: flowhash.MaglevTable | None = None
        self.flows_by_se: Counter[str] = Counter()
        #: The IPv6 part of ``flows_by_se`` (what a dual-stack summary splits by family).
        self.ipv6_flows_by_se: Counter[str] = Counter()
        #: The VXLAN network identifier of this VS's tunnel frames, and its heartbeats' VNI field.
        self.vni = index + 1
        #: Until then a new primary asks the other SEs about UDP packets it does not know (flow probes), as it
        #: does for mid-flow TCP: after an unplanned promotion its flow table starts empty.
        self.recovering_until = 0

    # -- who serves it (read off the roles table) ---------------------------------

    @property
    def primary(self) -> str | None:
        return self._primary

    @property
    def members(self) -> list[str]:
        """The SEs that take new flows: the primary first, then in the order they came in."""
        others = [name for name in self.roles.named(Role.MEMBER) if name != self._primary]
        return [self._primary] + others if self._primary is not None else others

    @property
    def draining(self) -> list[str]:
        return sorted(self.roles.named(Role.DRAINING))

    @property
    def serving(self) -> list[str]:
        """Every SE that still carries flows of this VS: members, then draining SEs."""
        return self.members + self.draining

    @property
    def standby(self) -> str | None:
        return next(self.roles.named(Role.STANDBY), None)

    @property
    def peers(self) -> list[str]:
        """Every SE the primary exchanges data-plane heartbeats with: all that serve, and the standby."""
        standby = self.standby
        return self.serving + ([standby] if standby else [])

    def role(self, name: str) -> Role | None:
        return self.roles.get(name)

    def flow_table_note(self, name: str) -> str | None:
        """How steering names a flow-table hit on ``name``; None when ``name`` no longer carries this VS's flows."""
        stint = self.roles.stint(name)
        if stint is None or stint.role not in (Role.MEMBER, Role.DRAINING):
            return None
        if stint.role is Role.MEMBER:
            return "flow table"
        return f"flow table, {name} draining until {stint.until_ns / 1e9:g} s"

    def carries(self, name: str) -> bool:
        """True if ``name`` still carries flows of this VS (a member, or draining)."""
        return self.roles.get(name) in (Role.MEMBER, Role.DRAINING)

    # -- changes of membership -------------------------------------------------------

    def place(self, names: list[str]) -> None:
        """Initial placement: every SE a member, the first the primary."""
        for name in names:
            self.roles.apply(name, "place")
        self._primary = names[0]
        self.rebuild()

    def join(self, name: str) -> None:
        self.roles.apply(name, "join")

    def joined(self, name: str) -> None:
        self.roles.apply(name, "joined")
        if self._primary is None:
            self._primary = name
        self.rebuild()

    def drain(self, name: str) -> Stint:
        """Take ``name`` out of the members; its flows continue.  Returns the drain's stint."""
        self.roles.apply(name, "drain")
        if self._primary == name:
            self._primary = None
        self.rebuild()
        return self.roles.stint(name)

    def drained(self, name: str) -> None:
        self.roles.apply(name, "drained")

    def lose(self, name: str) -> None:
        """``name`` failed: it leaves the VS whatever its part was."""
        if self.roles.get(name) is None:
            return
        self.roles.apply(name, "fail")
        if self._primary == name:
            self._primary = None
        self.rebuild()

    def promote(self, name: str) -> None:
        self._primary = name
        self.rebuild()

    def stand_by(self, name: str) -> None:
        self.roles.apply(name, "stand_by")

    def take_over(self, name: str) -> None:
        """The standby becomes the VS's member and primary (legacy active/standby failover)."""
        self.roles.apply(name, "take_over")
        self._primary = name
        self.rebuild()

    def set_primary_weight(self, weight: int) -> None:
        self.primary_weight = weight
        self.rebuild()

    def rebuild(self) -> None:
        members = self.members
        if not members:
            self.table = None
            return
        weights = [self.primary_weight if name == self._primary else SECONDARY_WEIGHT for name in members]
        self.table = flowhash.MaglevTable(members, weights=weights, size=MAGLEV_SIZE)

    def forget_flows(self) -> None:
        """Start an empty flow table: the primary that held the old one failed with it."""
        self.flow_table = flowhash.FlowTable(FLOW_TABLE_CAPACITY)

    # -- steering --------------------------------------------------------------------

    def flow_key(self, view: frames.FlowView) -> bytes:
        if view.version == 6:
            return flowhash.flow_key_ipv6(view.src, view.dst, view.proto, view.sport, view.dport)
        return flowhash.flow_key_ipv4(view.src, view.dst, view.proto, view.sport, view.dport)

    def choose(self, key: bytes) -> tuple[str, int]:
        """Return (SE name, Maglev bucket) for a new flow."""
        digest = flowhash.siphash24(self.hash_key, key)
        return self.table.lookup(digest), digest % self.table.size

    def share(self) -> dict[str, float]:
        """Return each member's share of the Maglev table (what fraction of new flows it gets)."""
        if self.table is None:
            return {}
        counts = Counter(self.table.slots)
        return {self.table.backends[i]: n / self.table.size for i, n in sorted(counts.items())}
