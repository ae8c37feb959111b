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
    """First and last usable host address as integers (a /31 or /32 has no network/broadcast, RFC 3021;
    an IPv6 network has no broadcast, and its first address is the subnet-router anycast, RFC 4291 2.6.1)."""
    if cidr.version == 6:
        return cidr.first + 1, cidr.last
    if cidr.size <= 2:
        return cidr.first, cidr.last
    return cidr.first + 1, cidr.last - 1


def width(cidr: netaddr.IPNetwork) -> int:
    """Bytes in an address of ``cidr``'s family."""
    return 16 if cidr.version == 6 else 4


def host_addresses(cidr: netaddr.IPNetwork) -> Iterator[bytes]:
    first, last = host_range(cidr)
    size = width(cidr)
    return (value.to_bytes(size, "big") for value in range(first, last + 1))


class AddressPool:
    """The host addresses of a network still free for SEs, in the order they are handed out."""

    def __init__(self, cidr: netaddr.IPNetwork, taken: set):
        first, last = host_range(cidr)
        # IPv4: .11 on; IPv6: ::11 on (the same digits, read as hex, as an administrator would write them).
        offset = SE_ADDRESS_OFFSET if cidr.version == 4 else int(str(SE_ADDRESS_OFFSET), 16)
        start = min(cidr.first + offset, last + 1)
        self._order = iter([range(start, last + 1), range(first, start)])
        self._current = iter(())
        self._taken = {int(ip) for ip in taken if ip is not None and first <= int(ip) <= last}
        self._width = width(cidr)
        self.remaining = last - first + 1 - len(self._taken)

    def take(self) -> bytes:
        while True:
            for value in self._current:
                if value not in self._taken:
                    self.remaining -= 1
                    return value.to_bytes(self._width, "big")
            self._current = iter(next(self._order))


def client_addresses(networks) -> Iterator[tuple[bytes, bytes]]:
    """(client address, its gateway) for up to ``MAX_CLIENTS`` clients: each network's first host
    address is the router's gateway there, the rest are clients.

    Each network gets at most a fair share of what the networks before it left, so that a large
    network (an IPv6 /64) listed after a small one does not take every client slot.
    """
    count = 0
    for index, cidr in enumerate(networks):
        share = count + (MAX_CLIENTS - count) // (len(networks) - index)
        hosts = host_addresses(cidr)
        gateway = next(hosts)
        for ip in hosts:
            if count >= share:
                break
            count += 1
            yield ip, gateway


def client_gateways(networks) -> list[bytes]:
    return [next(host_addresses(cidr)) for cidr in networks]
