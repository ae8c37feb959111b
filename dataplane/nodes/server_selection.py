"""
Pool server selection, one selector per Service Engine (docs/design.md, B6).

Each SE picks among the servers that *its own* health monitor sees up, so
SEs may disagree for a while.  Algorithms: ``round-robin``,
``least-connections`` (the product default; ties go to the first server in
pool order, which keeps runs deterministic) and ``consistent-hash`` on the
client address through a Maglev table over the up servers.
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
        self._round_robin = 0
        self._table: flowhash.MaglevTable | None = None
        self._by_name = {server.name: server for server in servers}

    def set_up(self, server: PoolServer, up: bool) -> None:
        if self.up[server.name] != up:
            self.up[server.name] = up
            self._table = None

    def candidates(self) -> list[PoolServer]:
        return [server for server in self.servers if self.up[server.name]]

    def pick(self, client_ip: bytes) -> PoolServer | None:
        choices = self.candidates()
        if not choices:
            return None
        if self.algorithm == "round-robin":
            server = choices[self._round_robin % len(choices)]
            self._round_robin += 1
            return server
        if self.algorithm == "consistent-hash":
            if self._table is None:
                self._table = flowhash.MaglevTable([s.name for s in choices], size=CONSISTENT_HASH_TABLE_SIZE)
            return self._by_name[self._table.lookup(flowhash.siphash24(self.hash_key, client_ip))]
        return min(choices, key=lambda server: self.active[server.name])

    def opened(self, server: PoolServer) -> None:
        self.active[server.name] += 1

    def closed(self, server: PoolServer) -> None:
        self.active[server.name] -= 1
