"""
What a TcpEndpoint costs per segment: the price of the TCP proxy profile (issue 12) before any frame is built.

Run from the repository root after ``pip install -e .``::

    python3 benchmarks/bench_tcp_endpoint.py [--megabytes 1] [--loss 0.0] [--repeat 5] [--profile]

Two endpoints on one Simulator, back to back with a 1 ms one-way latency:
``a`` opens, sends ``--megabytes`` to ``b`` and closes; ``b`` consumes as the
bytes arrive and closes when ``a`` has.  Every segment either sends is
counted (data and ACKs, both directions: all are processed once by the
receiving endpoint).  Three figures, all from this one run:

1. **Endpoints**: wall time of the transfer and segments per wall second;
   the cost per segment covers sending it and processing it at the other
   end (``transmit`` hands the header fields straight to the clock).
2. **With frames**: the same transfer where each segment is built into an
   Ethernet/IPv4/TCP frame (``frames.tcp_segment``, checksums included)
   and parsed back (``FlowView``, sequence, window) before delivery: what
   the SE adds around the endpoint.
3. **Frames alone**: building and parsing the same number of frames with no
   endpoint: the floor, so the endpoint's own share can be read off.

``--loss`` drops that share of segments (seeded), to see retransmission's
cost.  Nothing is asserted; the best of ``--repeat`` runs is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

from dataplane.clock import Simulator
from dataplane.nodes.tcp_endpoint import TcpEndpoint
from dataplane.wire import frames

LATENCY_NS = 1_000_000
A_IP, B_IP = bytes([198, 51, 100, 7]), bytes([10, 20, 0, 101])
MAC = bytes(6)


def run_transfer(size: int, loss: float, with_frames: bool) -> tuple[float, int, float]:
    """Return (wall seconds, segments, virtual seconds until the last byte arrived) of one transfer."""
    sim = Simulator()
    rng = random.Random(1)
    data = rng.randbytes(size)
    received = bytearray()
    ends: dict[str, TcpEndpoint] = {}
    count = [0]
    done_at = [0]

    def link(src: str):
        dst = "b" if src == "a" else "a"
        addresses = (A_IP, B_IP, 40001, 8080) if src == "a" else (B_IP, A_IP, 8080, 40001)

        def deliver(fields):
            peer = ends[dst]
            if peer.state.value == "initial":
                peer.accept(fields[0], fields[5])
            else:
                peer.receive(*fields)

        def through_frames(seq, ack, flags, window, payload, mss):
            src_ip, dst_ip, sport, dport = addresses
            tcp = frames.tcp_segment(src_ip, dst_ip, sport, dport, seq, ack, flags, payload, window=window, mss=mss)
            frame = frames.ethernet(MAC, MAC, frames.ETHERTYPE_IPV4, frames.ipv4(src_ip, dst_ip, 6, tcp, 0))
            view = frames.FlowView(frame)
            seq, ack = frames.tcp_seq_ack(frame)
            return seq, ack, view.flags, frames.tcp_window(frame), view.payload(frame), mss

        def transmit(seq, ack, flags, window, payload, mss):
            count[0] += 1
            if loss and rng.random() < loss:
                return
            fields = (seq, ack, flags, window, payload, mss)
            if with_frames:
                fields = through_frames(*fields)
            sim.post(LATENCY_NS, deliver, (fields,))
        return transmit

    def on_data_b(chunk: bytes) -> None:
        received.extend(chunk)
        ends["b"].consume(len(chunk))
        if len(received) == size:
            done_at[0] = sim.now

    def noop(*_args) -> None:
        pass

    ends["a"] = TcpEndpoint(sim, 1000, transmit=link("a"), on_established=noop, on_data=noop, on_fin=noop,
                            on_closed=noop)
    ends["b"] = TcpEndpoint(sim, 2000, transmit=link("b"), on_established=noop, on_data=on_data_b,
                            on_fin=lambda: ends["b"].close(), on_closed=noop)
    sent = [0]

    def pump() -> None:
        a = ends["a"]
        while sent[0] < size and a.send_space():
            sent[0] += a.send(data[sent[0]:sent[0] + a.send_space()])
        if sent[0] == size and a.state.value == "established":
            a.close()
    ends["a"]._on_writable = pump  # noqa: SLF001 (the benchmark's owner wires itself in after construction)
    ends["a"]._on_established = pump  # noqa: SLF001
    start = time.perf_counter()
    ends["a"].open()
    sim.run()
    wall = time.perf_counter() - start
    assert bytes(received) == data, "the transfer lost or corrupted bytes"
    return wall, count[0], done_at[0] / 1e9


def frames_alone(segments: int, mss: int = 1460) -> float:
    payload = bytes(mss)
    start = time.perf_counter()
    for index in range(segments):
        body = payload if index % 2 == 0 else b""  # about one ACK per data segment, as in the transfer
        tcp = frames.tcp_segment(A_IP, B_IP, 40001, 8080, index, index, 0x10, body, window=65535)
        frame = frames.ethernet(MAC, MAC, frames.ETHERTYPE_IPV4, frames.ipv4(A_IP, B_IP, 6, tcp, 0))
        view = frames.FlowView(frame)
        frames.tcp_seq_ack(frame)
        frames.tcp_window(frame)
        view.payload(frame)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    size = round(args.megabytes * 1_000_000)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_transfer, size, args.loss, False)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    bare = min((run_transfer(size, args.loss, False) for _ in range(args.repeat)), key=lambda r: r[0])
    framed = min((run_transfer(size, args.loss, True) for _ in range(args.repeat)), key=lambda r: r[0])
    floor = min(frames_alone(bare[1]) for _ in range(args.repeat))
    wall, segments, virtual = bare
    print(f"transfer: {size:,} bytes a->b in {virtual * 1e3:.1f} ms of virtual time (RTT 2 ms, 64 KiB window), "
          f"{segments:,} segments both ways (data and ACKs), loss {args.loss:g}")
    print(f"endpoints:    {wall * 1e3:8.1f} ms wall  {segments / wall:>10,.0f} segments/s  "
          f"{wall / segments * 1e6:6.2f} us/segment")
    print(f"with frames:  {framed[0] * 1e3:8.1f} ms wall  {framed[1] / framed[0]:>10,.0f} segments/s  "
          f"{framed[0] / framed[1] * 1e6:6.2f} us/segment")
    print(f"frames alone: {floor * 1e3:8.1f} ms wall  {segments / floor:>10,.0f} frames/s    "
          f"{floor / segments * 1e6:6.2f} us/frame")


if __name__ == "__main__":
    main()
