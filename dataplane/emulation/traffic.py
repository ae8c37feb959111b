"""
Generated traffic: new connections arrive as a Poisson process from random clients, per virtual service.

Each virtual service gets its own arrivals, by its own traffic (its
``[virtual_services.traffic]`` over ``[traffic]``), to one of its ports
drawn at random when it listens on several.  One pending arrival per VS at
a time sits on the clock, so memory does not grow with the length of a
run.  Without ``traffic.stop``, arrivals stop early enough for each
connection to finish inside the run, but never before half of it has
passed.
"""

from __future__ import annotations

import random
from typing import Sequence

from ..clock import NS_PER_S, Simulator, seconds
from ..nodes.client import Client
from ..nodes.context import ServedService


class Arrivals:
    def __init__(self, clock: Simulator, vs: ServedService, clients: Sequence[Client], seed: int, duration: float):
        self.clock = clock
        self.vs = vs
        self.traffic = traffic = vs.spec.traffic
        self.ports = vs.spec.ports
        self.port_count = sum(high - low + 1 for low, high in self.ports)
        self.clients = [client for client in clients if client.can_reach(vs)]  # of a family the VS has
        # The first VS keeps the stream single-VS runs have always had (byte-identical captures).
        self.rng = random.Random(f"{seed}:arrivals" + (f":{vs.name}" if vs.index else ""))
        stop = traffic.stop if traffic.stop is not None else duration
        if traffic.stop is None:
            # Leave each connection time to finish inside the run, but keep opening
            # connections for at least half of it even when they outlive the run.
            lifetime = (traffic.requests_per_connection - 1) * traffic.request_interval + 1.0
            stop = max(stop - lifetime, traffic.start + (stop - traffic.start) / 2)
        self.stop_ns = seconds(stop)
        self.opened = 0

    def start(self) -> None:
        if self.traffic.new_connections_per_second > 0 and self.clients:
            self._next(seconds(self.traffic.start))

    def _next(self, after_ns: int) -> None:
        traffic = self.traffic
        at = after_ns + max(1, round(self.rng.expovariate(traffic.new_connections_per_second) * NS_PER_S))
        if at > self.stop_ns or (traffic.max_connections is not None and self.opened >= traffic.max_connections):
            return
        self.opened += 1
        client = self.clients[self.rng.randrange(len(self.clients))]
        self.clock.at(at, self._arrive, client, self.opened, self._port())

    def _port(self) -> int:
        """One of the VS's ports, each as likely (no draw when it has one: old runs keep their numbers)."""
        if self.port_count == 1:
            return self.ports[0][0]
        index = self.rng.randrange(self.port_count)
        for low, high in self.ports:
            if index <= high - low:
                return low + index
            index -= high - low + 1
        raise AssertionError("unreachable: index < port_count")

    def _arrive(self, client: Client, number: int, port: int) -> None:
        client.open(number, self.vs, port, self.traffic)
        self._next(self.clock.now)
