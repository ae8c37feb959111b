"""
Measure the emulator's forwarding path against a raw-bytes floor and Scapy.

Run from the repository root after ``pip install -e .``::

    python3 benchmarks/bench_forwarding.py [--frames 200000] [--silent-servers] [--profile]

What it does, in one process run:

1. **Emulator.**  Builds a 4-SE VMware ``Network`` (capture on, into a temp
   file, no generated traffic), places the VS, primes every ARP cache, then
   feeds pre-built client->VIP TCP frames (per flow: SYN, then data segments
   of ``request_bytes``) straight into the primary SE's frontend NIC, as the
   gateway router would deliver them, one per microsecond of virtual time.
   The emulator steers them (primary -> secondary on ``frontend``), SNATs
   them (-> ``backend``), the servers answer (SYN-ACK, responses), the owner
   reverse-NATs the answers and returns them to the router (``frontend``),
   which routes them to the (muted) clients.  "Crossings" are frames written
   to the capture, i.e. frames that crossed a captured segment; "input
   frames" are the frames we injected.  ``--silent-servers`` fails the
   servers so only the client->server half (steer + SNAT) is measured.
2. **Floor.**  The same crossings (same bytes, same comments, same
   interfaces) read back from the capture with ``capture_reader`` and
   written with ``PcapngWriter``: the I/O any capture-producing path must do,
   with no emulation.  Ratio emulator/floor, target <= 5.
3. **Scapy.**  A subset of the same crossings dissected and rebuilt as Scapy
   objects (``Ether(raw)``, new Ethernet addresses, checksums deleted,
   ``bytes()``), scaled to all crossings.  Ratio Scapy/emulator, target >= 50.

Absolute rates depend on the machine; the ratios are what to compare across
commits, and all three are measured in the same run.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import tempfile
import time
from pathlib import Path

from dataplane import scenario
from dataplane.wire import capture_reader, frames
from dataplane.wire.frames import ACK, PSH, SYN
from dataplane.emulation import Network, build
from dataplane.wire.pcapng import PcapngWriter

DATA_SEGMENTS_PER_FLOW = 3
FLOWS_IN_FLIGHT = 1000
INJECT_INTERVAL_NS = 1_000
WARMUP_NS = 50_000_000  # placement, gratuitous ARP, first health probes
DRAIN_NS = 20_000_000  # after the last injection: every hop and answer has landed
SCAPY_SAMPLE = 3000
TARGET_FLOOR_RATIO = 5.0
TARGET_SCAPY_RATIO = 50.0

SCENARIO = {
    "name": "bench-4se", "cloud": "vmware", "seed": 3, "duration": 3600.0,
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
    "pool": {"servers": ["10.20.0.101:8080", "10.20.0.102:8080"]},
    "traffic": {"clients": ["198.51.100.0/24"], "new_connections_per_second": 1,
                "request_bytes": 200, "response_bytes": 1200},
}


# -- setup ---------------------------------------------------------------------

def build_network(capture_file, silent_servers: bool) -> Network:
    """Return a placed, ARP-primed network whose clients ignore what they receive."""
    net = build(scenario.parse(SCENARIO, "bench"), capture_file=capture_file)
    net.start(traffic=False)
    net.sim.run(until_ns=WARMUP_NS)  # periodic monitors never let the queue drain
    prime_arp(net)
    for client in net.clients:
        client.alive = False  # answers reach the client link; no client state to disturb
    for server in net.servers:
        server.failed = silent_servers
    return net


def prime_arp(net: Network) -> None:
    """Fill every ARP cache and switch table as a warmed-up run has them (no ARP, no flooding timed)."""
    for segment in net.segments.values():
        for nic in segment.ports:
            segment.mac_table[nic.mac] = nic
    ses = [net.nodes[name] for name in net.se_names]
    router = net.router
    for se in ses:
        se.arp_cache[router.frontend_nic.ip] = router.frontend_nic.mac
        for server in net.servers:
            se.arp_cache[server.ip] = server.nic.mac
    for server in net.servers:
        for se in ses:
            server.arp_cache[se.backend.ip] = se.backend.mac
    for client in net.clients:
        router.arp_cache[client.ip] = client.nic.mac
    router.arp_cache[net.vs.vip] = ses[0].frontend.mac


def build_input_frames(net: Network, count: int, seed: int = 1) -> list[bytes]:
    """Return ``count`` client->VIP frames as the router sends them, flows interleaved in batches."""
    rng = random.Random(seed)
    primary, router = net.nodes[net.vs.primary], net.router
    eth_dst, eth_src, vip, port = primary.frontend.mac, router.frontend_nic.mac, net.vs.vip, net.vs.port
    request = b"G" * net.scenario.traffic.request_bytes
    per_flow = 1 + DATA_SEGMENTS_PER_FLOW
    flows = [(net.clients[i % len(net.clients)].ip, 1024 + i // len(net.clients), rng.getrandbits(32))
             for i in range(-(-count // per_flow))]
    out: list[bytes] = []
    for start in range(0, len(flows), FLOWS_IN_FLIGHT):
        batch = flows[start:start + FLOWS_IN_FLIGHT]
        for step in range(per_flow):
            for ident, (ip, sport, isn) in enumerate(batch):
                if step == 0:
                    frame = frames.tcp_frame(eth_dst, eth_src, ip, vip, sport, port, isn, 0, SYN,
                                             b"", ident, mss=frames.TCP_MSS)
                else:
                    seq = isn + 1 + (step - 1) * len(request)
                    frame = frames.tcp_frame(eth_dst, eth_src, ip, vip, sport, port, seq, 1, PSH | ACK,
                                             request, ident)
                out.append(frame)
    return out[:count]


# -- the three measurements ----------------------------------------------------

def run_emulator(net: Network, inputs: list[bytes]) -> float:
    """Feed ``inputs`` into the primary, one per INJECT_INTERVAL_NS, run until drained; return seconds."""
    primary = net.nodes[net.vs.primary]
    nic, sim, receive = primary.frontend, net.sim, primary.receive
    feed = iter(inputs)

    def inject() -> None:
        frame = next(feed, None)
        if frame is not None:
            receive(nic, frame)
            sim.after(INJECT_INTERVAL_NS, inject)

    sim.after(INJECT_INTERVAL_NS, inject)
    until = sim.now + (len(inputs) + 1) * INJECT_INTERVAL_NS + DRAIN_NS
    t0 = time.perf_counter()
    sim.run(until_ns=until)
    net.capture.writer.flush()
    return time.perf_counter() - t0


def run_floor(capture_path: Path, out_path: Path) -> tuple[float, int]:
    """Read every record of ``capture_path`` and write it unchanged; return (seconds, records)."""
    t0 = time.perf_counter()
    count = 0
    with PcapngWriter(str(out_path), comment="floor") as writer:
        for name in ("clients", "frontend", "backend"):
            writer.add_interface(name)
        write = writer.write_frame
        for rec in capture_reader.open_capture(capture_path):
            write(rec.interface, rec.time_ns, rec.data, rec.comment)
            count += 1
    return time.perf_counter() - t0, count


def run_scapy(sample: list[bytes]) -> float:
    """Dissect and rebuild ``sample`` as Scapy objects (one hop each); return seconds per frame."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    t0 = time.perf_counter()
    for raw in sample:
        pkt = Ether(raw)
        pkt.src, pkt.dst = "02:00:0a:0a:00:0b", "02:00:0a:0a:00:0c"
        if IP in pkt:
            del pkt[IP].chksum
            for layer in (TCP, UDP):
                if layer in pkt:
                    del pkt[layer].chksum
        bytes(pkt)
    return (time.perf_counter() - t0) / len(sample)


# -- reporting -----------------------------------------------------------------

def crossing_breakdown(capture_path: Path, skip: int, every: int) -> tuple[dict[str, int], list[bytes]]:
    """Count the timed crossings by segment and kind (from their comments); keep every ``every``-th frame."""
    kinds: dict[str, int] = {}
    sample: list[bytes] = []
    for number, rec in enumerate(capture_reader.open_capture(capture_path)):
        if number < skip:
            continue
        words = (rec.comment or "").split()
        kind = f"{rec.interface_name}: {words[1] if len(words) > 1 else '?'}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if number % every == 0:
            sample.append(rec.data)
    return kinds, sample


def report(inputs: int, crossings: int, emu_s: float, floor_s: float, scapy_per_frame: float,
           kinds: dict[str, int], net: Network) -> None:
    scapy_s = scapy_per_frame * crossings
    print(f"input frames injected into the primary: {inputs:,}")
    print(f"frames crossing captured segments:      {crossings:,} ({crossings / inputs:.2f} per input frame)")
    for kind, n in sorted(kinds.items()):
        print(f"    {kind:<28} {n:>10,}")
    print(f"drops: {dict(net.runtime.counters.drops) or 'none'}; flows by SE: {dict(net.vs.flows_by_se)}")
    print(f"emulator (capture on):  {emu_s:8.3f} s  {inputs / emu_s:>12,.0f} input frames/s  "
          f"{crossings / emu_s:>12,.0f} crossings/s  ({net.sim.events_run:,} events)")
    print(f"floor (read+write pcapng, same {crossings:,} frames): {floor_s:8.3f} s  "
          f"{crossings / floor_s:>12,.0f} frames/s")
    ratio = emu_s / floor_s
    print(f"  emulator / floor time ratio: {ratio:.2f}x  (target <= {TARGET_FLOOR_RATIO:g}x: "
          f"{'met' if ratio <= TARGET_FLOOR_RATIO else 'MISSED'})")
    print(f"scapy dissect+rebuild: {1 / scapy_per_frame:,.0f} frames/s, scaled to {crossings:,} crossings "
          f"= {scapy_s:.1f} s")
    speedup = scapy_s / emu_s
    print(f"  emulator is {speedup:.1f}x faster than a Scapy object per hop  (target >= "
          f"{TARGET_SCAPY_RATIO:g}x: {'met' if speedup >= TARGET_SCAPY_RATIO else 'MISSED'})")


def print_profile(profiler: cProfile.Profile, top: int = 15) -> None:
    for key in ("tottime", "cumulative"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(key).print_stats(top)
        print(f"\n--- cProfile of the emulator run, top {top} by {key} ---")
        print(stream.getvalue().split("\n\n", 1)[-1].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="input frames to inject (default 200000)")
    parser.add_argument("--silent-servers", action="store_true", help="servers do not answer (client->server only)")
    parser.add_argument("--profile", action="store_true", help="also profile a second emulator run (cProfile)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_forwarding.") as tmp:
        capture_path = Path(tmp) / "capture.pcapng"
        with open(capture_path, "wb", buffering=1 << 20) as capture_file:
            net = build_network(capture_file, args.silent_servers)
            inputs = build_input_frames(net, args.frames)
            before = net.capture.frames
            emu_s = run_emulator(net, inputs)
            crossings = net.capture.frames - before
        del inputs  # the floor should not pay for the emulator's garbage
        floor_s, _ = run_floor(capture_path, Path(tmp) / "floor.pcapng")
        kinds, sample = crossing_breakdown(capture_path, before, max(1, crossings // SCAPY_SAMPLE))
        scapy_per_frame = run_scapy(sample)
        report(args.frames, crossings, emu_s, floor_s, scapy_per_frame, kinds, net)

        if args.profile:
            with open(Path(tmp) / "profiled.pcapng", "wb", buffering=1 << 20) as capture_file:
                net = build_network(capture_file, args.silent_servers)
                profiler = cProfile.Profile()
                profiler.runcall(run_emulator, net, build_input_frames(net, args.frames))
            print_profile(profiler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
