"""
Measure flow hashing, Maglev lookups and Maglev table builds.

Run from the repository root after ``pip install -e .``::

    python3 benchmarks/bench_flowhash.py [--flows 1000000] [--check]

Prints, from one run: hash+lookup rate through the batch API, the same
through the pure-Python reference (fewer flows, scaled), their ratio, and the
best-of-N Maglev build time at M=65537 for 4 and 64 backends.  With
``--check`` it exits 1 if a target is missed (>= 20 M lookups/s, >= 50x the
reference, build <= 5 ms).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import reference_flowhash as ref  # noqa: E402

from dataplane import flowhash as fh  # noqa: E402

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
TARGET_RATE = 20e6
TARGET_RATIO = 50.0
TARGET_BUILD_S = 5e-3


def make_flow_keys(n: int, seed: int = 1) -> bytes:
    """
    Return ``n`` concatenated IPv4 TCP flow keys toward one VIP.
    """
    rng = random.Random(seed)
    vip = bytes([10, 10, 0, 100])
    keys = [
        fh.flow_key(rng.randbytes(4), vip, 6, rng.randrange(1024, 65536), 443)
        for _ in range(n)
    ]
    return b"".join(keys)


def best_of(repeat: int, fn) -> float:
    """
    Return the fastest of ``repeat`` timed calls of ``fn``, in seconds.
    """
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--flows", type=int, default=1_000_000, help="flows for the batch API")
    parser.add_argument("--ref-flows", type=int, default=20_000, help="flows for the reference")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    backends = [f"se-{i}" for i in range(4)]
    table = fh.MaglevTable(backends)
    ref_slots = ref.maglev_table(backends, None, table.size)
    assert list(table.slots) == ref_slots

    blob = make_flow_keys(args.flows)
    n = args.flows

    t_batch = best_of(args.repeat, lambda: table.index_flows(KEY, blob))
    batch_rate = n / t_batch

    rn = min(args.ref_flows, n)
    ref_keys = [blob[i * 40 : (i + 1) * 40] for i in range(rn)]

    def run_ref() -> None:
        for k in ref_keys:
            ref.lookup(ref_slots, ref.siphash24(KEY, k))

    t_ref = best_of(1, run_ref)
    ref_rate = rn / t_ref

    # Sanity: the batch API agrees with the reference on the sampled flows.
    sample = ref_keys[:1000]
    idx = table.index_flows(KEY, b"".join(sample))
    assert list(idx) == [ref.lookup(ref_slots, ref.siphash24(KEY, k)) for k in sample]

    def per_call() -> None:
        for k in ref_keys:
            table.lookup(fh.siphash24(KEY, k))

    t_single = best_of(1, per_call)
    single_rate = rn / t_single

    build = {}
    for nb in (4, 64):
        names = [f"se-{i}" for i in range(nb)]
        build[nb] = best_of(max(7, args.repeat), lambda names=names: fh.MaglevTable(names))

    ratio = batch_rate / ref_rate
    print(f"flows: {n:,} IPv4 flow keys, Maglev M={table.size}, {len(backends)} backends")
    print(f"batch hash+lookup (index_flows):   {batch_rate / 1e6:8.2f} M lookups/s  ({t_batch * 1e3:.1f} ms for {n:,})")
    print(f"per-call facade (siphash24+lookup): {single_rate / 1e6:8.3f} M lookups/s  ({rn:,} flows)")
    print(f"pure-Python reference:             {ref_rate / 1e6:8.4f} M lookups/s  ({rn:,} flows, scaled)")
    print(f"batch / reference ratio:           {ratio:8.0f} x")
    for nb, t in build.items():
        print(f"Maglev build M=65537, {nb:2d} backends: {t * 1e3:8.3f} ms (best of {max(7, args.repeat)})")

    ok = (
        batch_rate >= TARGET_RATE
        and ratio >= TARGET_RATIO
        and all(t <= TARGET_BUILD_S for t in build.values())
    )
    print("targets (>= 20 M/s, >= 50x, build <= 5 ms):", "met" if ok else "MISSED")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
