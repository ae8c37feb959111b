"""
Pool server selection, one selector per Service Engine (docs/design.md, B6).

Each SE picks among the servers that *its own* health monitor sees up, so
SEs may disagree for a while.  Algorithms: ``round-robin``,
``least-connections`` (the product default; ties go to the first server in
pool order, which keeps runs deterministic) and ``consistent-hash`` on the
client address through a Maglev table over the up servers.  A pool with
IPv4 and IPv6 servers picks among those of the client's family (the product
does no NAT64): each family is a pool of its own to the algorithms.
"""

from __future__ import annotations

from typing import Sequence

from .. import flowhash
from .context import PoolServer

CONSISTENT_HASH_TABLE_SIZE = 4093


class ServerSelector:
    def __init__(self, servers: Sequence[PoolServer], algorithm: str, hash_key: bytes):
        self.servers = list(servers)
        self.algorithm = algorithm
        self.hash_key = hash_key
        self.up: dict[str, bool] = {server.name: True for server in servers}
        self.active: dict[str, int] = {server.name: 0 for server in servers}
        self._round_robin: dict[int, int] = {}  # per family (address length)
        self._tables: dict[int, flowhash.MaglevTable] = {}
        self._by_name = {server.name: server for server in servers}
        self.mixed = len({len(server.ip) for server in self.servers}) > 1

    def set_up(self, server: PoolServer, up: bool) -> None:
        if self.up[server.name] != up:
            self.up[server.name] = up
            self._tables.pop(len(server.ip), None)

    def candidates(self, family: int | None = None) -> list[PoolServer]:
        """The servers seen up (of one family: 4 or 16, the address length, when given)."""
        return [server for server in self.servers if self.up[server.name]
                and (family is None or len(server.ip) == family)]

    def pick(self, client_ip: bytes) -> PoolServer | None:
        family = len(client_ip)
        choices = self.candidates(family if self.mixed or len(self.servers[0].ip) != family else None)
        if not choices:
            return None
        if self.algorithm == "round-robin":
            turn = self._round_robin.get(family, 0)
            self._round_robin[family] = turn + 1
            return choices[turn % len(choices)]
        if self.algorithm == "consistent-hash":
            table = self._tables.get(family)
            if table is None:
                table = self._tables[family] = flowhash.MaglevTable([s.name for s in choices],
                                                                    size=CONSISTENT_HASH_TABLE_SIZE)
            return self._by_name[table.lookup(flowhash.siphash24(self.hash_key, client_ip))]
        return min(choices, key=lambda server: self.active[server.name])

    def opened(self, server: PoolServer) -> None:
        self.active[server.name] += 1

    def closed(self, server: PoolServer) -> None:
        self.active[server.name] -= 1
