"""IPv6 and dual-stack virtual services (issue 16): Neighbor Discovery, the data path, the proxy, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from dataplane import scenario as scenario_mod
from conftest import capture_now, fields, scenario_dict

VIP6, CLIENT6 = "2001:db8:10::100", "2001:db8:99::7"
TESTER = "02:aa:00:00:00:01"
CLOUDS = ["vmware", "openstack-nuage", "openstack-neutron"]
DUAL = {
    "networks.frontend.cidr6": "2001:db8:10::/64", "networks.frontend.gateway6": "2001:db8:10::1",
    "networks.backend.cidr6": "2001:db8:20::/64", "virtual_service.vip6": VIP6,
    "pool.servers": ["10.20.0.101:8080", "10.20.0.102:8080", "[2001:db8:20::101]:8080", "[2001:db8:20::102]:8080"],
    "traffic.clients": ["198.51.100.0/28", "2001:db8:99::/64"],
}


def dual(**overrides) -> dict:
    return scenario_dict(**{**DUAL, **overrides})


def assert_refused(change: dict, message: str) -> None:
    """The dual-stack scenario with ``change`` (dotted key -> value, None to remove it) fails with ``message``."""
    data = dual()
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        table = data
        for key in parents:
            table = table[key]
        if value is None:
            table.pop(last, None)
        else:
            table[last] = value
    with pytest.raises(scenario_mod.ScenarioError) as error:
        scenario_mod.parse(data, "t.toml")
    assert str(error.value) == f"t.toml: {message}"


def who_has_vip6():
    return Ether(src=TESTER, dst="33:33:ff:00:01:00") / \
        IPv6(src="2001:db8:10::50", dst="ff02::1:ff00:100", hlim=255) / ICMPv6ND_NS(tgt=VIP6) / \
        ICMPv6NDOptSrcLLAddr(lladdr=TESTER)


def advert_from(net, se: str):
    return Ether(src=net.mac(se), dst=TESTER) / IPv6(src=VIP6, dst="2001:db8:10::50", hlim=255) / \
        ICMPv6ND_NA(tgt=VIP6, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=net.mac(se))


def test_only_the_primary_answers_ns_for_the_vip6_and_announces_it_when_it_moves(dataplane_net):
    net = dataplane_net(dual(**{"virtual_service.placement": ["se-1", "se-2"], "pool.health_monitor": {"type": "none"},
                                "se_group.vs_scalein_timeout": 2.0}))
    net.expect("frontend", Ether(src=net.mac("se-1"), dst="33:33:00:00:00:01") /
               IPv6(src=VIP6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=VIP6, R=0, S=0, O=1) /
               ICMPv6NDOptDstLLAddr(lladdr=net.mac("se-1")))  # the unsolicited NA at placement
    net.discard()
    net.send("frontend", who_has_vip6())
    net.expect("frontend", advert_from(net, "se-1"))
    net.expect_no_other(ignore=["arp"])  # se-2 is in the solicited-node group too, and stays silent
    vip6_key = bytes.fromhex("20010db8001000000000000000000100")
    router_cache = net.network.router.arp_cache
    router_cache[vip6_key] = bytes.fromhex(net.mac("se-1").replace(":", ""))  # as if it had resolved the VIP6
    net.migrate("se-1", "se-3")
    net.wait_for("se.promoted")
    net.expect("frontend", Ether(src=net.mac("se-3"), dst="33:33:00:00:00:01") /
               IPv6(src=VIP6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=VIP6, R=0, S=0, O=1) /
               ICMPv6NDOptDstLLAddr(lladdr=net.mac("se-3")))
    net.discard()
    net.send("frontend", who_has_vip6())
    net.expect("frontend", advert_from(net, "se-3"))
    # RFC 4861 7.2.5: an unsolicited NA with the override flag updates an existing entry (it creates none).
    assert router_cache[vip6_key] == bytes.fromhex(net.mac("se-3").replace(":", "")), \
        "the router's neighbor cache follows the NA"


@pytest.mark.parametrize("profile", ["tcp-fast-path", "tcp-proxy"])
@pytest.mark.parametrize("cloud", CLOUDS)
def test_dual_stack_flows_spread_over_the_ses_and_complete_on_every_cloud(run_dict, cloud, profile):
    run = run_dict(dual(**{"cloud": cloud, "virtual_service.network_profile": profile, "duration": 5.0}))
    flows = run.summary["flows"]
    assert flows["total"] > 60 and flows["completed"] == flows["total"], flows
    # The server side of each family: an IPv6 client is served by an IPv6 server, from the SE's IPv6 address.
    opened = fields(run.capture, ["ipv6.src", "ipv6.dst", "ip.src", "ip.dst"],
                    'frame.interface_name == "backend" && tcp.flags.syn == 1 && tcp.flags.ack == 0 '
                    '&& tcp.dstport == 8080 && !(frame.comment contains "health")')
    v6 = [row for row in opened if row[0]]
    v4 = [row for row in opened if row[2]]
    assert v6 and v4
    assert {row[1] for row in v6} <= {"2001:db8:20::101", "2001:db8:20::102"}
    ses = ("se-1", "se-2", "se-3", "se-4")
    assert {row[0] for row in v6} == {run.plan[se]["backend"]["ip6"] for se in ses}, \
        "IPv6 flows are steered to every SE, as IPv4 ones are"
    names = fields(run.capture, ["ipv6.dst_host"], f"ipv6.dst == {VIP6}", "-N", "n",
                   "-o", "nameres.use_external_name_resolver:FALSE")
    assert names and names[0][0] == "vs-web"


def test_the_proxy_answers_an_ipv6_syn_with_its_own_isn_and_the_ipv6_mss(dataplane_net):
    net = dataplane_net(dual(**{"virtual_service.network_profile": "tcp-proxy", "pool.health_monitor": {"type": "none"}}))
    syn = Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IPv6(src=CLIENT6, dst=VIP6, hlim=63) / \
        TCP(sport=40000, dport=80, flags="S", seq=1000, options=[("MSS", 1440)])
    net.send("gw.frontend", syn)
    synack = net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IPv6(src=VIP6, dst=CLIENT6) /
                        TCP(sport=80, dport=40000, flags="SA", ack=1001, window=65535, options=[("MSS", 1440)]),
                        mask=["eth.src", "ipv6.hlim", "tcp.seq"])
    assert Ether(synack.frame)[TCP].seq != 1000
    assert "proxy client-side [2001:db8:10::100]:80>[2001:db8:99::7]:40000 SYN-ACK" in synack.comment


def test_snat_keeps_the_ipv6_checksum_and_masks_know_the_hop_limit(dataplane_net, tmp_path):
    net = dataplane_net(dual(**{"pool.health_monitor": {"type": "none"}}))
    syn = Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IPv6(src=CLIENT6, dst=VIP6, hlim=63) / \
        TCP(sport=40001, dport=80, flags="S", seq=1000)
    net.send("gw.frontend", syn)
    owner = net.owner_of((CLIENT6, 40001, VIP6, 80))
    seen = net.expect(f"{owner}.backend", Ether(src=net.mac(owner, "backend"), dst="00:00:00:00:00:00") /
                      IPv6(src=net.ip6(owner, "backend"), dst="2001:db8:20::101") /
                      TCP(dport=8080, flags="S", seq=1000),  # fast path: the client's ISN and window go through
                      mask=["eth.dst", "ipv6.hlim", "tcp.srcport", "ipv6.dst"])
    assert Ether(seen.frame)[IPv6].hlim == 62, "one hop: the SE's own routing"
    capture = capture_now(net, tmp_path)
    checks = fields(capture, ["tcp.checksum.status"], "ipv6 && tcp && frame.interface_name == \"backend\"",
                    "-o", "tcp.check_checksum:TRUE")
    assert checks and all(status == "1" for (status,) in checks), "good checksums after the incremental update"


@pytest.mark.parametrize("kind", ["tcp", "icmp"])
def test_health_monitors_probe_ipv6_servers(run_dict, kind):
    run = run_dict(dual(**{"virtual_service.placement": ["se-1"], "duration": 30.0,
                           "pool.health_monitor": {"type": kind, "send_interval": 2.0, "receive_timeout": 1.0},
                           "traffic.new_connections_per_second": 2,
                           "events": [{"at": 5.0, "action": "fail_server", "server": "[2001:db8:20::102]:8080"}]}))
    down = [e for e in run.events if e["type"] == "server.down"]
    assert [e["server"] for e in down] == ["[2001:db8:20::102]:8080"]
    probes = fields(run.capture, ["frame.comment"], 'ipv6.dst == 2001:db8:20::101 && frame.comment contains "health"')
    assert probes and all(f"health monitor ({kind})" in c for (c,) in probes)


@pytest.mark.parametrize("change, message", [
    ({"networks.frontend.cidr6": None, "networks.frontend.gateway6": None,
      "traffic.clients": ["198.51.100.0/28"]},
     f"virtual_service.vip6: {VIP6} is IPv6 but networks.frontend has no cidr6"),
    ({"networks.frontend.gateway6": None},
     "networks.frontend.gateway6: missing: the router needs an address on the frontend's cidr6"),
    ({"networks.frontend.cidr6": "2001:db8:10::/80"},
     "networks.frontend.cidr6: 2001:db8:10::/80 is longer than /64: an IPv6 subnet with hosts is a /64 or larger"),
    ({"virtual_service.vip6": "2001:db8:11::100"},
     "virtual_service.vip6: 2001:db8:11::100 is outside networks.frontend.cidr6 (2001:db8:10::/64)"),
    ({"virtual_service.vip6": "fe80::1"}, "virtual_service.vip6: fe80::1 is link-local (fe80::/10): hosts cannot use it"),
    ({"pool.servers": ["2001:db8:20::101:8080"]},
     "pool.servers[0]: an IPv6 server is written \"[address]:port\", got '2001:db8:20::101:8080'"),
    ({"networks.backend.cidr6": None}, "pool.servers[2]: 2001:db8:20::101 is IPv6 but networks.backend has no cidr6"),
    ({"networks.backend.cidr6": "2001:db8:10::/48"},
     "networks.backend.cidr6: 2001:db8:10::/48 overlaps networks.frontend.cidr6 (2001:db8:10::/64)"),
    ({"traffic.clients": ["2001:db8:10::/64"]},
     "traffic.clients[0]: 2001:db8:10::/64 overlaps networks.frontend.cidr6 (2001:db8:10::/64)"),
])
def test_bad_ipv6_addresses_are_named(change, message):
    assert_refused(change, message)


def test_the_dual_stack_tour_steers_both_families_to_the_same_ses(tmp_path, capsys):
    import json

    from conftest import assert_passes_gate
    from dataplane.cli import main

    assert main(["demo", "--tour", "dual-stack", "--out", str(tmp_path), "--no-report"]) == 0
    assert "by family (one Maglev table for both): " in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    vs = summary["virtual_services"]["vs-web"]
    assert (vs["vip"], vs["vip6"]) == ("10.10.0.100", VIP6)
    assert vs["flows"]["completed"] == vs["flows"]["total"] > 200
    families = vs["flows_by_family"]
    assert set(families["ipv4"]) == set(families["ipv6"]) == {"se-1", "se-2", "se-3", "se-4"}
    assert all(families["ipv4"][se] > 0 and families["ipv6"][se] > 0 for se in families["ipv4"]), families
    capture = tmp_path / "capture.pcapng"
    announced = fields(capture, ["eth.src"], f"icmpv6.nd.na.target_address == {VIP6} && icmpv6.nd.na.flag.s == 0")
    primaries = [summary["address_plan"][se]["frontend"]["mac"] for se in ("se-1", "se-4")]
    assert [mac for (mac,) in announced] == primaries, "placement on se-1, then the migration to se-4"
    assert_passes_gate(capture)


def v6_only(**overrides) -> dict:
    data = dual(**{"pool.servers": ["[2001:db8:20::101]:8080", "[2001:db8:20::102]:8080"],
                   "traffic.clients": ["2001:db8:99::/64"], **overrides})
    del data["virtual_service"]["vip"]
    return data


@pytest.mark.parametrize("cloud", CLOUDS)
def test_an_ipv6_only_virtual_service_serves_and_announces_only_its_vip6(run_dict, cloud):
    run = run_dict(v6_only(**{"cloud": cloud, "duration": 5.0, "virtual_service.placement": ["se-1", "se-2"]}))
    flows = run.summary["flows"]
    assert flows["total"] > 30 and flows["completed"] == flows["total"], flows
    placed = [e for e in run.events if e["type"] == "vs.placed"]
    assert placed[0]["vip6"] == VIP6 and "vip" not in placed[0]
    assert not fields(run.capture, ["frame.number"], "arp.opcode == 2 && arp.src.proto_ipv4 == 10.10.0.100")


def test_ipv6_only_hosts_get_distinct_macs_across_client_networks(run_dict):
    # Clients ::5 of two /64s share their last four bytes: their MACs must differ all the same.
    run = run_dict(dual(**{"traffic.clients": ["2001:db8:99::/64", "2001:db8:98::/64"], "duration": 5.0}))
    assert run.summary["flows"]["completed"] == run.summary["flows"]["total"] > 30
    assert "nd_unresolved" not in run.summary["drops"], run.summary["drops"]
    macs = [nic["mac"] for node in run.summary["address_plan"].values() if isinstance(node, dict)  # VIPs: primary's
            for key, nic in node.items() if key not in ("vip", "vip6") and isinstance(nic, dict) and nic.get("mac")]
    assert len(macs) == len(set(macs))


def test_udp_over_ipv6_stays_inside_the_mtu(run_dict):
    run = run_dict(v6_only(**{"virtual_service.protocol": "udp", "duration": 3.0, "traffic.request_bytes": 1452,
                              "traffic.response_bytes": 5000, "pool.health_monitor": {"type": "none"}}))
    sizes = [int(n) for (n,) in fields(run.capture, ["frame.len"], "udp && ipv6 && !vxlan")]
    assert sizes and max(sizes) == 14 + 40 + 8 + 1452
    with pytest.raises(scenario_mod.ScenarioError, match=r"traffic.request_bytes: a UDP request must fit one "
                                                         r"datagram over IPv6 \(at most 1452 bytes\), got 1453"):
        scenario_mod.parse(v6_only(**{"virtual_service.protocol": "udp", "traffic.request_bytes": 1453}), "t.toml")


@pytest.mark.parametrize("change, message", [
    ({"pool.servers": ["10.20.0.101:8080"]},
     f"virtual_service.vip6: no IPv6 server in the pool for {VIP6} (an SE does not translate between IPv4 and "
     f"IPv6: no NAT64)"),
    ({"pool.servers": ["[2001:db8:20::101]:8080"]},
     "virtual_service.vip: no IPv4 server in the pool for 10.10.0.100 (an SE does not translate between IPv4 and "
     "IPv6: no NAT64)"),
    ({"virtual_service.vip6": None, "networks.frontend.cidr6": None, "networks.frontend.gateway6": None,
      "traffic.clients": ["2001:db8:99::/64"]},
     "traffic.clients[0]: 2001:db8:99::/64 is IPv6 but networks.frontend has no cidr6 (the router routes IPv6 "
     "clients only to an IPv6 frontend)"),
    ({"virtual_service.vip6": None, "traffic.clients": ["198.51.100.0/28", "2001:db8:99::/64"]},
     "traffic.clients[1]: 2001:db8:99::/64 is IPv6 but no virtual service has a vip6: its clients would have "
     "nothing to connect to"),
    ({"networks.management": {"cidr": "2001:db8:30::/64"}},
     "networks.management.cidr: '2001:db8:30::/64' is an IPv6 network: the management network is IPv4 only"),
])
def test_families_that_cannot_meet_are_named(change, message):
    assert_refused(change, message)


def test_fixture_addresses_and_split_know_ipv6_only_hosts(dataplane_net, tmp_path):
    from dataplane.testing.split import split_capture

    net = dataplane_net(dual(**{"pool.health_monitor": {"type": "tcp", "send_interval": 1.0, "receive_timeout": 0.5}}))
    assert net.ip6("server-3") == "2001:db8:20::101" and net.ip6("se-1", "backend") == "2001:db8:20::11"
    assert net.vip6 == VIP6 and net.vip == "10.10.0.100"
    with pytest.raises(ValueError, match="server-3.eth0 has no IPv4 address"):
        net.ip("server-3")
    net.advance(3.0)
    capture = capture_now(net, tmp_path)
    done = split_capture(capture, "nic", tmp_path / "split")
    names = [part.filename for part in done.parts]
    assert any("server-3" in name for name in names), names
    assert not any("02-00-00" in name or "06-00" in name for name in names), names


def colliding_macs_scenario(folder) -> Path:
    """The dual-stack tour with two IPv6 servers whose hashed MACs would be one: their addresses have the
    same CRC-32 (found by a birthday search).  Only building the network finds it."""
    from importlib import resources

    text = resources.files("dataplane").joinpath("scenarios/demo-dual-stack.toml").read_text()
    text = text.replace('"[2001:db8:20::101]:8080", "[2001:db8:20::102]:8080"',
                        '"[2001:db8:20:0:adc8:875f:b9df:b7b0]:8080", "[2001:db8:20:0:9af7:5a07:98df:5aa3]:8080"')
    path = folder / "collide.toml"
    path.write_text(text)
    return path


def test_two_ipv6_hosts_whose_macs_would_collide_are_refused_in_one_line(tmp_path, capsys):
    from dataplane.cli import main

    path = colliding_macs_scenario(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"dataplane: {path}: server-3.eth0 and server-4.eth0 would "
                                                         f"share the MAC ") and "change one address" in error
    assert not out.exists() or not any(out.iterdir()), "no output is left behind"
