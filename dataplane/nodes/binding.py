"""
What one Service Engine keeps for one virtual service it may serve: the pool's selector and monitor.

An SE of the group can be asked to serve any virtual service, so it holds a
``Binding`` for each: the virtual service (shared, with its flow table and
roles), the pool members, the selector that picks among the members *this
SE's* monitor sees up, and that monitor.  Everything else an SE has - its
NAT table and ports, its CPU, its heartbeats - is shared by all the virtual
services it carries.
"""

from __future__ import annotations

from typing import Any, Sequence

from .context import PoolServer, ServedService
from .health import HealthMonitor
from .nat import PortRing
from .server_selection import ServerSelector


class Binding:
    __slots__ = ("se", "vs", "servers", "seed", "ports", "selector", "monitor", "packets", "proxy")

    def __init__(self, se: Any, vs: ServedService, servers: Sequence[PoolServer], seed: int, ports: PortRing):
        self.se = se
        self.vs = vs
        self.servers = list(servers)
        self.seed = seed
        self.ports = ports
        #: Frames of this VS the SE processed: which VS makes an SE hot (docs/design.md, B12).
        self.packets = 0
        #: The VS's TCP connections are terminated here (network_profile tcp-proxy), not translated.
        self.proxy = vs.spec.network_profile == "tcp-proxy"
        self.fresh()

    def fresh(self) -> None:
        """New selector and monitor, knowing nothing: at creation, and after the SE recovers from a failure."""
        pool = self.vs.spec.pool
        self.selector = ServerSelector(self.servers, pool.lb_algorithm, self.vs.hash_key)
        # The first VS keeps the stream single-VS runs have always had (byte-identical captures).
        stream = "monitor" if self.vs.index == 0 else f"monitor:{self.vs.name}"
        self.monitor = HealthMonitor(self.se, self.selector, pool.health_monitor, self.servers, self.seed,
                                     self.ports, stream, self.vs.name)


__all__ = ["Binding"]
