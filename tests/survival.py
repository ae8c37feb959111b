"""A survival table computed from a run's capture: each client connection's SE and fate."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dataplane.wire import capture_reader
from conftest import fields

SNAT = re.compile(r"^(se-\d+) snat (\S+?:\d+)>")
FIN_BIT, RST_BIT = 16, 32


@dataclass
class Connection:
    client: str
    opened: float = 0.0
    owners: list[str] = field(default_factory=list)
    completeness: int = 0
    last_seen: float = 0.0

    @property
    def owner(self) -> str:
        return self.owners[0]

    @property
    def outcome(self) -> str:
        if self.completeness & RST_BIT:
            return "reset"
        return "completed" if self.completeness & FIN_BIT else "unfinished"


def survival_table(run) -> dict[str, Connection]:
    """Map "client_ip:port" to its Connection: owners from the SEs' snat comments, fate from tshark."""
    table: dict[str, Connection] = {}
    for record in capture_reader.open_capture(run.capture):
        match = SNAT.match(record.comment or "")
        if not match:
            continue
        se, client = match.groups()
        conn = table.setdefault(client, Connection(client))
        if not conn.owners or conn.owners[-1] != se:
            conn.owners.append(se)
    gw = run.mac("gw")
    hop = f'frame.interface_name == "frontend" && (eth.src == {gw} || eth.dst == {gw})'
    rows = fields(run.capture, ["ip.src", "tcp.srcport", "frame.time_relative", "tcp.completeness"], "",
                  "-2", "-R", f"({hop}) && tcp.flags.syn == 1 && tcp.flags.ack == 0")
    for src, port, opened, completeness in rows:
        conn = table.get(f"{src}:{port}")
        if conn is not None:
            conn.opened = float(opened)
            conn.completeness = int(completeness)
    resets = fields(run.capture, ["ip.dst", "tcp.dstport", "frame.time_relative"], "",
                    "-2", "-R", f"({hop}) && tcp.flags.reset == 1 && ip.dst != {run.summary['address_plan']['vs-web']['vip']['ip']}")
    for dst, port, when in resets:
        conn = table.get(f"{dst}:{port}")
        if conn is not None:
            conn.last_seen = float(when)
    return table
