"""
Replay benchmark: throughput, ratio to a raw read+write, and peak memory vs capture length.

    python benchmarks/bench_replay.py [--packets 1000000] [--small 50000] [--large 2000000] [--proxy]

1. Synthesizes a capture of ``--packets`` packets (TCP connections of 15
   packets, 50 concurrent, one packet every 20 us: thousands of flows).
2. Times a raw read + write of it (our streaming reader into our pcapng
   writer: the floor any replay pays) and a full replay through a 4-SE
   VMware scenario; prints input packets/s and the ratio of the two times.
3. Replays a ``--small`` and a ``--large`` capture in child processes and
   prints each one's peak RSS and their ratio, which must stay <= 1.2
   (memory follows live flows, not the capture's length).
4. With ``--proxy``, replays the throughput capture again with the VS under
   ``tcp-proxy`` (each flow into the SE's two live connections) and prints
   the time ratio to the fast path.

Every figure comes from this one run; nothing is compared to a stored time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataplane import scenario
from dataplane.replay import synth as replay_synth
from dataplane.wire import capture_reader
from dataplane.wire.pcapng import PcapngWriter

SCENARIO = {
    "name": "bench-replay", "cloud": "vmware", "seed": 1, "duration": 1.0,
    "networks": {"frontend": {"cidr": "10.10.0.0/24", "gateway": "10.10.0.1"},
                 "backend": {"cidr": "10.20.0.0/24"}},
    # An SE's packet budget high enough never to queue: the benchmark measures forwarding, not overload.
    "se_group": {"capacity_pps": 1e9},
    "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"} for i in range(1, 5)],
    "virtual_service": {"name": "vs-web", "vip": "10.10.0.100", "port": 80, "protocol": "tcp",
                        "placement": ["se-1", "se-2", "se-3", "se-4"],
                        # The packet-by-packet path this benchmark has always measured; the TCP proxy
                        # (the product's default) answers the SYN itself and is benchmarked apart.
                        "network_profile": "tcp-fast-path"},
    "pool": {"servers": ["10.20.0.101:8080", "10.20.0.102:8080", "10.20.0.103:8080"]},
    "traffic": {"clients": ["198.51.100.0/28"]},
}
PACKETS_PER_FLOW = 15


def synthesize(path: Path, packets: int) -> int:
    flows = max(1, packets // PACKETS_PER_FLOW)
    return replay_synth.write_pcap(path, replay_synth.http_flows(flows, data_segments=4, concurrency=50,
                                                                 gap_ns=20_000))


def raw_read_write(path: Path, out: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    with open(out, "wb", buffering=1 << 20) as handle:
        writer = PcapngWriter(handle, application="bench")
        interface = writer.add_interface("raw")
        for record in capture_reader.open_capture(path):
            writer.write_frame(interface, record.time_ns, record.data, "raw copy")
            count += 1
        writer.close()
    return count, time.perf_counter() - start


def replay(path: Path, out: Path, profile: str = "tcp-fast-path") -> tuple[dict, float]:
    from dataplane.replay import run_replay

    sc = scenario.parse({**SCENARIO, "virtual_service": {**SCENARIO["virtual_service"], "network_profile": profile}},
                        "bench.toml")
    start = time.perf_counter()
    summary = run_replay(sc, path, out)
    return summary, time.perf_counter() - start


def child_peak_rss(path: Path, out: Path) -> tuple[int, float, dict]:
    """Replay in a fresh interpreter; return (peak RSS bytes, seconds, replay counts)."""
    code = ("import sys, json; sys.path.insert(0, %r); import bench_replay as b; from pathlib import Path; "
            "s, t = b.replay(Path(%r), Path(%r)); "
            "print(json.dumps({'t': t, 'in': s['replay']['input_packets'], 'flows': s['replay']['flows']}))"
            % (str(Path(__file__).parent), str(path), str(out)))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child replay of {path} failed ({proc.returncode})")
    import json
    result = json.loads(stdout.strip().splitlines()[-1])
    return usage.ru_maxrss * 1024, result["t"], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--proxy", action="store_true", help="also time the replay under tcp-proxy")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-replay-"))
    work.mkdir(parents=True, exist_ok=True)

    capture = work / "throughput.pcap"
    count = synthesize(capture, args.packets)
    size = capture.stat().st_size
    print(f"synthesized {count} packets, {count // PACKETS_PER_FLOW} flows, {size / 1e6:.1f} MB")
    raw_count, raw_s = raw_read_write(capture, work / "raw.pcapng")
    print(f"raw read+write: {raw_count / raw_s:,.0f} packets/s ({raw_s:.2f} s)")
    summary, replay_s = replay(capture, work / "out-throughput")
    rep = summary["replay"]
    assert rep["input_packets"] == count and rep["flows"]["completed"] == rep["flows"]["total"], rep["flows"]
    print(f"replay: {count / replay_s:,.0f} input packets/s ({replay_s:.2f} s, "
          f"{summary['frames_by_segment']} frames written)")
    print(f"replay / raw read+write time: {replay_s / raw_s:.1f}x")
    if args.proxy:
        proxied, proxy_s = replay(capture, work / "out-proxy", "tcp-proxy")
        assert proxied["replay"]["flows"]["completed"] == count // PACKETS_PER_FLOW, proxied["replay"]["flows"]
        print(f"replay under tcp-proxy: {count / proxy_s:,.0f} input packets/s; "
              f"time ratio to the fast path {proxy_s / replay_s:.2f}x")
    (work / "raw.pcapng").unlink()

    peaks = {}
    for label, packets in (("small", args.small), ("large", args.large)):
        path = work / f"{label}.pcap"
        n = synthesize(path, packets)
        rss, seconds, result = child_peak_rss(path, work / f"out-{label}")
        peaks[label] = rss
        print(f"peak RSS replaying {n:,} packets ({result['flows']['total']:,} flows): {rss / 1e6:.1f} MB "
              f"({n / seconds:,.0f} packets/s)")
        path.unlink()
    ratio = peaks["large"] / peaks["small"]
    print(f"peak memory ratio {args.large:,} / {args.small:,} packets: {ratio:.3f} "
          f"({'ok' if ratio <= 1.2 else 'FAIL'}: must stay <= 1.2)")
    if ratio > 1.2:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
