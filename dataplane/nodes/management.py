"""
The management network: the controller's node and the SEs' management NICs.

Every control-plane event becomes one frame on the capture's ``controller``
interface, at the event's virtual time: a syslog message (RFC 5424 over UDP
port 514) from the controller to the management NIC of the SE the event is
about (its ``se`` field, else its ``primary``), or to the whole management
network when that SE does not exist (yet) or is down.  Its text is the
event's JSON, the line events.jsonl holds; the frame comment says the same.
Filtering ``frame.interface_name == "controller"`` in Wireshark gives the
run's timeline next to its packets.

The frames only report: the controller acts on the SEs directly, and an SE's
management NIC reads and counts them.  The controller knows every SE's
management MAC (it created the SE), so it sends no ARP: one event, one frame.
"""

from __future__ import annotations

import json

from ..l2 import Nic, Segment
from ..l2.capture import EPOCH_NS
from ..wire import frames, syslog
from ..wire.headers import BROADCAST
from .context import Runtime
from .host import Host, mac_for

#: The management network's segment, and so the capture interface that carries the events.
SEGMENT = "controller"
#: The NIC index spelled in management MACs (``02:03:<ipv4>``): frontend and backend NICs use 0.
MANAGEMENT_NIC_INDEX = 3
#: Events the controller logs at syslog severity warning; the rest are informational.
_WARNINGS = {"server.down", "server.failed", "vs.down", "alert.cpu_high", "drain.expired", "se.suspected",
             "host.failed"}


def severity(kind: str) -> int:
    failed = kind.endswith((".failed", ".refused")) or kind in _WARNINGS
    return syslog.WARNING if failed else syslog.INFORMATIONAL


class ManagementPort:
    """An SE's management NIC: it takes the controller's messages and counts them."""

    def __init__(self, se, segment: Segment, ip: bytes):
        self.se = se
        self.name = se.name
        self.messages = 0
        self.nic = Nic(self, "management", mac_for(ip, MANAGEMENT_NIC_INDEX), ip, segment)

    def receive(self, nic: Nic, frame: bytes) -> None:
        if self.se.alive and (frame.startswith(nic.mac) or frame.startswith(BROADCAST)):
            self.messages += 1


class ControllerNode(Host):
    """The controller on the management network: one syslog frame per control-plane event."""

    kind = "controller"

    def __init__(self, runtime: Runtime, ip: bytes, segment: Segment, broadcast: bytes):
        super().__init__(runtime, "controller", ip, segment)
        self.broadcast = broadcast
        self.messages = 0
        runtime.events.listeners.append(self.announce)

    def announce(self, event: dict) -> None:
        text = json.dumps(event)
        to, mac, ip = self._recipient(event)
        payload = syslog.message(severity(event["type"]), EPOCH_NS + self.sim.now, self.name, "dataplane",
                                 event["type"], text)
        frame = frames.udp_frame(mac, self.nic.mac, self.ip, ip, syslog.SYSLOG_PORT, syslog.SYSLOG_PORT, payload,
                                 self.next_ident())
        self.messages += 1
        self.nic.send(frame, f"controller syslog to {to}: {text}")

    def _recipient(self, event: dict) -> tuple[str, bytes, bytes]:
        """(who, MAC, IP): the SE the event is about if it is up, else every SE on the management network."""
        name = event.get("se") or event.get("primary")
        node = self.runtime.registry.nodes.get(name) if isinstance(name, str) else None
        port = node.nics.get("management") if node is not None else None
        if port is not None and port.up:
            return name, port.mac, port.ip
        return "all SEs", BROADCAST, self.broadcast


__all__ = ["ControllerNode", "MANAGEMENT_NIC_INDEX", "SEGMENT", "ManagementPort", "severity"]
