"""
The controller: VS placement and the scenario's timeline of control actions.

It owns which SEs serve the VS and in what role, and every change to that
set (placement, scale out/in, migrate, failures), logging each as an event
(DESIGN §3 names).  Data-plane consequences (gratuitous ARP, drains, resets)
are carried out through the SEs.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from . import frames

if TYPE_CHECKING:
    from .network import Network


class Controller:
    def __init__(self, net: "Network"):
        self.net = net
        self.sim = net.sim
        self.vs = net.vs
        self.refusals: list[dict] = []
        self.phase = "initial"
        self.flows_by_phase: dict[str, Counter[str]] = {}

    def start(self) -> None:
        placement = list(self.net.scenario.virtual_service.placement)
        self.vs.set_members(placement)
        primary = self.net.nodes[placement[0]]
        primary.announce_vip("placed as primary")
        self.net.log("vs.placed", vs=self.vs.name, primary=placement[0], service_engines=placement,
                     vip=frames.ip_text(self.vs.vip))

    def flow_owned(self, se: str, view) -> None:
        self.flows_by_phase.setdefault(self.phase, Counter())[se] += 1

    def summary(self) -> dict:
        return {
            "refusals": self.refusals,
            "flows_by_phase": {phase: dict(sorted(c.items())) for phase, c in self.flows_by_phase.items()},
            "steering_share": {name: round(share, 4) for name, share in self.vs.share().items()},
        }
