"""
The virtual service's data-plane state: who serves it and how flows are steered.

``VirtualService`` holds the VIP and port, the SEs that take new flows
(``members``, the first being the primary), the SEs that only finish old
flows (``draining``), the Maglev table over the members with the primary's
weight (DESIGN B5), and the primary's flow table.  The flow table belongs to
the VS rather than to one SE so that a planned primary change (migration)
hands it over, as the real product syncs flow state before it moves the
VIP; an unplanned one (failure) starts the new primary with an empty table.
"""

from __future__ import annotations

import random
from collections import Counter

from . import flowhash, frames

SECONDARY_WEIGHT = 100
FLOW_TABLE_CAPACITY = 1 << 18
MAGLEV_SIZE = 65537


class VirtualService:
    def __init__(self, spec, se_group, seed: int):
        self.name = spec.name
        self.vip = frames.ip_bytes(spec.vip)
        self.port = spec.port
        self.proto = frames.PROTO_UDP if spec.protocol == "udp" else frames.PROTO_TCP
        self.primary_weight = se_group.primary_weight
        self.hash_key = random.Random(f"{seed}:flow-hash-key").randbytes(16)
        self.members: list[str] = []
        self.draining: set[str] = set()
        self.flow_table = flowhash.FlowTable(FLOW_TABLE_CAPACITY)
        self.table: flowhash.MaglevTable | None = None
        self.flows_by_se: Counter[str] = Counter()
        self.vni = 1

    @property
    def primary(self) -> str | None:
        return self.members[0] if self.members else None

    @property
    def serving(self) -> list[str]:
        """Every SE that still carries flows of this VS: members, then draining SEs."""
        return self.members + sorted(self.draining - set(self.members))

    def carries(self, name: str) -> bool:
        """True if ``name`` still carries flows of this VS (a member, or draining)."""
        return name in self.members or name in self.draining

    def set_members(self, members: list[str]) -> None:
        self.members = list(members)
        self.rebuild()

    def rebuild(self) -> None:
        if not self.members:
            self.table = None
            return
        weights = [self.primary_weight if name == self.members[0] else SECONDARY_WEIGHT for name in self.members]
        self.table = flowhash.MaglevTable(self.members, weights=weights, size=MAGLEV_SIZE)

    def flow_key(self, view: frames.FlowView) -> bytes:
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
