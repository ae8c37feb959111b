"""Data-plane behaviours B1, B3-B7, checked on the capture with tshark."""

from __future__ import annotations

import pytest

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from conftest import fields, scenario_dict, tshark

VIP = "10.10.0.100"
CLIENT = "203.0.113.9"  # behind the router, not one of the generated clients


def syn_from_router(net, sport: int, client: str = CLIENT):
    """A client's SYN as the router delivers it to the primary."""
    return Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=client, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags="S", seq=1000)


def test_only_the_primary_answers_arp_for_the_vip(run_dict):
    run = run_dict(scenario_dict())
    replies = fields(run.capture, ["eth.src", "arp.src.hw_mac"], f"arp.opcode == 2 && arp.src.proto_ipv4 == {VIP}")
    assert len(replies) == 1, "the router asks once and exactly one SE answers"
    assert replies[0][0] == run.mac("se-1")
    for se in ("se-2", "se-3", "se-4"):
        assert not fields(run.capture, ["frame.number"], f"arp.src.proto_ipv4 == {VIP} && eth.src == {run.mac(se)}")


def test_primary_sends_gratuitous_arp_at_placement(run_dict):
    run = run_dict(scenario_dict())
    first = fields(run.capture, ["frame.number", "eth.src", "arp.isgratuitous", "frame.comment"], "arp")[0]
    assert first[0] == "1" and first[1] == run.mac("se-1") and first[2] == "1"
    assert "gratuitous arp" in first[3]
    assert [e["type"] for e in run.events][:1] == ["vs.placed"]


def test_every_se_owns_flows_when_four_are_placed(run_dict):
    run = run_dict(scenario_dict(**{"duration": 12.0, "traffic.new_connections_per_second": 30}))
    by_se = run.summary["flows_by_se"]
    assert sum(by_se.values()) == run.summary["flows"]["total"] >= 200
    assert all(by_se[se] > 0 for se in ("se-1", "se-2", "se-3", "se-4")), by_se


def test_forwarded_frame_differs_from_received_only_in_ethernet_addresses(dataplane_net):
    net = dataplane_net(scenario_dict())
    forwarded = set()
    for sport in range(40000, 40040):
        syn = syn_from_router(net, sport)
        net.send("gw.frontend", syn)
        owner = net.owner_of(syn)
        if owner != net.primary:
            steered = Ether(bytes(syn))
            steered[Ether].src, steered[Ether].dst = net.mac(net.primary), net.mac(owner)
            net.expect("frontend", steered)  # no mask: every byte after the Ethernet addresses is the same
            forwarded.add(owner)
    assert forwarded == {"se-2", "se-3", "se-4"}


def test_backend_frames_carry_the_owners_backend_ip(dataplane_net):
    net = dataplane_net(scenario_dict())
    owners = set()
    for sport in range(40000, 40020):
        syn = syn_from_router(net, sport)
        net.send("gw.frontend", syn)
        owner = net.owner_of(syn)
        snat = Ether(src=net.mac(owner, "backend")) / IP(src=net.ip(owner, "backend"), dst="0.0.0.0", ttl=62) / \
            TCP(sport=0, dport=8080, flags="S", seq=1000)
        net.expect(f"{owner}.backend", snat, mask=["eth.dst", "ip.dst", "tcp.srcport"])
        owners.add(owner)
    assert owners == {"se-1", "se-2", "se-3", "se-4"}


def responses_toward_client(run) -> list[list[str]]:
    """Frames from the VIP to a client on the frontend: (eth.src, eth.dst, comment)."""
    return fields(run.capture, ["eth.src", "eth.dst", "frame.comment"],
                  f'frame.interface_name == "frontend" && ip.src == {VIP} && !vxlan',
                  "-d", "udp.port==1550,vxlan")


@pytest.mark.parametrize("cloud,mode", [("vmware", "auto"), ("openstack-nuage", "auto"),
                                        ("openstack-neutron", "enable-dsr"), ("vmware", "enable-dsr")])
def test_direct_return_leaves_the_secondary_for_the_client(run_dict, cloud, mode):
    run = run_dict(scenario_dict(cloud=cloud, **{"se_group.se_tunnel_mode": mode}))
    senders = {src for src, dst, comment in responses_toward_client(run)
               if dst == run.mac("gw") and "DROPPED" not in comment}
    if cloud == "openstack-neutron":
        # Port security lets only the primary's port send the VIP: the secondaries' replies die there.
        assert senders == {run.mac("se-1")}
        assert run.summary["drops"]["port_security"] > 0
        dropped = fields(run.capture, ["eth.src", "frame.comment"], 'frame.comment contains "DROPPED by port security"')
        assert dropped and {src for src, _ in dropped} <= {run.mac(s) for s in ("se-2", "se-3", "se-4")}
        flows, by_se = run.summary["flows"], run.summary["flows_by_se"]
        assert flows["completed"] == by_se["se-1"], "only the primary's own flows get their replies"
        assert flows["failed"] + flows["open"] == flows["total"] - by_se["se-1"] > 0
    else:
        assert senders == {run.mac(se) for se in ("se-1", "se-2", "se-3", "se-4")}
        assert "port_security" not in run.summary["drops"]
        assert run.summary["flows"]["completed"] == run.summary["flows"]["total"]
    assert not fields(run.capture, ["frame.number"], "udp.port == 1550") or cloud == "openstack-neutron"


@pytest.mark.parametrize("cloud,mode", [("openstack-neutron", "auto"), ("openstack-neutron", "disable-dsr"),
                                        ("vmware", "disable-dsr")])
def test_return_through_the_primary(run_dict, cloud, mode):
    run = run_dict(scenario_dict(cloud=cloud, **{"se_group.se_tunnel_mode": mode}))
    senders = {src for src, dst, _ in responses_toward_client(run)}
    assert senders == {run.mac("se-1")}, "only the primary sends VIP traffic to the router"
    tunnelled = fields(run.capture, ["ip.src", "ip.dst", "vxlan.vni", "frame.comment"],
                       "vxlan && udp.dstport == 1550", "-d", "udp.port==1550,vxlan")
    back = [row for row in tunnelled if "reverse-nat" in row[3]]
    assert back and all(row[1].split(",")[0] == run.ip("se-1") for row in back)
    relays = [c for _, _, c in responses_toward_client(run) if " relay " in c]
    assert len(relays) == len(back)
    assert run.summary["flows"]["completed"] == run.summary["flows"]["total"]
    assert "port_security" not in run.summary["drops"]


def test_neutron_primary_reaches_secondaries_through_the_tunnel(run_dict):
    run = run_dict(scenario_dict(cloud="openstack-neutron"))
    steered = fields(run.capture, ["udp.dstport", "frame.comment"], 'frame.comment contains " steer "')
    assert steered and all(port == "1550" for port, _ in steered)


def test_every_tcp_connection_completes_cleanly_per_hop(run_dict):
    run = run_dict(scenario_dict())
    assert run.summary["flows"]["completed"] == run.summary["flows"]["total"] > 0
    gw = run.mac("gw")
    # Health-monitor probes (source ports 61441 and up) are half-open by design; leave them out.
    hops = {"backend": 'frame.interface_name == "backend" && !(tcp.port >= 61441)',
            "router hop": f'frame.interface_name == "frontend" && (eth.src == {gw} || eth.dst == {gw})'}
    for hop, read_filter in hops.items():
        flagged = tshark(run.capture, "-2", "-R", f"({read_filter}) && tcp.analysis.flags")
        assert flagged == "", f"{hop}: {flagged[:1000]}"
        streams = fields(run.capture, ["tcp.stream", "tcp.completeness"], "", "-2", "-R",
                         f"({read_filter}) && tcp.flags.syn == 1 && tcp.flags.ack == 0 && !(tcp.srcport >= 61441)")
        assert streams and all(int(c) == 31 for _, c in streams), f"{hop}: incomplete {streams[:5]}"


def test_udp_request_response(run_dict):
    run = run_dict(scenario_dict(**{"virtual_service.protocol": "udp", "virtual_service.port": 18000,
                                    "pool.servers": ["10.20.0.101:18001"], "traffic.response_bytes": 300}))
    flows = run.summary["flows"]
    assert flows["completed"] == flows["total"] > 0
    assert sum(1 for n in run.summary["flows_by_se"].values() if n) == 4


def test_same_scenario_and_seed_give_identical_captures(run_dict):
    first = run_dict(scenario_dict(), gate=False)
    second = run_dict(scenario_dict(), gate=False)
    assert first.capture.read_bytes() == second.capture.read_bytes()
    other_seed = run_dict(scenario_dict(seed=4), gate=False)
    assert other_seed.capture.read_bytes() != first.capture.read_bytes()


def test_every_frame_has_a_comment_and_segments_are_named(run_dict):
    run = run_dict(scenario_dict())
    rows = fields(run.capture, ["frame.interface_name", "frame.comment"])
    assert rows and all(len(r) == 2 and r[1] for r in rows)
    assert {r[0] for r in rows} == {"frontend", "backend", "controller"}
    named = fields(run.capture, ["ip.dst_host"], f"ip.dst == {VIP}", "-N", "n",
                   "-o", "nameres.use_external_name_resolver:FALSE")
    assert named[0][0] == "vs-web"


def test_least_connections_spreads_over_servers(run_dict):
    run = run_dict(scenario_dict(**{"virtual_service.placement": ["se-1"]}))
    servers = {row[0] for row in fields(run.capture, ["ip.dst"], 'frame.interface_name == "backend" && tcp.flags.syn == 1 && tcp.flags.ack == 0')}
    assert servers == {"10.20.0.101", "10.20.0.102"}
    assert run.summary["flows_by_se"]["se-1"] == run.summary["flows"]["total"]


def test_primary_weight_sets_the_primarys_share_of_new_flows(run_dict):
    run = run_dict(scenario_dict(**{"se_group.primary_weight": 50, "duration": 12.0,
                                    "traffic.new_connections_per_second": 60}))
    share = run.summary["steering_share"]
    assert share["se-1"] == pytest.approx(50 / 350, abs=0.002)
    assert all(share[se] == pytest.approx(100 / 350, abs=0.002) for se in ("se-2", "se-3", "se-4"))
    by_se = run.summary["flows_by_se"]
    assert by_se["se-1"] < min(by_se[se] for se in ("se-2", "se-3", "se-4"))


THREE_SERVERS = ["10.20.0.101:8080", "10.20.0.102:8080", "10.20.0.103:8080"]


def server_of_new_connection(net, client: str, sport: int) -> str:
    """Send a client's SYN and return the pool server the owner SE opened a connection to."""
    net.send("gw.frontend", syn_from_router(net, sport, client))
    opened = net.expect("backend", Ether() / IP(src="0.0.0.0", dst="0.0.0.0") / TCP(dport=8080, flags="S", seq=1000),
                        mask=["eth.addr", "ip.addr", "ip.ttl", "ip.id", "tcp.srcport", "tcp.window", "tcp.options"])
    return IP(opened.frame[14:]).dst


def test_round_robin_takes_servers_in_turn(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1"], "pool.lb_algorithm": "round-robin",
                                         "pool.servers": THREE_SERVERS, "pool.health_monitor": {"type": "none"}}))
    servers = [server_of_new_connection(net, CLIENT, sport) for sport in range(40000, 40009)]
    assert servers == ["10.20.0.101", "10.20.0.102", "10.20.0.103"] * 3


def test_consistent_hash_keeps_a_client_on_one_server(dataplane_net):
    net = dataplane_net(scenario_dict(**{"pool.lb_algorithm": "consistent-hash", "pool.servers": THREE_SERVERS,
                                         "pool.health_monitor": {"type": "none"}}))
    by_client: dict[str, set[str]] = {}
    owners: dict[str, set[str]] = {}
    for number in range(12):
        client = f"203.0.113.{number + 10}"
        for sport in range(40000, 40004):
            by_client.setdefault(client, set()).add(server_of_new_connection(net, client, sport))
            owners.setdefault(client, set()).add(net.owner_of((client, sport, VIP, 80)))
    assert all(len(s) == 1 for s in by_client.values()), "same client, same server, whichever SE serves it"
    assert any(len(s) > 1 for s in owners.values()), "the client's connections were spread over SEs"
    assert len(set().union(*by_client.values())) > 1
