"""
Which recorded flows replay takes, and the virtual service (and port) each one goes to.

``Services`` answers, once per recorded flow (never per packet), two questions:

1. *Is the flow selected?*  By default when its recorded server port is a port
   some virtual service listens on (every port and range of every VS);
   ``--port-map FROM[:TO]`` also selects flows to server port FROM, which then
   count as flows to port TO; ``--match`` (when given) selects by client and
   server address and port instead.
2. *Which virtual service takes it, at which port?*  ``--map SERVER_IP=VS``
   names it for every flow to that recorded server address; otherwise the one
   VS of the flow's protocol and IP family that listens on the server port (or
   on the port-mapped TO port).  When several do, the flow is skipped
   (``ambiguous_vs``); when none listens on it (a flow ``--match`` chose), the
   only VS of its protocol and family takes it.  The flow keeps its recorded
   server port toward the VIP (or VIP6) when the VS listens on it, else it
   arrives at the TO port of ``--port-map``, else at the VS's first port.

A flow no VS can take gets the reason of the first check it fails:
``not_selected``, ``not_vs_protocol`` (only VSs of the other protocol), then
``ipv4_no_vip`` / ``ipv6_no_vip6`` (only VSs without a VIP of its family).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

#: Why a selected flow goes to no virtual service, beyond the reasons ``input`` lists.
SERVICE_REASONS = {
    "ambiguous_vs": "no single virtual service for the flow's server port (several, or none, listen on it); "
                    "use --map",
}


class Target:
    """Where a flow goes: its virtual service (``control.VirtualService``), its VIP and the port."""

    __slots__ = ("vs", "vip", "port")

    def __init__(self, vs: Any, vip: bytes, port: int):
        self.vs, self.vip, self.port = vs, vip, port


class Services:
    """The virtual services replay feeds (``control.VirtualService`` or alike: ``name``, ``vip``, ``vip6``,
    ``proto``, ``port``, ``listens``) and the options that choose among them."""

    def __init__(self, services: Sequence[Any], port_map: Iterable = (), matches: Iterable = (),
                 vs_map: Iterable[tuple[bytes, str]] = ()):
        self.services = list(services)
        #: FROM -> TO (None: no TO given, the flow goes where a flow --match chose would).
        self.port_map: dict[int, int | None] = {}
        for rule in port_map:
            source, target = (rule, None) if isinstance(rule, int) else rule
            self.port_map[source] = target
        self.matches = list(matches)
        #: Every VIP and VIP6: no recorded client may use one.
        self.vips = {vip for vs in self.services for vip in (vs.vip, vs.vip6) if vip is not None}
        by_name = {vs.name: vs for vs in self.services}
        self.vs_map = {ip: by_name[name] for ip, name in vs_map}
        #: One byte per port: 1 where the default selection takes a flow (a VS port or a --port-map FROM).
        self.selected = bytearray(65536)
        for vs in self.services:
            for port, listened in enumerate(vs.listens):
                if listened:
                    self.selected[port] = 1
        for source in self.port_map:
            self.selected[source] = 1

    def could_be_server_port(self, port: int) -> bool:
        """True when a flow to ``port`` might be replayed (a mid-flow packet's reason)."""
        return bool(self.matches) or bool(self.selected[port])

    def assign(self, proto: int, client: bytes, cport: int, server: bytes, sport: int) -> Target | str:
        """Where the flow opened by ``client:cport`` toward ``server:sport`` goes, or its skip reason."""
        if self.matches:
            chosen = any((c is None or c.matches(client, cport)) and (s is None or s.matches(server, sport))
                         for c, s in self.matches)
        else:
            chosen = self.selected[sport]
        if not chosen:
            return "not_selected"
        port = sport if sport not in self.port_map else (self.port_map[sport] or sport)
        v6 = len(server) == 16
        mapped = self.vs_map.get(server)
        candidates = [mapped] if mapped is not None else self.services
        candidates = [vs for vs in candidates if vs.proto == proto]
        if not candidates:
            return "not_vs_protocol"
        candidates = [vs for vs in candidates if (vs.vip6 if v6 else vs.vip) is not None]
        if not candidates:
            return "ipv6_no_vip6" if v6 else "ipv4_no_vip"
        if mapped is None:  # the VSs of its protocol and family that listen on the port; else all of them
            candidates = [vs for vs in candidates if vs.listens[port]] or candidates
        if len(candidates) > 1:
            return "ambiguous_vs"
        (vs,) = candidates
        return Target(vs, vs.vip6 if v6 else vs.vip, port if vs.listens[port] else vs.port)

    def counts(self, flows: dict[str, int]) -> dict[str, int]:
        """Flows replayed per virtual service, every one named, in scenario order."""
        return {vs.name: flows.get(vs.name, 0) for vs in self.services}
