"""The TCP proxy network profile (issue 12): the owner SE terminates the client's connection and opens its own."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from conftest import capture_now, fields, scenario_dict

VIP, CLIENT = "10.10.0.100", "203.0.113.9"
CLOUDS = ["vmware", "openstack-nuage", "openstack-neutron"]
QUIET = {"pool.health_monitor": {"type": "none"}, "virtual_service.network_profile": "tcp-proxy"}


def proxy_scenario(cloud: str = "vmware", **overrides) -> dict:
    return scenario_dict(**{"cloud": cloud, **QUIET, **overrides})


def from_gw(net, flags: str, sport: int, seq: int, ack: int = 0, payload: bytes = b""):
    frame = Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack, window=64240)
    return frame / payload if payload else frame


def handshake(net, sport: int):
    """Open a connection to the VIP as the router would deliver it; return (owner, the SE's ISN)."""
    net.send("gw.frontend", from_gw(net, "S", sport, 1000))
    synack = net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT, flags="DF") /
                        TCP(sport=80, dport=sport, flags="SA", ack=1001, window=65535, options=[("MSS", 1460)]),
                        mask=["eth.src", "ip.id", "ip.ttl", "tcp.seq"])
    isn = Ether(synack.frame)[TCP].seq
    net.send("gw.frontend", from_gw(net, "A", sport, 1001, isn + 1))
    return net.owner_of((CLIENT, sport, VIP, 80)), isn


def server_syn(net, owner: str):
    return net.expect(f"{owner}.backend", Ether(src=net.mac(owner, "backend")) /
                      IP(src=net.ip(owner, "backend"), dst="0.0.0.0", flags="DF") /
                      TCP(dport=8080, flags="S", window=65535, options=[("MSS", 1460)]),
                      mask=["eth.dst", "ip.dst", "ip.id", "ip.ttl", "tcp.srcport", "tcp.seq"])


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_owner_answers_the_syn_and_then_opens_its_own_connection(dataplane_net, cloud, tmp_path):
    net = dataplane_net(proxy_scenario(cloud))
    owners = set()
    for sport in range(41000, 41012):
        net.discard()
        net.send("gw.frontend", from_gw(net, "S", sport, 1000))
        net.expect_none("backend")  # no SYN to a server before the client's handshake is complete
        owner, isn = handshake_after_syn(net, sport)
        owners.add(owner)
        assert isn != 1000
        syn = Ether(server_syn(net, owner).frame)
        assert syn[TCP].seq not in (1000, isn), "the server-side connection has its own sequence space"
        net.expect(f"{owner}.backend", Ether(dst=net.mac(owner, "backend")) / IP(dst=net.ip(owner, "backend"),
                                                                                  flags="DF") /
                   TCP(sport=8080, dport=syn[TCP].sport, flags="SA", ack=syn[TCP].seq + 1, options=[("MSS", 1460)]),
                   mask=["eth.src", "ip.src", "ip.id", "ip.ttl", "tcp.seq", "tcp.window_size_value"])
    assert len(owners) > 1, "steering is unchanged: flows spread over the SEs"
    comments = [c for (c,) in fields(capture_now(net, tmp_path), ["frame.comment"], 'frame.comment contains "proxy"')]
    assert any(" proxy client-side 10.10.0.100:80>203.0.113.9:" in c and " SYN-ACK (" in c for c in comments)
    assert any(" proxy server-side " in c and " SYN for 203.0.113.9:" in c for c in comments)


def handshake_after_syn(net, sport: int):
    synack = net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT, flags="DF") /
                        TCP(sport=80, dport=sport, flags="SA", ack=1001, window=65535, options=[("MSS", 1460)]),
                        mask=["eth.src", "ip.id", "ip.ttl", "tcp.seq"])
    isn = Ether(synack.frame)[TCP].seq
    net.send("gw.frontend", from_gw(net, "A", sport, 1001, isn + 1))
    return net.owner_of((CLIENT, sport, VIP, 80)), isn


@pytest.mark.parametrize("cloud", CLOUDS)
def test_large_requests_and_responses_arrive_whole_through_both_windows(run_dict, cloud):
    run = run_dict(proxy_scenario(cloud, **{
        "duration": 8.0, "traffic.new_connections_per_second": 5, "traffic.request_bytes": 9000,
        "traffic.response_bytes": 300_000, "traffic.requests_per_connection": 2}))
    flows = run.summary["flows"]
    assert flows["total"] > 10 and flows["completed"] == flows["total"], flows
    # The server sends 300 kB per request: the client side never has more in flight than the client's window.
    biggest = max(int(v) for (v,) in fields(run.capture, ["tcp.analysis.bytes_in_flight"],
                                            f'ip.src == {VIP} && frame.comment contains "proxy client-side"'))
    assert biggest <= 64240
    sizes = {int(n) for (n,) in fields(run.capture, ["tcp.len"], 'frame.comment contains "proxy server-side" '
                                                                  '&& tcp.len > 0')}
    assert max(sizes) == 1460 and 9000 % 1460 in sizes, "the request crosses the server side in MSS segments"


def test_a_client_reset_resets_the_server_side(dataplane_net):
    net = dataplane_net(proxy_scenario())
    owner, isn = handshake(net, 42000)
    syn = Ether(server_syn(net, owner).frame)
    net.settle()
    net.discard()
    net.send("gw.frontend", from_gw(net, "R", 42000, 1001))
    rst = net.expect(f"{owner}.backend", Ether(src=net.mac(owner, "backend")) / IP(src=net.ip(owner, "backend")) /
                     TCP(sport=syn[TCP].sport, dport=8080, flags="RA", seq=syn[TCP].seq + 1),
                     mask=["eth.dst", "ip.dst", "ip.id", "ip.flags", "ip.ttl", "tcp.ack", "tcp.window_size_value"])
    assert "(the client side: reset by the peer)" in rst.comment and "for 203.0.113.9:42000" in rst.comment


def test_scale_in_resets_both_sides_in_window_at_drain_expiry(run_dict):
    run = run_dict(proxy_scenario(**{
        "duration": 20.0, "virtual_service.placement": ["se-1", "se-2"], "se_group.vs_scalein_timeout": 3.0,
        "traffic.new_connections_per_second": 10, "traffic.requests_per_connection": 30,
        "traffic.request_interval": 0.5, "events": [{"at": 4.0, "action": "scale_in", "se": "se-2"}]}))
    expired = [e for e in run.events if e["type"] == "drain.expired"]
    assert expired and expired[0]["connections_reset"] > 0
    reset = expired[0]["connections_reset"]
    to_clients = fields(run.capture, ["frame.comment"], 'tcp.flags.reset == 1 && frame.comment contains '
                                                        '"se-2 proxy client-side" && frame.comment contains "drain"')
    to_servers = fields(run.capture, ["tcp.seq_raw", "tcp.srcport"], 'tcp.flags.reset == 1 && frame.comment contains '
                                                                    '"se-2 proxy server-side"')
    assert len(to_clients) == len(to_servers) == reset
    # The client accepts a RST only at exactly its next expected sequence number (RFC 5961): each counted one did.
    assert run.summary["flows"]["why"]["reset"] == {"reset by the VIP": reset}
    for seq, port in to_servers:  # in-window at the server: the sequence number the server acknowledged last
        acked = fields(run.capture, ["tcp.ack_raw"], f'ip.dst == {run.ip("se-2", "backend")} && tcp.dstport == {port} '
                                                     f'&& tcp.srcport == 8080 && tcp.flags.ack == 1')
        assert int(seq) == int(acked[-1][0])


def test_the_fast_path_keeps_the_clients_sequence_numbers(dataplane_net):
    net = dataplane_net(proxy_scenario(**{"virtual_service.network_profile": "tcp-fast-path"}))
    net.send("gw.frontend", from_gw(net, "S", 43000, 1000))
    owner = net.owner_of((CLIENT, 43000, VIP, 80))
    net.expect(f"{owner}.backend", Ether(src=net.mac(owner, "backend")) / IP(src=net.ip(owner, "backend")) /
               TCP(dport=8080, flags="S", seq=1000, window=64240),
               mask=["eth.dst", "ip.dst", "ip.id", "ip.ttl", "tcp.srcport"])


def test_a_proxied_flow_is_found_by_a_new_primarys_flow_probe(dataplane_net):
    net = dataplane_net(proxy_scenario(**{"virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 30.0}))
    owner = None
    for sport in range(44000, 44020):
        owner, _ = handshake(net, sport)
        if owner not in (None, "se-1"):
            break
    net.settle()
    net.fail_se("se-1")
    promoted = net.wait_for("se.promoted")
    net.settle()
    isn_acked = 1001
    net.discard()
    frame = Ether(src=net.mac("gw"), dst=net.mac(promoted["se"])) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags="PA", seq=isn_acked, ack=0) / b"GET / HTTP/1.1\r\n\r\n"
    net.send("gw.frontend", frame)
    claimed = net.wait_for("flow_probe.claimed", timeout=2.0)
    assert claimed["owner"] == owner and claimed["vs"] == "vs-web"
