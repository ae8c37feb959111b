"""
Reproduce dataplane.flowhash in pure Python, as a reference for the C code.

Slow on purpose: it follows the SipHash paper, the flow-key layout and the
Maglev pseudocode step by step, and shares no code with the package.
"""

from __future__ import annotations

import ipaddress

MASK64 = (1 << 64) - 1
MAGLEV_OFFSET_KEY = b"maglev-offs-key1"
MAGLEV_SKIP_KEY = b"maglev-skip-key2"


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash24(key: bytes, data: bytes) -> int:
    """
    Return SipHash-2-4 of ``data`` under the 16-byte ``key``.
    """
    assert len(key) == 16
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & MASK64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & MASK64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & MASK64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & MASK64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    n = len(data)
    full = n - n % 8
    blocks = [int.from_bytes(data[i : i + 8], "little") for i in range(0, full, 8)]
    blocks.append(int.from_bytes(data[full:], "little") | ((n & 0xFF) << 56))
    for m in blocks:
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def flow_key(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    """
    Return the 40-byte flow key for addresses given as strings.
    """
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    assert s.version == d.version
    out = bytearray(40)
    out[0] = s.version
    out[1] = proto
    out[2:4] = sport.to_bytes(2, "big")
    out[4:6] = dport.to_bytes(2, "big")
    out[8 : 8 + len(s.packed)] = s.packed
    out[24 : 24 + len(d.packed)] = d.packed
    return bytes(out)


def flow_hash(key: bytes, src: str, dst: str, proto: int, sport: int, dport: int) -> int:
    """
    Return siphash24(key, flow_key(...)).
    """
    return siphash24(key, flow_key(src, dst, proto, sport, dport))


def maglev_table(backends: list[str], weights: list[int] | None, size: int) -> list[int]:
    """
    Return the Maglev table (indices into sorted(backends)) of prime ``size``.

    ``weights`` is parallel to ``backends`` as given (not sorted).
    """
    if weights is None:
        weights = [1] * len(backends)
    pairs = sorted(zip(backends, weights))
    names = [p[0] for p in pairs]
    w = [p[1] for p in pairs]
    n = len(names)
    offset = [siphash24(MAGLEV_OFFSET_KEY, nm.encode()) % size for nm in names]
    skip = [siphash24(MAGLEV_SKIP_KEY, nm.encode()) % (size - 1) + 1 for nm in names]
    nxt = [0] * n
    big_w = max(w)
    target = [big_w] * n
    table = [-1] * size
    filled = 0
    rnd = 0
    while True:
        rnd += 1
        for i in range(n):
            if rnd * w[i] < target[i]:
                continue
            target[i] += big_w
            c = (offset[i] + nxt[i] * skip[i]) % size
            while table[c] >= 0:
                nxt[i] += 1
                c = (offset[i] + nxt[i] * skip[i]) % size
            table[c] = i
            nxt[i] += 1
            filled += 1
            if filled == size:
                return table


def lookup(table: list[int], h: int) -> int:
    """
    Return the backend index for hash ``h``.
    """
    return table[h % len(table)]
