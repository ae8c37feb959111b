"""Replay under the TCP proxy profile (issue 12, item 6): recorded flows played into the SE's two live connections.

The recorded client talks to the owner SE's client-side endpoint and the recorded server answers the SE's
own connection; each keeps its recorded sequence numbers, its ACK numbers follow the SE's ISNs, and both
live connections must read clean in Wireshark's TCP analysis, hop by hop.
"""

from __future__ import annotations

import json
import random
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from dataplane.replay import synth as replay_synth
from dataplane.replay.tcp_rewrite import translate
from dataplane.wire.checksum import bad_checksum
from conftest import fields
from test_replay import REAL, REAL_ARP, REAL_FLOWS, REAL_PACKETS, _cli, assert_clean_per_hop, replay, \
    replay_scenario

PROXY = {"virtual_service.network_profile": "tcp-proxy"}
CLIENT, SERVER = "192.0.2.1", "192.0.2.2"
CLIENT_MAC, SERVER_MAC = replay_synth.CLIENT_MAC, replay_synth.SERVER_MAC


def proxied(tmp_path, capture, cloud="vmware", name="out", **options) -> dict:
    return replay(tmp_path, capture, name, scenario=replay_scenario(cloud=cloud, **PROXY), **options)


def recorded_streams(capture) -> dict[int, tuple[bytes, bytes]]:
    """Per recorded client port: (client bytes, server bytes), each in sequence order, retransmissions once."""
    streams: dict[int, tuple[dict, dict]] = {}
    for packet in rdpcap(str(capture)):
        if TCP not in packet or not bytes(packet[TCP].payload):
            continue
        tcp = packet[TCP]
        to_server = tcp.dport in (80, 8080)
        sides = streams.setdefault(tcp.sport if to_server else tcp.dport, ({}, {}))
        sides[0 if to_server else 1][tcp.seq] = bytes(tcp.payload)
    return {port: tuple(b"".join(side[seq] for seq in sorted(side)) for side in sides)
            for port, sides in streams.items()}


def live_streams(capture, interface: str, to_peer: str) -> dict[str, bytes]:
    """Per TCP stream on one hop, the payload sent toward ``to_peer`` (an address), in order."""
    out: dict[str, bytes] = {}
    for stream, payload in fields(capture, ["tcp.stream", "tcp.payload"],
                                  f'frame.interface_name == "{interface}" && ip.dst == {to_peer} && tcp.len > 0 '
                                  '&& !(eth.dst == ff:ff:ff:ff:ff:ff)', "-o", "tcp.desegment_tcp_streams:FALSE"):
        out[stream] = out.get(stream, b"") + bytes.fromhex(payload.replace(":", ""))
    return out


@pytest.mark.parametrize("cloud", ["vmware", "openstack-nuage", "openstack-neutron"])
def test_real_capture_replays_through_both_live_connections_of_the_proxy(tmp_path, cloud):
    summary = proxied(tmp_path, REAL, cloud)
    rep, capture = summary["replay"], summary["_out"] / "capture.pcapng"
    assert rep["flows"] == {"total": REAL_FLOWS, "completed": REAL_FLOWS, "open_at_end": 0, "reset": 0, "stalled": 0}
    assert rep["packets"]["arrived"] == rep["packets"]["sent"] == REAL_PACKETS - REAL_ARP, rep["packets"]
    assert rep["proxy"]["flows"] == REAL_FLOWS
    assert rep["account"]["lost"] == 0 and rep["account"]["replayed"] == REAL_PACKETS - REAL_ARP, rep["account"]
    assert rep["proxy"]["withheld"] == {"recorded_retransmission": 0, "recorded_duplicate_ack": 0}
    # The recording negotiated window scaling (7 both ways); the SE does not, so windows go in bytes.
    assert rep["proxy"]["windows_scaled"] > 0
    assert rep["proxy"]["options_removed"]["window_scale"] == REAL_FLOWS   # from the servers' SYN-ACKs
    # Both live connections of every flow are complete and clean in Wireshark's analysis, hop by hop.
    assert_clean_per_hop(capture, summary, tmp_path)
    # Each live byte stream is the recorded one: the client gets what the server sent, and the reverse.
    recorded = recorded_streams(REAL)
    vip = "10.10.0.100"
    to_clients = live_streams(capture, "frontend", CLIENT)
    assert sorted(to_clients.values()) == sorted(server for _, server in recorded.values())
    ses = [v["backend"]["ip"] for k, v in summary["address_plan"].items() if k.startswith("se-")]
    to_servers = {stream: data for stream, data in live_streams(capture, "backend", "10.20.0.101").items()}
    to_servers.update(live_streams(capture, "backend", "10.20.0.102"))
    assert sorted(to_servers.values()) == sorted(client for client, _ in recorded.values())
    assert vip and ses


def test_each_end_keeps_its_sequence_numbers_and_acks_the_ses_isn(tmp_path):
    summary = proxied(tmp_path, REAL)
    capture = summary["_out"] / "capture.pcapng"
    recorded_isn = {port: (int(seq), int(ack)) for port, seq, ack in
                    fields(REAL, ["tcp.srcport", "tcp.seq_raw", "tcp.ack_raw"], "tcp.flags.syn == 1 && tcp.dstport == 80")}
    recorded_server_isn = {int(port): int(seq) for port, seq in
                           fields(REAL, ["tcp.dstport", "tcp.seq_raw"], "tcp.flags.syn == 1 && tcp.flags.ack == 1")}
    # Client side: the SE's SYN-ACK (VIP as source) has its own ISN, and the client's next ACK acknowledges it.
    synacks = fields(capture, ["tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "frame.comment"],
                     'frame.interface_name == "frontend" && ip.src == 10.10.0.100 && tcp.flags.syn == 1')
    assert len(synacks) == REAL_FLOWS
    for port, seq, ack, comment in synacks:
        client_isn = recorded_isn[port][0]
        assert int(ack) == client_isn + 1, "the client's ISN reaches the SE as recorded"
        assert int(seq) != recorded_server_isn[int(port)], "the SE answers with its own ISN, not the server's"
        assert "proxy client-side" in comment
        first_ack = fields(capture, ["tcp.ack_raw"], f'frame.interface_name == "frontend" && tcp.srcport == {port} '
                           '&& tcp.flags.syn == 0 && frame.comment contains "gw route"')[0][0]
        assert int(first_ack) == (int(seq) + 1) & 0xFFFFFFFF, "the recorded ACK translated to the SE's ISN"
    # Server side: the SE's SYN from its server-network address with its own ISN; the server answers with
    # its recorded ISN and acknowledges the SE's.
    ses = {v["backend"]["ip"] for k, v in summary["address_plan"].items() if k.startswith("se-")}
    syns = fields(capture, ["ip.src", "tcp.srcport", "tcp.seq_raw", "frame.comment"],
                  'frame.interface_name == "backend" && tcp.flags.syn == 1 && tcp.flags.ack == 0 '
                  '&& frame.comment contains "proxy server-side"')
    assert len(syns) == REAL_FLOWS
    client_isns = {seq for seq, _ in recorded_isn.values()}
    for src, sport, seq, comment in syns:
        assert src in ses and int(seq) not in {int(s) for s in client_isns}, comment
        answer = fields(capture, ["tcp.seq_raw", "tcp.ack_raw"], f'frame.interface_name == "backend" && '
                        f'ip.dst == {src} && tcp.dstport == {sport} && tcp.flags.syn == 1 && tcp.flags.ack == 1')
        assert len(answer) == 1 and int(answer[0][0]) in recorded_server_isn.values()
        assert int(answer[0][1]) == (int(seq) + 1) & 0xFFFFFFFF


def test_the_summary_says_what_the_proxy_replay_translated(tmp_path, capsys):
    toml = tmp_path / "replay.toml"
    from test_replay import _scenario_toml
    toml.write_text(_scenario_toml().replace('protocol = "tcp"', 'protocol = "tcp"\nnetwork_profile = "tcp-proxy"'))
    assert _cli(tmp_path, REAL, "--out", str(tmp_path / "o")) == 0
    printed = capsys.readouterr().out
    assert f"tcp-proxy: {REAL_FLOWS} flows replayed into the SEs' live connections" in printed
    assert "not replayed as recorded:" in printed and "scaled windows sent in bytes" in printed
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["replay"]["proxy"]["acks_translated"] > 0
    assert "profile_fallbacks" not in summary["replay"]


# -- what the recording has that the live connections must not get -----------------------------------------

def _conversation(lossy: bool, ack_every: int = 1, segments: int = 6) -> list[tuple[int, bytes]]:
    """One recorded HTTP-like connection; ``lossy`` adds a client retransmission and three duplicate ACKs."""
    c_seq, s_seq, t = 1000, 90000, 1_000_000_000
    out = []

    def c(flags, payload=b"", seq=None, ack=None):
        return Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=CLIENT, dst=SERVER) / TCP(
            sport=40001, dport=80, flags=flags, seq=c_seq if seq is None else seq,
            ack=(s_seq if ack is None else ack) if "A" in flags else 0, window=65535) / payload

    def s(flags, payload=b""):
        return Ether(src=SERVER_MAC, dst=CLIENT_MAC) / IP(src=SERVER, dst=CLIENT) / TCP(
            sport=80, dport=40001, flags=flags, seq=s_seq, ack=c_seq, window=65535) / payload

    def add(packet):
        nonlocal t
        out.append((t, bytes(packet)))
        t += 100_000

    add(c("S"))
    c_seq += 1
    add(s("SA"))
    s_seq += 1
    add(c("A"))
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    add(c("PA", request))
    if lossy:
        add(c("PA", request, seq=c_seq))   # the client's retransmission of its request
    c_seq += len(request)
    for i in range(segments):
        add(s("A", bytes([65 + i]) * 1460))
        s_seq += 1460
        if (i + 1) % ack_every == 0 or i == segments - 1:
            add(c("A"))
    if lossy:
        for _ in range(3):
            add(c("A"))                    # three duplicates of the last ACK
    add(s("FA"))
    s_seq += 1
    add(c("FA"))
    c_seq += 1
    add(s("A"))
    return out


def test_recorded_retransmissions_and_duplicate_acks_are_withheld_and_counted(tmp_path):
    path = tmp_path / "lossy.pcap"
    replay_synth.write_pcap(path, _conversation(lossy=True))
    summary = proxied(tmp_path, path)
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1, rep["flow_details"]
    assert rep["proxy"]["withheld"] == {"recorded_retransmission": 1, "recorded_duplicate_ack": 3}
    assert rep["packets"]["withheld"] == 4 and "not_sent_stalled" not in rep["packets"]
    assert rep["account"]["not_sent"] == 4
    rows = (summary["_out"] / "replay.csv").read_text()
    assert rows.count("recorded_duplicate_ack") == 3 and rows.count("recorded_retransmission") == 1
    # Nothing spurious reaches the SE: its live connections read clean (no retransmission, no dup ACK).
    assert_clean_per_hop(summary["_out"] / "capture.pcapng", summary, tmp_path)


def test_acks_are_added_where_the_recording_acknowledges_bytes_the_se_holds_back(tmp_path):
    # The recorded client acknowledges 40 segments at once (a GRO capture does that); the SE's first flight is
    # 10 segments, so the recorded ACK waits for bytes the SE will not send before they are acknowledged.
    path = tmp_path / "late-ack.pcap"
    replay_synth.write_pcap(path, _conversation(lossy=False, ack_every=40, segments=40))
    summary = proxied(tmp_path, path)
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1, rep["flow_details"]
    assert rep["proxy"]["acks_added"] >= 1
    added = fields(summary["_out"] / "capture.pcapng", ["frame.comment"], 'frame.comment contains "ACK added by replay"')
    assert len(added) == rep["proxy"]["acks_added"]
    capture = summary["_out"] / "capture.pcapng"
    assert b"".join(live_streams(capture, "frontend", CLIENT).values()) == b"".join(
        bytes([65 + i]) * 1460 for i in range(40)), "the response arrives whole, in order"
    assert_clean_per_hop(capture, summary, tmp_path)


def test_a_recorded_client_reset_resets_the_server_side(tmp_path):
    records = _conversation(lossy=False)[:6]  # handshake, request, the first response segment
    syn = Ether(records[0][1])
    reset = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=CLIENT, dst=SERVER) / TCP(
        sport=40001, dport=80, flags="R", seq=syn[TCP].seq + 1 + 27, window=0)
    records.append((records[-1][0] + 100_000, bytes(reset)))
    path = tmp_path / "reset.pcap"
    replay_synth.write_pcap(path, records)
    summary = proxied(tmp_path, path)
    assert summary["replay"]["flows"]["completed"] == 1, summary["replay"]["flow_details"]
    resets = fields(summary["_out"] / "capture.pcapng", ["frame.comment"],
                    'frame.interface_name == "backend" && tcp.flags.reset == 1 && frame.comment contains "proxy"')
    assert len(resets) == 1 and "server-side" in resets[0][0] and "for 192.0.2.1:40001" in resets[0][0], resets


class Recording:
    """A recorded TCP conversation written packet by packet (client 192.0.2.1:40001, server 192.0.2.2:80)."""

    def __init__(self):
        self.c_seq, self.s_seq, self.t, self.records = 1000, 90000, 1_000_000_000, []

    def client(self, flags, payload=b"", **fields):
        self._add(CLIENT, SERVER, 40001, 80, "c_seq", "s_seq", flags, payload, fields)

    def server(self, flags, payload=b"", **fields):
        self._add(SERVER, CLIENT, 80, 40001, "s_seq", "c_seq", flags, payload, fields)

    def _add(self, src, dst, sport, dport, own, peer, flags, payload, fields):
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=getattr(self, own),
                  ack=getattr(self, peer) if "A" in flags else 0, window=65535)
        for name, value in fields.items():
            setattr(tcp, name, value)
        mac = (CLIENT_MAC, SERVER_MAC) if src == CLIENT else (SERVER_MAC, CLIENT_MAC)
        self.records.append((self.t, bytes(Ether(src=mac[0], dst=mac[1]) / IP(src=src, dst=dst) / tcp / payload)))
        self.t += 100_000
        setattr(self, own, getattr(self, own) + len(payload) + ("S" in flags) + ("F" in flags))

    def handshake(self, synack=True):
        self.client("S")
        if synack:
            self.server("SA")
        else:
            self.s_seq += 1   # the capture missed it
        self.client("A")

    def close(self, first="client"):
        """Both FINs and the last ACK, ``first`` closing first."""
        one, other = (self.client, self.server) if first == "client" else (self.server, self.client)
        one("FA")
        other("FA")
        one("A")

    def write(self, path):
        replay_synth.write_pcap(path, self.records)
        return path


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_recorded_server_reset_after_its_data_completes_the_flow(tmp_path):
    rec = Recording()
    rec.handshake()
    rec.client("PA", REQUEST)
    rec.server("PA", b"x" * 500)
    rec.client("A")
    rec.server("RA")
    summary = proxied(tmp_path, rec.write(tmp_path / "rst.pcap"))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1, rep["flow_details"]
    assert rep["packets"]["arrived"] == rep["packets"]["sent"] == 7 and "lost_in_network" not in rep["packets"]
    clients = fields(summary["_out"] / "capture.pcapng", ["frame.comment"],
                     f'ip.dst == {CLIENT} && tcp.flags.reset == 1')
    assert len(clients) == 1 and "proxy client-side" in clients[0][0], "the proxy passes the reset on"


def test_a_recording_without_its_syn_ack_gets_one_from_replay(tmp_path):
    rec = Recording()
    rec.handshake(synack=False)
    rec.client("PA", REQUEST)
    rec.server("PA", b"y" * 300)
    rec.close()
    summary = proxied(tmp_path, rec.write(tmp_path / "no-synack.pcap"))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1 and rep["proxy"]["syn_acks_added"] == 1, rep
    added = fields(summary["_out"] / "capture.pcapng", ["tcp.seq_raw", "frame.comment"],
                   "frame.interface_name == \"backend\" && tcp.flags.syn == 1 && tcp.flags.ack == 1 "
                   "&& !(frame.comment contains \"accept\")")
    assert len(added) == 1 and int(added[0][0]) == 90000 and "SYN-ACK added by replay" in added[0][1], added
    assert_clean_per_hop(summary["_out"] / "capture.pcapng", summary, tmp_path)


def test_a_refused_connection_stalls_and_says_the_proxy_never_connected(tmp_path):
    rec = Recording()
    rec.client("S")
    rec.server("RA")
    summary = proxied(tmp_path, rec.write(tmp_path / "refused.pcap"))
    rep = summary["replay"]
    # The SE answers the SYN itself (a proxy does) and would connect to the server only after the client's
    # handshake, which the recorded client never completes: the recorded RST has nothing to answer.
    assert rep["flows"]["stalled"] == 1
    rows = (summary["_out"] / "replay.csv").read_text()
    assert "proxy_never_connected" in rows and "so the SE never connected to the server" in rows
    assert rep["packets"]["not_sent_proxy_never_connected"] == 1, rep["packets"]


def test_a_bare_ack_the_se_drops_for_its_kept_checksum_is_not_counted_as_arrived(tmp_path):
    rec = Recording()
    rec.handshake()
    rec.client("PA", REQUEST)
    rec.server("PA", b"z" * 200)
    rec.client("A", chksum=0x1234)   # wrong on purpose: the SE drops it
    rec.close(first="server")
    summary = proxied(tmp_path, rec.write(tmp_path / "bad-ack.pcap"), gate=False, keep_checksums=True)
    rep = summary["replay"]
    assert rep["packets"]["lost_in_network"] == 1 and rep["packets"]["arrived"] == rep["packets"]["sent"] - 1, rep
    assert rep["checksums_kept"]["tcp"] == 1


def test_a_64k_gro_super_segment_is_cut_before_pacing_and_fits_the_ses_window(tmp_path):
    rec = Recording()
    rec.handshake()
    rec.client("PA", REQUEST)
    for _ in range(2):                       # two GRO'd 64 kB reads, each acknowledged once
        rec.server("A", b"g" * 64000)
        rec.client("A")
    rec.close(first="server")
    summary = proxied(tmp_path, rec.write(tmp_path / "gro64.pcap"))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1, rep["flow_details"]
    assert rep["tcp_super_segments_cut"] == 2 and rep["proxy"]["acks_added"] >= 1, rep["proxy"]
    capture = summary["_out"] / "capture.pcapng"
    assert b"".join(live_streams(capture, "frontend", CLIENT).values()) == b"g" * 128000
    assert not fields(capture, ["frame.number"], "frame.len > 1514 && !(udp.port == 1550)")


def test_segments_recorded_out_of_order_all_go(tmp_path):
    rec = Recording()
    rec.handshake()
    rec.client("PA", REQUEST)
    first = rec.s_seq
    rec.s_seq = first + 1000
    rec.server("A", b"2" * 1000)             # the capture saw the second segment first
    rec.s_seq = first
    rec.server("A", b"1" * 1000)
    rec.s_seq = first + 2000
    rec.client("A")
    rec.close(first="server")
    summary = proxied(tmp_path, rec.write(tmp_path / "ooo.pcap"))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1 and rep["proxy"]["withheld"]["recorded_retransmission"] == 0, rep
    assert b"".join(live_streams(summary["_out"] / "capture.pcapng", "frontend", CLIENT).values()) == \
        b"1" * 1000 + b"2" * 1000


def test_a_segment_the_se_drops_is_sent_again_by_the_replayed_end(tmp_path):
    rec = Recording()
    rec.handshake()
    rec.client("PA", REQUEST, chksum=0x4321)   # corrupted on the wire: the SE drops it (--keep-checksums)
    rec.server("PA", b"r" * 300)
    rec.close()
    summary = proxied(tmp_path, rec.write(tmp_path / "corrupt.pcap"), gate=False, keep_checksums=True)
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1 and rep["proxy"]["resent_by_replay"] == 1, (rep["flows"], rep["proxy"])
    again = fields(summary["_out"] / "capture.pcapng", ["tcp.len", "tcp.checksum.status"],
                   'frame.comment contains "sent again by replay"', "-o", "tcp.check_checksum:TRUE")
    assert again and again[0] == ["27", "1"], again   # status 1, good: the sender's own copy is right


def test_a_recorded_retransmission_of_bytes_the_se_lost_goes(tmp_path):
    rec = Recording()
    rec.handshake()
    first = rec.c_seq
    rec.client("PA", REQUEST, chksum=0x4321)   # the SE drops it (--keep-checksums) ...
    rec.client("PA", REQUEST, seq=first)       # ... and the recording's own retransmission recovers it
    rec.c_seq = first + len(REQUEST)
    rec.server("PA", b"s" * 100)
    rec.close()
    summary = proxied(tmp_path, rec.write(tmp_path / "recorded-retransmission.pcap"), gate=False,
                      keep_checksums=True)
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1, rep["flow_details"]
    assert rep["proxy"]["retransmissions_sent"] == 1 and rep["proxy"]["resent_by_replay"] == 0, rep["proxy"]
    assert rep["proxy"]["withheld"]["recorded_retransmission"] == 0


@pytest.mark.parametrize("case", ["ack_of_nothing", "syn_with_data", "gap_in_capture", "keepalives"])
def test_odd_recordings_never_raise_and_every_packet_is_accounted(tmp_path, case):
    rec = Recording()
    rec.client("S", b"early" if case == "syn_with_data" else b"")
    rec.server("SA")
    if case == "ack_of_nothing":
        rec.client("A", ack=90000)   # acknowledges not even the SYN-ACK: the SE answers with a RST
    rec.client("A")
    rec.client("PA", REQUEST)
    if case == "gap_in_capture":
        rec.c_seq += 700             # a client segment the capture missed
        rec.client("PA", b"more")
    rec.server("PA", b"k" * 100)
    rec.client("A")
    if case == "keepalives":
        for _ in range(2):
            rec.client("A", seq=rec.c_seq - 1)
            rec.server("A")
    rec.close()
    summary = proxied(tmp_path, rec.write(tmp_path / f"{case}.pcap"))
    rep = summary["replay"]
    assert rep["input_packets"] == len(rec.records) == rep["replayed_packets"]
    assert sum(rep["account"].values()) == len(rec.records) and rep["account"]["lost"] == 0, rep["account"]
    packets = rep["packets"]
    assert packets["recorded"] == packets["sent"] + packets.get("withheld", 0) + sum(
        n for key, n in packets.items() if key.startswith("not_sent")), packets
    outcome = {"ack_of_nothing": "reset", "syn_with_data": "stalled", "gap_in_capture": "stalled",
               "keepalives": "completed"}[case]
    assert rep["flows"][outcome] == 1, (rep["flows"], rep["flow_details"])


# -- the translation itself -----------------------------------------------------------------------------------

def test_translate_keeps_a_right_checksum_right_and_a_wrong_one_as_wrong():
    rng = random.Random(7)
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 7)]
    for _ in range(50):
        packet = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=80, flags="SA", seq=rng.getrandbits(32),
                                                        ack=rng.getrandbits(32), options=options))
        ack, window = rng.getrandbits(32), rng.getrandbits(16)
        out, removed = translate(packet, 20, ack, window, {3: "window_scale", 4: "sack_permitted", 8: "timestamps"})
        assert removed == ["sack_permitted", "timestamps", "window_scale"]
        assert struct.unpack_from("!I", out, 28)[0] == ack and struct.unpack_from("!H", out, 34)[0] == window
        assert out[44:60] == b"\x01" * 16, "the removed options are NOPs: the header keeps its length"
        assert bad_checksum(out, ip=0) is None
        wrong = packet[:36] + bytes([packet[36] ^ 0x5A]) + packet[37:]
        assert bad_checksum(translate(wrong, 20, ack, window, {})[0], ip=0) == "tcp"
