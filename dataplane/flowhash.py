"""
Hash flows, pick backends with Maglev, and track connections: the one facade
over the C library ``dataplane._native``.

No other module imports ``dataplane._native``; everything that touches cffi
(``Any``-typed cdata, return codes, freeing) stays in this file.  The C
contract (the 40-byte flow key layout, SipHash-2-4, the weighted Maglev fill,
the fixed-capacity flow table) is written down once, in ``native/flowhash.h``;
docs/design.md says how the emulator uses it.

Addresses may be given as ``str``, ``int`` (as ``ipaddress.ip_address``
reads it: below 2**32 is IPv4, otherwise IPv6), ``bytes`` (4 raw bytes for
IPv4, 16 for IPv6), or ``ipaddress`` / ``netaddr`` address objects.  Source
and destination must be of the same family.  Backends are sorted by name
before a Maglev table is filled, so any order of the same set gives the
same table.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from dataplane._native import ffi as _ffi
from dataplane._native import lib as _lib

__all__ = ["DEFAULT_MAGLEV_SIZE", "FLOW_KEY_LEN", "KEY_LEN", "MAGLEV_OFFSET_KEY", "MAGLEV_SKIP_KEY",
           "NATIVE_VERSION", "FlowTable", "MaglevTable", "flow_hash", "flow_hash_many", "flow_key", "is_prime",
           "siphash24"]

NATIVE_VERSION: int = _lib.FH_ABI_VERSION
KEY_LEN: int = _lib.FH_KEY_LEN
FLOW_KEY_LEN: int = _lib.FH_FLOW_KEY_LEN
DEFAULT_MAGLEV_SIZE = 65537
MAX_MAGLEV_SIZE: int = _lib.FH_MAX_TABLE_SIZE
MAGLEV_OFFSET_KEY: bytes = bytes(_ffi.buffer(_lib.FH_MAGLEV_OFFSET_KEY))
MAGLEV_SKIP_KEY: bytes = bytes(_ffi.buffer(_lib.FH_MAGLEV_SKIP_KEY))

_FLOW_KEY = struct.Struct("!BBHH2x16s16s")
_U64 = 1 << 64
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U32_MAX = (1 << 32) - 1

assert _FLOW_KEY.size == FLOW_KEY_LEN
assert array("i").itemsize == 4 and array("Q").itemsize == 8


# ----------------------------------------------------------------- helpers


def _key_bytes(key: Any) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise ValueError(f"key must be {KEY_LEN} bytes, got {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes, got {len(key)}")
    return key


def _flow_key_bytes(fkey: Any) -> bytes:
    if not isinstance(fkey, (bytes, bytearray, memoryview)):
        raise ValueError(f"flow key must be {FLOW_KEY_LEN} bytes, got {type(fkey).__name__}")
    fkey = bytes(fkey)
    if len(fkey) != FLOW_KEY_LEN:
        raise ValueError(f"flow key must be {FLOW_KEY_LEN} bytes, got {len(fkey)}")
    return fkey


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _address(name: str, addr: Any) -> tuple[int, bytes]:
    """Return ``(family, packed)`` for one address in any accepted form."""
    if isinstance(addr, bool):
        raise ValueError(f"{name} address must not be a bool")
    if isinstance(addr, (bytes, bytearray, memoryview)):
        raw = bytes(addr)
        if len(raw) == 4:
            return 4, raw
        if len(raw) == 16:
            return 6, raw
        raise ValueError(f"{name} address as bytes must be 4 or 16 bytes long, got {len(raw)}")
    if isinstance(addr, (str, int)):
        try:
            addr = ipaddress.ip_address(addr)
        except ValueError as exc:
            raise ValueError(f"{name} address is not valid: {addr!r}") from exc
    packed = getattr(addr, "packed", None)
    version = getattr(addr, "version", None)
    if isinstance(packed, bytes) and version in (4, 6) and len(packed) == (4 if version == 4 else 16):
        return version, packed
    raise ValueError(
        f"{name} address must be str, int, 4 or 16 bytes, or an ipaddress/netaddr "
        f"address, got {type(addr).__name__}"
    )


def is_prime(n: int) -> bool:
    """Return whether ``n`` is prime (trial division; fine below 2**31)."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    if n % 3 == 0:
        return n == 3
    limit = math.isqrt(n)
    f = 5
    while f <= limit:
        if n % f == 0 or n % (f + 2) == 0:
            return False
        f += 6
    return True


def _check_rc(rc: int, what: str) -> None:
    if rc == _lib.FH_OK:
        return
    if rc == _lib.FH_ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    raise ValueError(f"{what}: invalid argument (code {rc})")


def _hash_buffer(hashes: Any) -> tuple[Any, int, Any]:
    """
    Return ``(cdata uint64_t[], n, keepalive)`` for an iterable of 64-bit hashes.

    ``array('Q')`` and memoryviews of format ``'Q'`` are used without copying.
    """
    if isinstance(hashes, array) and hashes.typecode == "Q":
        return _ffi.from_buffer("uint64_t[]", hashes), len(hashes), hashes
    if isinstance(hashes, memoryview) and hashes.format == "Q" and hashes.c_contiguous:
        return _ffi.from_buffer("uint64_t[]", hashes), len(hashes), hashes
    values = hashes if isinstance(hashes, list) else list(hashes)
    try:
        buf = _ffi.new("uint64_t[]", values)
    except (OverflowError, TypeError) as exc:
        raise ValueError(f"hashes must be ints in 0..2**64-1: {exc}") from exc
    return buf, len(values), buf


def _flow_keys_buffer(flow_keys: Any) -> tuple[Any, int]:
    if not isinstance(flow_keys, (bytes, bytearray, memoryview)):
        raise ValueError(
            f"flow_keys must be a bytes-like concatenation of {FLOW_KEY_LEN}-byte "
            f"flow keys, got {type(flow_keys).__name__}"
        )
    view = memoryview(flow_keys).cast("B")
    if len(view) % FLOW_KEY_LEN:
        raise ValueError(
            f"flow_keys length must be a multiple of {FLOW_KEY_LEN}, got {len(view)}"
        )
    return _ffi.from_buffer("uint8_t[]", view), len(view) // FLOW_KEY_LEN


# ------------------------------------------------------------------ hashing


def siphash24(key: bytes, data: bytes) -> int:
    """Return SipHash-2-4 of ``data`` under the 16-byte ``key`` as an unsigned int."""
    k = _key_bytes(key)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes-like, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    return int(_lib.fh_siphash24(k, _ffi.from_buffer("uint8_t[]", view), len(view)))


def flow_key(src: Any, dst: Any, proto: int, sport: int, dport: int) -> bytes:
    """Return the 40-byte flow key of a 5-tuple (layout in the module docstring)."""
    sfam, sraw = _address("source", src)
    dfam, draw = _address("destination", dst)
    if sfam != dfam:
        raise ValueError(f"source is IPv{sfam} but destination is IPv{dfam}: families must match")
    _int_in("proto", proto, 0, 255)
    _int_in("sport", sport, 0, 65535)
    _int_in("dport", dport, 0, 65535)
    return _FLOW_KEY.pack(sfam, proto, sport, dport, sraw, draw)


def flow_key_ipv4(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bytes:
    """
    Return the flow key of an IPv4 5-tuple read from a packet header (4-byte addresses).

    The forwarding path's variant of ``flow_key``: no type checks, because the
    fields come straight out of a parsed header and are in range by construction.
    """
    return _FLOW_KEY.pack(4, proto, sport, dport, src, dst)


def flow_key_ipv6(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bytes:
    """
    Return the flow key of an IPv6 5-tuple read from a packet header (16-byte addresses).

    The forwarding path's variant of ``flow_key``, as ``flow_key_ipv4`` is for IPv4.
    """
    return _FLOW_KEY.pack(6, proto, sport, dport, src, dst)


def flow_hash(key: bytes, src: Any, dst: Any, proto: int, sport: int, dport: int) -> int:
    """Return the keyed flow hash ``siphash24(key, flow_key(src, dst, proto, sport, dport))``."""
    return siphash24(key, flow_key(src, dst, proto, sport, dport))


def flow_hash_many(key: bytes, flow_keys: bytes) -> list[int]:
    """Return the keyed hashes of concatenated 40-byte flow keys, in one C call."""
    k = _key_bytes(key)
    buf, n = _flow_keys_buffer(flow_keys)
    out = _ffi.new("uint64_t[]", n)
    _lib.fh_flow_hash_batch(k, buf, n, out)
    return _ffi.unpack(out, n)


# ------------------------------------------------------------------- Maglev


class MaglevTable:
    """
    Map 64-bit hashes to backend names through a Maglev lookup table.

    ``backends`` are distinct non-empty names; ``weights`` is None (all 1), a
    sequence parallel to ``backends`` or a mapping name -> weight, each a
    positive int; ``size`` is a prime M >= number of backends.  The table is
    built once, in C, and is immutable.
    """

    __slots__ = ("_backends", "_weights", "_size", "_table", "_slots")

    def __init__(
        self,
        backends: Iterable[str],
        weights: Iterable[int] | Mapping[str, int] | None = None,
        size: int = DEFAULT_MAGLEV_SIZE,
    ) -> None:
        if isinstance(backends, (str, bytes)):
            raise ValueError("backends must be an iterable of names, not a single string")
        names = list(backends)
        if not names:
            raise ValueError("backends must not be empty")
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"backend names must be non-empty strings, got {name!r}")
            if name in seen:
                raise ValueError(f"duplicate backend name: {name!r}")
            seen.add(name)
        wlist = self._weight_list(names, weights)
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"size must be an int, got {type(size).__name__}")
        if size > MAX_MAGLEV_SIZE:
            raise ValueError(f"size must be at most {MAX_MAGLEV_SIZE}, got {size}")
        if not is_prime(size):
            raise ValueError(f"size must be prime, got {size}")
        if size < len(names):
            raise ValueError(f"size {size} is smaller than the number of backends ({len(names)})")

        order = sorted(range(len(names)), key=names.__getitem__)
        self._backends: tuple[str, ...] = tuple(names[i] for i in order)
        self._weights: tuple[int, ...] = tuple(wlist[i] for i in order)
        self._size = size

        encoded = [name.encode("utf-8") for name in self._backends]
        offsets = [0]
        for e in encoded:
            offsets.append(offsets[-1] + len(e))
        blob = b"".join(encoded)
        self._table = _ffi.new("int32_t[]", size)
        rc = _lib.fh_maglev_build(
            _ffi.from_buffer("uint8_t[]", blob),
            _ffi.new("uint32_t[]", offsets),
            _ffi.new("uint32_t[]", list(self._weights)),
            len(encoded),
            size,
            self._table,
        )
        _check_rc(rc, "fh_maglev_build")
        self._slots = memoryview(_ffi.buffer(self._table)).cast("i").toreadonly()

    @staticmethod
    def _weight_list(names: list[str], weights: Any) -> list[int]:
        if weights is None:
            return [1] * len(names)
        if isinstance(weights, Mapping):
            missing = [n for n in names if n not in weights]
            extra = [k for k in weights if k not in set(names)]
            if missing:
                raise ValueError(f"weights missing for backends: {missing!r}")
            if extra:
                raise ValueError(f"weights given for unknown backends: {extra!r}")
            wlist = [weights[n] for n in names]
        else:
            if isinstance(weights, (str, bytes)):
                raise ValueError("weights must be a sequence or mapping of ints")
            wlist = list(weights)
            if len(wlist) != len(names):
                raise ValueError(f"got {len(wlist)} weights for {len(names)} backends; lengths must match")
        for name, w in zip(names, wlist):
            if isinstance(w, bool) or not isinstance(w, int):
                raise ValueError(f"weight of backend {name!r} must be an int, got {w!r}")
            if w <= 0:
                raise ValueError(f"weight of backend {name!r} must be positive, got {w}")
            if w > _U32_MAX:
                raise ValueError(f"weight of backend {name!r} must be below 2**32, got {w}")
        return wlist

    @property
    def backends(self) -> tuple[str, ...]:
        """Return the backend names, sorted; slot values index this tuple."""
        return self._backends

    @property
    def weights(self) -> tuple[int, ...]:
        """Return the weights, parallel to ``backends``."""
        return self._weights

    @property
    def size(self) -> int:
        """Return the table size M (prime)."""
        return self._size

    @property
    def slots(self) -> memoryview:
        """Return the table as a read-only memoryview of int32 backend indices."""
        return self._slots

    def slot_counts(self) -> dict[str, int]:
        """Return how many slots each backend owns."""
        counts = Counter(self._slots)
        return {name: counts.get(i, 0) for i, name in enumerate(self._backends)}

    def lookup(self, h: int) -> str:
        """Return the backend owning slot ``h % size`` for a 64-bit hash ``h``."""
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < _U64:
            raise ValueError(f"hash must be an int in 0..2**64-1, got {h!r}")
        return self._backends[self._slots[h % self._size]]

    def index_many(self, hashes: Iterable[int]) -> array:
        """Return ``array('i')`` of backend indices for many hashes, in one C call."""
        buf, n, _keep = _hash_buffer(hashes)
        out = array("i", bytes(4 * n))
        if n:
            _lib.fh_maglev_lookup_batch(
                self._table, self._size, buf, n, _ffi.from_buffer("int32_t[]", out, require_writable=True)
            )
        return out

    def lookup_many(self, hashes: Iterable[int]) -> list[str]:
        """Return the backend names for many hashes (batch form of ``lookup``)."""
        names = self._backends
        return [names[i] for i in self.index_many(hashes)]

    def index_flows(self, key: bytes, flow_keys: bytes, hashes_out: array | None = None) -> array:
        """
        Hash concatenated 40-byte flow keys and look each up, in one C call.

        Returns ``array('i')`` of backend indices.  If ``hashes_out`` is an
        ``array('Q')`` it is resized to hold the flow hashes.
        """
        k = _key_bytes(key)
        buf, n = _flow_keys_buffer(flow_keys)
        out = array("i", bytes(4 * n))
        hptr = _ffi.NULL
        if hashes_out is not None:
            if not isinstance(hashes_out, array) or hashes_out.typecode != "Q":
                raise ValueError("hashes_out must be an array('Q')")
            del hashes_out[:]
            hashes_out.frombytes(bytes(8 * n))
            if n:
                hptr = _ffi.from_buffer("uint64_t[]", hashes_out, require_writable=True)
        if n:
            _lib.fh_flow_lookup_batch(
                k,
                self._table,
                self._size,
                buf,
                n,
                hptr,
                _ffi.from_buffer("int32_t[]", out, require_writable=True),
            )
        return out

    def lookup_flows(self, key: bytes, flow_keys: bytes) -> list[str]:
        """Return the backend names for concatenated 40-byte flow keys."""
        names = self._backends
        return [names[i] for i in self.index_flows(key, flow_keys)]

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"MaglevTable(backends={list(self._backends)!r}, weights={list(self._weights)!r}, size={self._size})"


# --------------------------------------------------------------- flow table


class FlowTable:
    """
    Track connections: flow key -> (owner index, last-seen time in ns).

    The capacity is fixed at creation; a full table refuses new keys (counted
    in ``refused``) but still updates existing ones.  Not thread-safe.
    """

    __slots__ = ("_t", "_capacity", "_owner", "_seen")

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise ValueError(f"capacity must be an int, got {type(capacity).__name__}")
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if capacity > (1 << 32):
            raise ValueError(f"capacity must be at most 2**32, got {capacity}")
        ptr = _lib.fh_flowtable_new(capacity)
        if ptr == _ffi.NULL:
            raise MemoryError(f"cannot allocate a flow table of capacity {capacity}")
        self._t = _ffi.gc(ptr, _lib.fh_flowtable_free, size=capacity * 86)
        self._capacity = capacity
        self._owner = _ffi.new("int32_t *")
        self._seen = _ffi.new("int64_t *")

    @property
    def capacity(self) -> int:
        """Return the most entries the table holds."""
        return self._capacity

    @property
    def refused(self) -> int:
        """Return how many inserts were refused because the table was full."""
        return int(_lib.fh_flowtable_refused(self._t))

    def put(self, key: bytes, owner: int, now_ns: int) -> bool:
        """Insert or update ``key``; return False if it is new and the table is full."""
        k = _flow_key_bytes(key)
        _int_in("owner", owner, _I32_MIN, _I32_MAX)
        _int_in("now_ns", now_ns, _I64_MIN, _I64_MAX)
        return _lib.fh_flowtable_put(self._t, k, owner, now_ns) == _lib.FH_OK

    def get(self, key: bytes) -> tuple[int, int] | None:
        """Return ``(owner, last_seen_ns)`` for ``key``, or None if absent."""
        k = _flow_key_bytes(key)
        if _lib.fh_flowtable_get(self._t, k, self._owner, self._seen) != _lib.FH_OK:
            return None
        return int(self._owner[0]), int(self._seen[0])

    def pop(self, key: bytes) -> tuple[int, int] | None:
        """Remove ``key``; return its ``(owner, last_seen_ns)``, or None if absent."""
        k = _flow_key_bytes(key)
        if _lib.fh_flowtable_remove(self._t, k, self._owner, self._seen) != _lib.FH_OK:
            return None
        return int(self._owner[0]), int(self._seen[0])

    def expire(self, older_than_ns: int) -> int:
        """Remove every entry last seen before ``older_than_ns``; return how many."""
        _int_in("older_than_ns", older_than_ns, _I64_MIN, _I64_MAX)
        return int(_lib.fh_flowtable_expire(self._t, older_than_ns))

    def __len__(self) -> int:
        return int(_lib.fh_flowtable_len(self._t))

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"FlowTable(capacity={self._capacity}, len={len(self)}, refused={self.refused})"
