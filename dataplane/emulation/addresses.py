"""
The address plan: which host addresses of a network the SEs and clients take.

Addresses are drawn from a CIDR without ever listing it, so a /8 costs no
more than a /24.  SEs take host .11 onward (se-1 at 10.10.0.11, as in the
design's examples), then wrap around to the low host addresses; addresses
already in use (gateway, VIP, servers) are skipped.
"""

from __future__ import annotations

from typing import Iterator

import netaddr

SE_ADDRESS_OFFSET = 11
MAX_CLIENTS = 256


def host_range(cidr: netaddr.IPNetwork) -> tuple[int, int]:
    """First and last usable host address as integers (a /31 or /32 has no network/broadcast, RFC 3021)."""
    if cidr.size <= 2:
        return cidr.first, cidr.last
    return cidr.first + 1, cidr.last - 1


def host_addresses(cidr: netaddr.IPNetwork) -> Iterator[bytes]:
    first, last = host_range(cidr)
    return (value.to_bytes(4, "big") for value in range(first, last + 1))


class AddressPool:
    """The host addresses of a network still free for SEs, in the order they are handed out."""

    def __init__(self, cidr: netaddr.IPNetwork, taken: set):
        first, last = host_range(cidr)
        start = min(first + SE_ADDRESS_OFFSET - 1, last + 1)
        self._order = iter([range(start, last + 1), range(first, start)])
        self._current = iter(())
        self._taken = {int(ip) for ip in taken if first <= int(ip) <= last}
        self.remaining = last - first + 1 - len(self._taken)

    def take(self) -> bytes:
        while True:
            for value in self._current:
                if value not in self._taken:
                    self.remaining -= 1
                    return value.to_bytes(4, "big")
            self._current = iter(next(self._order))


def client_addresses(networks) -> Iterator[tuple[bytes, bytes]]:
    """(client address, its gateway) for up to ``MAX_CLIENTS`` clients: each network's first host
    address is the router's gateway there, the rest are clients."""
    count = 0
    for cidr in networks:
        hosts = host_addresses(cidr)
        gateway = next(hosts)
        for ip in hosts:
            if count >= MAX_CLIENTS:
                return
            count += 1
            yield ip, gateway


def client_gateways(networks) -> list[bytes]:
    return [next(host_addresses(cidr)) for cidr in networks]
