"""
Test dataplane.flowhash against the SipHash vectors and the pure-Python reference.
"""

from __future__ import annotations

import ipaddress
import random

import netaddr
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_flowhash as ref
from dataplane import flowhash as fh

# SipHash-2-4 reference vectors (veorq/SipHash vectors.h, vectors_sip64):
# key 00 01 .. 0f, message of length i holding 00 01 .. i-1, output read as a
# little-endian 64-bit integer.
SIPHASH_VECTORS = [
    0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a,
    0x85676696d7fb7e2d, 0xcf2794e0277187b7, 0x18765564cd99a68d,
    0xcbc9466e58fee3ce, 0xab0200f58b01d137, 0x93f5f5799a932462,
    0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
    0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee,
    0xa129ca6149be45e5, 0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794,
    0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd, 0xbed65cf21aa2ee98,
    0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
    0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3,
    0x2f2e6163076bcfad, 0xde4daaaca71dc9a5, 0xa6a2506687956571,
    0xad87a3535c49ef28, 0x32d892fad841c342, 0x7127512f72f27cce,
    0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
    0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d,
    0x9abfd8766a33735c, 0x0e3ea96b5304a7d0, 0xad0c42d6fc585992,
    0x187306c89bc215a9, 0xd4a60abcf3792b95, 0xf935451de4f21df2,
    0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
    0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72,
    0xa192d576b245165a, 0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f,
    0x7fa8220ba3b2ecea, 0x245731c13ca42499, 0xb78dbfaf3a8d83bd,
    0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
    0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57,
    0x958a324ceb064572,
]
VECTOR_KEY = bytes(range(16))
KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")

keys = st.binary(min_size=16, max_size=16)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
protos = st.integers(0, 255)


# ------------------------------------------------------------- native smoke


def test_native_module_smoke():
    from dataplane._native import ffi, lib

    assert lib.FH_ABI_VERSION == fh.NATIVE_VERSION == 1
    assert lib.FH_FLOW_KEY_LEN == fh.FLOW_KEY_LEN == 40
    assert ffi.sizeof("fh_flow_entry") <= 64
    assert fh.MAGLEV_OFFSET_KEY == ref.MAGLEV_OFFSET_KEY
    assert fh.MAGLEV_SKIP_KEY == ref.MAGLEV_SKIP_KEY


# ----------------------------------------------------------------- SipHash


def test_there_are_64_vectors():
    assert len(SIPHASH_VECTORS) == 64


@pytest.mark.parametrize("n", range(64))
def test_siphash_reference_vectors(n):
    msg = bytes(range(n))
    assert fh.siphash24(VECTOR_KEY, msg) == SIPHASH_VECTORS[n]
    assert ref.siphash24(VECTOR_KEY, msg) == SIPHASH_VECTORS[n]


@settings(max_examples=300, deadline=None)
@given(keys, st.binary(max_size=200))
def test_siphash_matches_reference(key, data):
    assert fh.siphash24(key, data) == ref.siphash24(key, data)


def test_siphash_accepts_bytes_like():
    data = bytes(range(33))
    want = fh.siphash24(KEY, data)
    assert fh.siphash24(bytearray(KEY), bytearray(data)) == want
    assert fh.siphash24(memoryview(KEY), memoryview(data)) == want


# ---------------------------------------------------------------- flow keys


def test_flow_key_layout_v4():
    k = fh.flow_key("10.0.0.1", "192.168.1.2", 6, 12345, 80)
    assert len(k) == 40
    assert k[0] == 4 and k[1] == 6
    assert k[2:4] == (12345).to_bytes(2, "big")
    assert k[4:6] == (80).to_bytes(2, "big")
    assert k[6:8] == b"\0\0"
    assert k[8:24] == bytes([10, 0, 0, 1]) + bytes(12)
    assert k[24:40] == bytes([192, 168, 1, 2]) + bytes(12)


def test_flow_key_layout_v6():
    k = fh.flow_key("2001:db8::1", "2001:db8::2", 17, 53, 5353)
    assert k[0] == 6 and k[1] == 17
    assert k[8:24] == ipaddress.ip_address("2001:db8::1").packed
    assert k[24:40] == ipaddress.ip_address("2001:db8::2").packed


def test_flow_key_matches_c_builder():
    from dataplane._native import ffi, lib

    for src, dst in [("10.1.2.3", "10.9.8.7"), ("fe80::1", "2001:db8::ff")]:
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        out = ffi.new("uint8_t[40]")
        assert lib.fh_flow_key(out, s.version, 6, 1000, 443, s.packed, d.packed) == 0
        assert bytes(ffi.buffer(out)) == fh.flow_key(src, dst, 6, 1000, 443)
    assert lib.fh_flow_key(out, 5, 6, 1, 1, b"\0" * 4, b"\0" * 4) == lib.FH_EINVAL


@pytest.mark.parametrize(
    "src,dst",
    [
        ("10.0.0.1", "10.0.0.2"),
        (0x0A000001, 0x0A000002),
        (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])),
        (ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2")),
        (netaddr.IPAddress("10.0.0.1"), netaddr.IPAddress("10.0.0.2")),
        ("10.0.0.1", netaddr.IPAddress("10.0.0.2")),
    ],
)
def test_address_forms_v4_agree(src, dst):
    assert fh.flow_key(src, dst, 6, 1, 2) == ref.flow_key("10.0.0.1", "10.0.0.2", 6, 1, 2)


@pytest.mark.parametrize(
    "src,dst",
    [
        ("2001:db8::1", "2001:db8::2"),
        (int(ipaddress.IPv6Address("2001:db8::1")), int(ipaddress.IPv6Address("2001:db8::2"))),
        (ipaddress.IPv6Address("2001:db8::1").packed, ipaddress.IPv6Address("2001:db8::2").packed),
        (ipaddress.IPv6Address("2001:db8::1"), "2001:db8::2"),
        (netaddr.IPAddress("2001:db8::1"), netaddr.IPAddress("2001:db8::2")),
    ],
)
def test_address_forms_v6_agree(src, dst):
    assert fh.flow_key(src, dst, 17, 1, 2) == ref.flow_key("2001:db8::1", "2001:db8::2", 17, 1, 2)


@settings(max_examples=200, deadline=None)
@given(keys, ipv4, ipv4, protos, ports, ports)
def test_flow_hash_v4_matches_reference(key, src, dst, proto, sport, dport):
    assert fh.flow_hash(key, src, dst, proto, sport, dport) == ref.flow_hash(
        key, src, dst, proto, sport, dport
    )


@settings(max_examples=200, deadline=None)
@given(keys, ipv6, ipv6, protos, ports, ports)
def test_flow_hash_v6_matches_reference(key, src, dst, proto, sport, dport):
    assert fh.flow_hash(key, src, dst, proto, sport, dport) == ref.flow_hash(
        key, src, dst, proto, sport, dport
    )


def test_flow_hash_is_direction_sensitive():
    assert fh.flow_hash(KEY, "10.0.0.1", "10.0.0.2", 6, 1, 2) != fh.flow_hash(
        KEY, "10.0.0.2", "10.0.0.1", 6, 2, 1
    )


@settings(max_examples=50, deadline=None)
@given(keys, st.lists(st.tuples(ipv4, ipv4, protos, ports, ports), max_size=20))
def test_flow_hash_many_matches_single(key, tuples):
    blob = b"".join(fh.flow_key(*t) for t in tuples)
    assert fh.flow_hash_many(key, blob) == [fh.flow_hash(key, *t) for t in tuples]


# ------------------------------------------------------------------- Maglev


def _ref_slots(backends, weights, size):
    return ref.maglev_table(backends, weights, size)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([13, 251, 1009]),
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=12, unique=True),
    st.data(),
)
def test_maglev_matches_reference(size, backends, data):
    backends = backends[:size]
    weights = data.draw(
        st.none() | st.lists(st.integers(1, 5), min_size=len(backends), max_size=len(backends))
    )
    table = fh.MaglevTable(backends, weights, size=size)
    assert table.backends == tuple(sorted(backends))
    assert list(table.slots) == _ref_slots(backends, weights, size)


def test_maglev_matches_reference_full_size():
    backends = [f"se-{i}" for i in range(5)]
    weights = [1, 2, 3, 1, 1]
    table = fh.MaglevTable(backends, weights)
    assert table.size == 65537
    assert list(table.slots) == _ref_slots(backends, weights, 65537)


@pytest.mark.parametrize("n", range(1, 9))
def test_maglev_balance_equal_weights(n):
    m = 65537
    table = fh.MaglevTable([f"se-{i}" for i in range(n)], size=m)
    counts = table.slot_counts()
    assert sum(counts.values()) == m
    assert set(counts.values()) <= {m // n, -(-m // n)}


@pytest.mark.parametrize("heavy", ["se-0", "se-2", "se-3"])
def test_maglev_weight_two_gets_twice(heavy):
    names = [f"se-{i}" for i in range(4)]
    weights = {n: (2 if n == heavy else 1) for n in names}
    counts = fh.MaglevTable(names, weights).slot_counts()
    light = [counts[n] for n in names if n != heavy]
    ratio = counts[heavy] / (sum(light) / len(light))
    assert abs(ratio - 2.0) < 0.03 * 2.0
    assert sum(counts.values()) == 65537


def test_maglev_weights_proportional():
    names = ["a", "b", "c"]
    counts = fh.MaglevTable(names, [1, 3, 6], size=65537).slot_counts()
    for name, w in zip(names, [1, 3, 6]):
        assert abs(counts[name] / 65537 - w / 10) < 0.005


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True), st.randoms())
def test_maglev_order_independent(backends, rnd):
    weights = {b: (i % 3) + 1 for i, b in enumerate(sorted(backends))}
    shuffled = list(backends)
    rnd.shuffle(shuffled)
    a = fh.MaglevTable(backends, [weights[b] for b in backends], size=1009)
    b = fh.MaglevTable(shuffled, weights, size=1009)
    assert a.backends == b.backends
    assert bytes(a.slots) == bytes(b.slots)


def _moved(before: fh.MaglevTable, after: fh.MaglevTable) -> int:
    return sum(
        1
        for x, y in zip(before.slots, after.slots)
        if before.backends[x] != after.backends[y]
    )


@pytest.mark.parametrize("prefix", ["se", "node", "10.0.0."])
def test_maglev_disruption_add_backend(prefix):
    four = [f"{prefix}{i}" for i in range(1, 5)]
    before = fh.MaglevTable(four)
    after = fh.MaglevTable(four + [f"{prefix}5"])
    assert _moved(before, after) <= 0.22 * before.size


@pytest.mark.parametrize("gone", range(5))
def test_maglev_disruption_remove_backend(gone):
    five = [f"se-{i}" for i in range(5)]
    before = fh.MaglevTable(five)
    after = fh.MaglevTable([b for i, b in enumerate(five) if i != gone])
    own = before.slot_counts()[five[gone]]
    moved = _moved(before, after)
    assert moved >= own
    assert moved - own <= 0.03 * before.size


def test_maglev_lookup_apis_agree():
    table = fh.MaglevTable(["a", "b", "c", "d"], size=1009)
    ref_slots = _ref_slots(["a", "b", "c", "d"], None, 1009)
    rng = random.Random(7)
    tuples = [
        (f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", "10.1.0.1", 6, rng.randrange(65536), 443)
        for _ in range(500)
    ]
    blob = b"".join(fh.flow_key(*t) for t in tuples)
    hashes = [fh.flow_hash(KEY, *t) for t in tuples]
    names = [table.lookup(h) for h in hashes]
    assert names == [table.backends[ref.lookup(ref_slots, h)] for h in hashes]
    assert table.lookup_many(hashes) == names
    assert table.lookup_many(iter(hashes)) == names
    from array import array

    assert table.lookup_many(array("Q", hashes)) == names
    assert table.lookup_flows(KEY, blob) == names
    hout = array("Q")
    idx = table.index_flows(KEY, blob, hashes_out=hout)
    assert list(hout) == hashes
    assert [table.backends[i] for i in idx] == names
    assert table.lookup_many([]) == []
    assert table.lookup_flows(KEY, b"") == []
    assert table.lookup(2**64 - 1) in table.backends


def test_maglev_slots_read_only():
    table = fh.MaglevTable(["a"], size=13)
    assert list(table.slots) == [0] * 13
    with pytest.raises(TypeError):
        table.slots[0] = 1


# --------------------------------------------------------------- flow table


def _fk(i: int) -> bytes:
    return fh.flow_key(i & 0xFFFFFFFF, 0x0A000001, 6, i & 0xFFFF, 80)


def test_flow_table_put_get_update_pop():
    t = fh.FlowTable(8)
    assert t.capacity == 8 and len(t) == 0
    assert t.get(_fk(1)) is None
    assert t.put(_fk(1), 3, 100)
    assert t.get(_fk(1)) == (3, 100)
    assert _fk(1) in t
    assert t.put(_fk(1), -7, 250)
    assert t.get(_fk(1)) == (-7, 250)
    assert len(t) == 1
    assert t.pop(_fk(1)) == (-7, 250)
    assert t.pop(_fk(1)) is None
    assert len(t) == 0


def test_flow_table_full_refuses_and_counts():
    t = fh.FlowTable(100)
    for i in range(100):
        assert t.put(_fk(i), i, i)
    assert len(t) == 100
    assert not t.put(_fk(1000), 1, 1)
    assert not t.put(_fk(1001), 1, 1)
    assert t.refused == 2
    assert t.get(_fk(1000)) is None
    # Updating an existing key still works when full, and is not refused.
    assert t.put(_fk(5), 42, 999)
    assert t.get(_fk(5)) == (42, 999)
    assert t.refused == 2 and len(t) == 100
    # Every original entry is still there: no silent eviction.
    assert all(t.get(_fk(i)) is not None for i in range(100))
    t.pop(_fk(0))
    assert t.put(_fk(1000), 1, 1)


def test_flow_table_expire():
    t = fh.FlowTable(1000)
    for i in range(1000):
        t.put(_fk(i), i % 4, i * 10)
    assert t.expire(5000) == 500
    assert len(t) == 500
    assert all(t.get(_fk(i)) is None for i in range(500))
    assert all(t.get(_fk(i)) == (i % 4, i * 10) for i in range(500, 1000))
    assert t.expire(5000) == 0
    assert t.expire(10**18) == 500
    assert len(t) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(
        st.tuples(st.sampled_from(["put", "pop", "get", "expire"]), st.integers(0, 60), st.integers(0, 1000)),
        max_size=200,
    ),
)
def test_flow_table_matches_dict_model(capacity, ops):
    t = fh.FlowTable(capacity)
    model: dict[bytes, tuple[int, int]] = {}
    refused = 0
    for op, k, v in ops:
        key = _fk(k)
        if op == "put":
            ok = key in model or len(model) < capacity
            assert t.put(key, k, v) == ok
            if ok:
                model[key] = (k, v)
            else:
                refused += 1
        elif op == "pop":
            assert t.pop(key) == model.pop(key, None)
        elif op == "get":
            assert t.get(key) == model.get(key)
        else:
            stale = [fk for fk, (_, seen) in model.items() if seen < v]
            assert t.expire(v) == len(stale)
            for fk in stale:
                del model[fk]
        assert len(t) == len(model)
    assert t.refused == refused
    for key, val in model.items():
        assert t.get(key) == val


def test_flow_table_large_churn():
    t = fh.FlowTable(50_000)
    for i in range(50_000):
        assert t.put(_fk(i), i, i)
    assert t.expire(25_000) == 25_000
    for i in range(50_000, 75_000):
        assert t.put(_fk(i), i, i)
    assert not t.put(_fk(10**6), 0, 0)
    assert all(t.get(_fk(i)) == (i, i) for i in range(25_000, 75_000))


# ------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: fh.siphash24(b"short", b""), "key must be 16 bytes"),
        (lambda: fh.siphash24("x" * 16, b""), "key must be 16 bytes"),
        (lambda: fh.flow_hash(bytes(15), "1.1.1.1", "2.2.2.2", 6, 1, 1), "key must be 16 bytes"),
        (lambda: fh.flow_hash_many(bytes(17), b""), "key must be 16 bytes"),
        (lambda: fh.flow_hash_many(KEY, bytes(41)), "multiple of 40"),
        (lambda: fh.flow_key("1.1.1.1", "::1", 6, 1, 1), "families must match"),
        (lambda: fh.flow_key(b"\x01\x02\x03", "1.1.1.1", 6, 1, 1), "4 or 16 bytes"),
        (lambda: fh.flow_key("1.1.1.300", "1.1.1.1", 6, 1, 1), "source address is not valid"),
        (lambda: fh.flow_key("1.1.1.1", 2.5, 6, 1, 1), "destination address must be"),
        (lambda: fh.flow_key("1.1.1.1", "1.1.1.2", 256, 1, 1), "proto must be in 0..255"),
        (lambda: fh.flow_key("1.1.1.1", "1.1.1.2", 6, 65536, 1), "sport must be in 0..65535"),
        (lambda: fh.flow_key("1.1.1.1", "1.1.1.2", 6, 1, -1), "dport must be in 0..65535"),
        (lambda: fh.MaglevTable([]), "backends must not be empty"),
        (lambda: fh.MaglevTable("abc"), "not a single string"),
        (lambda: fh.MaglevTable(["a", "b", "a"]), "duplicate backend name: 'a'"),
        (lambda: fh.MaglevTable(["a", ""]), "non-empty strings"),
        (lambda: fh.MaglevTable(["a", "b"], [1, 0]), "weight of backend 'b' must be positive"),
        (lambda: fh.MaglevTable(["a", "b"], [1, -3]), "must be positive"),
        (lambda: fh.MaglevTable(["a", "b"], [1, 1.5]), "weight of backend 'b' must be an int"),
        (lambda: fh.MaglevTable(["a", "b"], [1, True]), "must be an int"),
        (lambda: fh.MaglevTable(["a", "b"], [1]), "lengths must match"),
        (lambda: fh.MaglevTable(["a", "b"], {"a": 1}), "weights missing"),
        (lambda: fh.MaglevTable(["a"], {"a": 1, "z": 2}), "unknown backends"),
        (lambda: fh.MaglevTable(["a"], size=65536), "size must be prime, got 65536"),
        (lambda: fh.MaglevTable(["a"], size=1), "size must be prime"),
        (lambda: fh.MaglevTable([str(i) for i in range(5)], size=3), "smaller than the number of backends"),
        (lambda: fh.MaglevTable(["a"]).lookup(-1), "hash must be an int"),
        (lambda: fh.MaglevTable(["a"]).lookup_many([2**64]), "hashes must be ints"),
        (lambda: fh.FlowTable(0), "capacity must be positive"),
        (lambda: fh.FlowTable(8).put(bytes(39), 1, 1), "flow key must be 40 bytes"),
        (lambda: fh.FlowTable(8).put(_fk(1), 2**31, 1), "owner must be in"),
        (lambda: fh.FlowTable(8).get("x" * 40), "flow key must be 40 bytes"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_is_prime():
    primes = [n for n in range(200) if fh.is_prime(n)]
    assert primes == [n for n in range(2, 200) if all(n % d for d in range(2, n))]
    assert fh.is_prime(65537) and fh.is_prime(655373) and not fh.is_prime(65535)


def test_ipv4_fast_key_equals_the_checked_key():
    from dataplane import flowhash
    src, dst = bytes([198, 51, 100, 7]), bytes([10, 10, 0, 100])
    assert flowhash.flow_key_ipv4(src, dst, 6, 40001, 80) == flowhash.flow_key("198.51.100.7", "10.10.0.100", 6, 40001, 80)
