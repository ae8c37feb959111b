"""A survival table read off a running network: each client connection's owner SEs and fate.

The owner of a connection is the SE whose NAT table holds it: that is who
serves it, read from the emulated SEs themselves, not from the capture's
comments.  ``follow`` runs a scenario on the pytest fixture with its
generated traffic, looking at every SE's NAT table every ``step`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dataplane.clock import NS_PER_S
from dataplane.wire import frames


@dataclass
class Connection:
    client: str
    conn: object
    owners: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return self.owners[0]

    @property
    def opened(self) -> float:
        return self.conn.opened_ns / NS_PER_S

    @property
    def closed(self) -> float | None:
        return None if self.conn.closed_ns is None else self.conn.closed_ns / NS_PER_S

    @property
    def outcome(self) -> str:
        """completed, reset, failed (the client gave up), or open."""
        return self.conn.outcome


def follow(net, until: float, step: float = 0.05) -> dict[str, Connection]:
    """Run ``net`` to ``until`` seconds, recording every client connection and the SEs that served it."""
    table: dict[str, Connection] = {}
    while net.now < until:
        net.advance(min(step, until - net.now))
        ses = net.network.service_engines()
        for client in net.network.clients:
            for conn in client.connections.values():
                key = f"{frames.ip_text(client.ip)}:{conn.sport} #{conn.number}"
                entry = table.get(key)
                if entry is None:
                    entry = table[key] = Connection(key, conn)
                for se in ses:
                    if not se.alive:  # a dead SE's table is frozen, not serving
                        continue
                    nat = se.nat.get(client.ip, conn.sport, conn.target.vip, conn.dport, conn.proto)
                    if nat is not None and not nat.closing and (not entry.owners or entry.owners[-1] != se.name):
                        entry.owners.append(se.name)
    return table
