"""Several virtual services on one SE group, and several ports per virtual service (issue 13)."""

from __future__ import annotations

import copy

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from dataplane import scenario as scenario_mod
from conftest import BASE, capture_now, fields

CLIENT = "203.0.113.9"
VIP_A, VIP_B = "10.10.0.100", "10.10.0.200"
QUIET = {"type": "none"}


def two_services(a: dict | None = None, b: dict | None = None, **top) -> dict:
    """BASE with vs-a (primary se-1) and vs-b (primary se-2) on the same three SEs, each with its own pool.

    Both pin the fast path, as BASE does: the server sees the client's own SYN.
    """
    data = copy.deepcopy(BASE)
    del data["virtual_service"], data["pool"]
    data["service_engines"] = [{"name": f"se-{i}", "host": f"esx-{i}"} for i in range(1, 4)]
    data["virtual_services"] = [
        {"name": "vs-a", "vip": VIP_A, "port": 80, "protocol": "tcp", "placement": ["se-1", "se-2", "se-3"],
         "network_profile": "tcp-fast-path",
         "pool": {"servers": ["10.20.0.101:8080", "10.20.0.102:8080"], "health_monitor": QUIET}, **(a or {})},
        {"name": "vs-b", "vip": VIP_B, "ports": [443, "8100-8199"], "protocol": "tcp", "network_profile": "tcp-fast-path",
         "placement": ["se-2", "se-3", "se-1"],
         "pool": {"servers": ["10.20.0.111:8443"], "health_monitor": QUIET}, **(b or {})},
    ]
    data.update(top)
    return data


def who_has(vip: str):
    return Ether(src="02:aa:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc="02:aa:00:00:00:01",
                                                                         psrc="10.10.0.50", pdst=vip)


def syn(net, vip: str, dport: int, sport: int):
    return Ether(src=net.mac("gw"), dst=net.mac(net.primary_of("vs-a" if vip == VIP_A else "vs-b"))) / \
        IP(src=CLIENT, dst=vip, ttl=63) / TCP(sport=sport, dport=dport, flags="S", seq=1000)


# -- each VS its own primary, ARP, steering --------------------------------------------------------------

def test_each_vip_is_answered_by_its_own_primary_only(dataplane_net):
    net = dataplane_net(two_services())
    assert (net.primary_of("vs-a"), net.primary_of("vs-b")) == ("se-1", "se-2")
    garps = [(s.frame[6:12], s.comment) for s in net.seen if "gratuitous arp" in s.comment]
    assert [c.split()[0] for _, c in garps] == ["se-1", "se-2"]
    assert "(vs-a, placed as primary)" in garps[0][1] and "(vs-b, placed as primary)" in garps[1][1]
    for vip, primary in ((VIP_A, "se-1"), (VIP_B, "se-2")):
        net.discard()
        net.send("frontend", who_has(vip))
        net.expect("frontend", Ether(src=net.mac(primary), dst="02:aa:00:00:00:01") /
                   ARP(op="is-at", hwsrc=net.mac(primary), psrc=vip, hwdst="02:aa:00:00:00:01", pdst="10.10.0.50"))
        net.expect_no_other()


def test_flows_are_steered_by_their_own_vs_table_and_comments_name_it(dataplane_net, tmp_path):
    net = dataplane_net(two_services())
    owners = {}
    for sport in range(40000, 40040):
        for vip, port in ((VIP_A, 80), (VIP_B, 443)):
            net.send("gw.frontend", syn(net, vip, port, sport))
            owners[(vip, sport)] = net.owner_of((CLIENT, sport, vip, port))
    assert {owners[(VIP_A, s)] for s in range(40000, 40040)} == {"se-1", "se-2", "se-3"}
    assert {owners[(VIP_B, s)] for s in range(40000, 40040)} == {"se-1", "se-2", "se-3"}
    vs_a, vs_b = net.network.service("vs-a"), net.network.service("vs-b")
    assert len(vs_a.flow_table) == len(vs_b.flow_table) == 40
    steered = fields(capture_now(net, tmp_path), ["eth.src", "ip.dst", "frame.comment"],
                     'frame.comment contains " steer "')
    for src, dst, comment in steered:
        assert src == net.mac("se-1" if dst == VIP_A else "se-2"), "each VIP's primary steers its flows"
        assert f"(vs-{'a' if dst == VIP_A else 'b'}, new flow, bucket " in comment
    servers = fields(capture_now(net, tmp_path), ["ip.dst", "tcp.dstport"], 'frame.interface_name == "backend" '
                     '&& tcp.flags.syn == 1 && tcp.flags.ack == 0')
    assert {tuple(row) for row in servers} == {("10.20.0.101", "8080"), ("10.20.0.102", "8080"),
                                               ("10.20.0.111", "8443")}


def test_a_vs_listens_on_its_ports_and_ranges_only(dataplane_net):
    net = dataplane_net(two_services())
    for port in (443, 8100, 8150, 8199):
        net.send("gw.frontend", syn(net, VIP_B, port, 41000 + port))
        net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IP(src=VIP_B, dst=CLIENT, flags="DF") /
                   TCP(sport=port, dport=41000 + port, flags="SA", ack=1001, options=[("MSS", 1460)]),
                   mask=["eth.src", "ip.id", "ip.ttl", "tcp.seq", "tcp.window"])
    before = net.network.summary()["virtual_services"]["vs-b"]["drops"]
    for port in (80, 444, 8200):
        net.send("gw.frontend", syn(net, VIP_B, port, 42000 + port))
    net.settle()
    drops = net.network.summary()["virtual_services"]["vs-b"]["drops"]
    assert drops.get("vs_port_closed", 0) - before.get("vs_port_closed", 0) == 3


def test_generated_traffic_reaches_every_vs_and_port_and_the_summary_splits_it(run_dict):
    run = run_dict(two_services(b={"traffic": {"new_connections_per_second": 80}}, duration=4.0))
    ports = {int(p) for (p,) in fields(run.capture, ["tcp.dstport"], f"ip.dst == {VIP_B} && tcp.flags.syn == 1")}
    assert 443 in ports and len(ports & set(range(8100, 8200))) > 20
    per_vs = run.summary["virtual_services"]
    assert per_vs["vs-a"]["flows"]["total"] + per_vs["vs-b"]["flows"]["total"] == run.summary["flows"]["total"]
    assert per_vs["vs-b"]["flows"]["total"] > 1.5 * per_vs["vs-a"]["flows"]["total"], "vs-b's own rate"
    assert per_vs["vs-b"]["ports"] == [443, "8100-8199"] and per_vs["vs-a"]["primary"] == "se-1"
    assert {"vs-a", "vs-b"} <= set(run.plan) and run.plan["vs-b"]["vip"]["ip"] == VIP_B
    for name in ("vs-a", "vs-b"):
        assert sum(per_vs[name]["flows_by_se"].values()) == per_vs[name]["flows"]["total"]


# -- shared SEs: room, failures ------------------------------------------------------------------------------

def test_a_scale_out_is_refused_when_the_other_vs_fills_the_free_ses(run_dict):
    data = two_services(a={"placement": ["se-1", "se-2"], "traffic": {"new_connections_per_second": 60}},
                        b={"placement": ["se-3"], "traffic": {"new_connections_per_second": 1}},
                        duration=8.0, se_group={"access": "read", "capacity_pps": 200.0, "max_cpu_usage": 40.0,
                                                "min_cpu_usage": 20.0},
                        events=[{"at": 6.0, "action": "scale_out", "vs": "vs-b"}])
    run = run_dict(data)
    refused = [e for e in run.events if e["type"] == "scale_out.refused"]
    assert len(refused) == 1 and refused[0]["vs"] == "vs-b"
    reason = refused[0]["reason"]
    assert reason.startswith("no connected SE has room (se-1 is at ") and "% CPU (max_cpu_usage = 40 %) with vs-a" in reason
    assert "an administrator must create one first" in reason


def test_max_vs_per_se_leaves_no_room(dataplane_net):
    net = dataplane_net(two_services(a={"placement": ["se-1"]}, b={"placement": ["se-2"]},
                                     se_group={"access": "read", "max_vs_per_se": 1}))
    assert net.scale_out(vs="vs-a") is None
    assert net.wait_for("scale_out.completed", vs="vs-a")["se"] == "se-3", "se-2 has vs-b: no room"
    assert net.scale_out(vs="vs-b") == ("no connected SE has room (se-1 carries 1 VSs (max_vs_per_se = 1); se-3 "
                                        "carries 1 VSs (max_vs_per_se = 1)); access read: the controller may not "
                                        "create an SE; an administrator must create one first (create_se)")
    with pytest.raises(ValueError, match="say which"):
        net.scale_out()


def test_an_se_failure_is_recovered_by_each_vs_by_its_own_rules(dataplane_net):
    net = dataplane_net(two_services(duration=60.0))
    net.advance(1.0)
    net.fail_se("se-2")  # a member of vs-a, the primary of vs-b
    failed = net.wait_for("se.failed", se="se-2")
    promoted = net.events("se.promoted")
    assert [(e["vs"], e["se"], e["previous"]) for e in promoted] == [("vs-b", "se-3", "se-2")]
    assert net.primary_of("vs-a") == "se-1" and net.primary_of("vs-b") == "se-3"
    summary = net.network.summary()["virtual_services"]
    assert summary["vs-a"]["service_engines"] == ["se-1", "se-3"]
    assert summary["vs-b"]["service_engines"] == ["se-3", "se-1"]
    assert failed["was"] == "member (vs-a), member (vs-b)"
    net.discard()
    net.send("frontend", who_has(VIP_B))
    net.expect("frontend", Ether(src=net.mac("se-3")) / ARP(op="is-at", psrc=VIP_B), mask=["eth.dst", "arp.hwsrc",
                                                                                          "arp.hwdst", "arp.pdst"])


def test_autoscale_scales_out_the_vs_that_makes_most_of_a_hot_ses_packets(run_dict):
    data = two_services(a={"placement": ["se-1"], "traffic": {"new_connections_per_second": 40}},
                        b={"placement": ["se-1"], "traffic": {"new_connections_per_second": 2}},
                        duration=45.0, se_group={"capacity_pps": 300.0, "auto_rebalance": True,
                                                 "auto_rebalance_interval": 40.0})
    run = run_dict(data, gate=False)
    high = [e for e in run.events if e["type"] == "alert.cpu_high"]
    assert high and high[0]["se"] == "se-1" and high[0]["vs"] == "vs-a"
    started = [e for e in run.events if e["type"] == "scale_out.started"]
    assert started and started[0]["vs"] == "vs-a" and started[0]["reason"] == "autoscale: se-1 cpu high"


# -- the scenario file ------------------------------------------------------------------------------------------

def error_of(data: dict) -> str:
    with pytest.raises(scenario_mod.ScenarioError) as error:
        scenario_mod.parse(data, "t.toml")
    return str(error.value).removeprefix("t.toml: ")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["virtual_services"][1].update(vip=VIP_A),
     f"virtual_services[1].vip: {VIP_A} is already the VIP of vs-a"),
    (lambda d: d["virtual_services"][1].update(name="vs-a"),
     "virtual_services[1].name: duplicate virtual service name 'vs-a'"),
    (lambda d: d["virtual_services"][1].update(ports=[443, 70000]),
     "virtual_services[1].ports[1]: 70000 is out of range 1..65535"),
    (lambda d: d["virtual_services"][1].update(ports=["8100-8199", 8150]),
     "virtual_services[1].ports[1]: overlaps virtual_services[1].ports[0]"),
    (lambda d: d["virtual_services"][1].update(ports=["9000-8000"]),
     "virtual_services[1].ports[0]: range '9000-8000' ends before it starts"),
    (lambda d: d["virtual_services"][1].update(port=443),
     "virtual_services[1].port: give either port (one port) or ports (ports and ranges)"),
    (lambda d: d["virtual_services"][0].pop("port"), "virtual_services[0].port: missing required key (or ports)"),
    (lambda d: d["virtual_services"][1]["pool"].update(servers=["10.20.0.101:9090"]),
     "virtual_services[1].pool.servers[0]: 10.20.0.101 listens on port 8080 in the pool of vs-a: one server, one port"),
    (lambda d: d["virtual_services"][1].update(traffic={"clients": ["198.18.0.0/24"]}),
     "virtual_services[1].traffic.clients: not a key here: every virtual service shares [traffic].clients"),
    (lambda d: d.update(events=[{"at": 1.0, "action": "scale_out"}]),
     "events[0].vs: required: the scenario has 2 virtual services (vs-a, vs-b)"),
    (lambda d: d.update(events=[{"at": 1.0, "action": "scale_in", "se": "se-1", "vs": "vs-c"}]),
     "events[0].vs: unknown virtual service 'vs-c' (virtual services: vs-a, vs-b)"),
    (lambda d: d.update(events=[{"at": 1.0, "action": "fail_se", "se": "se-1", "vs": "vs-a"}]),
     "events[0].vs: not a key of action 'fail_se'"),
    (lambda d: d.update(pool={"servers": ["10.20.0.101:8080"]}),
     "pool: with [[virtual_services]] each has its own [virtual_services.pool]"),
    (lambda d: d.update(virtual_service=d["virtual_services"][0]),
     "virtual_services: give either [virtual_service] (with [pool]) or [[virtual_services]]"),
])
def test_bad_virtual_services_are_named(change, message):
    data = two_services()
    change(data)
    assert error_of(data) == message


def test_the_single_form_still_means_one_virtual_service():
    parsed = scenario_mod.parse(copy.deepcopy(BASE), "t.toml")
    assert [vs.name for vs in parsed.virtual_services] == ["vs-web"]
    assert parsed.virtual_service.ports == ((80, 80),) and parsed.pool.servers == parsed.virtual_service.pool.servers
    assert parsed.virtual_service.traffic is parsed.traffic


def test_the_two_vs_tour_reuses_ses_busy_with_the_other_vs(tmp_path, capsys):
    from dataplane.cli.main import main
    from conftest import assert_passes_gate
    import json

    assert main(["demo", "--tour", "two-vs", "--out", str(tmp_path), "--no-report"]) == 0
    assert "vs-api (10.10.0.101 tcp 8443, primary se-3, on se-3, se-1)" in capsys.readouterr().out
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    placed = {e["vs"]: e["primary"] for e in events if e["type"] == "vs.placed"}
    assert placed == {"vs-web": "se-1", "vs-api": "se-2"}
    started = [(e["vs"], e["se"], e["reused"]) for e in events if e["type"] == "scale_out.started"]
    # se-1 carries vs-web when vs-api takes it; se-3 carries vs-api when vs-web takes it back to two SEs.
    assert started == [("vs-api", "se-1", True), ("vs-web", "se-3", True)]
    assert_passes_gate(tmp_path / "capture.pcapng")
