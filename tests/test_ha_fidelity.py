"""Product fidelity (issue 11): HA recovery, heartbeats as frames, per-SE CPU rules, overload, UDP failover, NAT."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from dataplane.nodes.heartbeat import ETHERTYPE_HEARTBEAT
from conftest import capture_now, fields, scenario_dict
from survival import follow

VIP, CLIENT = "10.10.0.100", "203.0.113.9"
TWO_SES = [{"name": "se-1", "host": "esx-1"}, {"name": "se-2", "host": "esx-2"}]


def syn(net, sport: int):
    return Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags="S", seq=1000)


def served_by(net, sport: int) -> str:
    """Open a connection to the VIP; the SYN-ACK must come back to the router. Returns the owner."""
    net.send("gw.frontend", syn(net, sport))
    net.expect("gw.frontend", Ether(dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT, flags="DF") /
               TCP(sport=80, dport=sport, flags="SA", ack=1001, options=[("MSS", 1460)]),
               mask=["eth.src", "ip.id", "ip.ttl", "tcp.seq", "tcp.window"])
    return net.owner_of((CLIENT, sport, VIP, 80))


def garp_from(net, se: str):
    return Ether(src=net.mac(se), dst="ff:ff:ff:ff:ff:ff") / ARP(op="who-has", hwsrc=net.mac(se), psrc=VIP,
                                                                 hwdst="00:00:00:00:00:00", pdst=VIP)


QUIET = {"pool.health_monitor": {"type": "none"}, "duration": 120.0}


# -- 1, 2: a VS whose SEs failed comes back; HA modes -------------------------------------------------------------

def test_n_plus_m_places_a_vs_whose_only_se_failed_on_spare_capacity(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{
        "virtual_service.placement": ["se-1"], "se_group.controller_heartbeat_interval": 2.0,
        "se_group.controller_heartbeat_miss_limit": 3}))
    net.discard()
    net.fail_se("se-1")
    failed = net.wait_for("se.failed", se="se-1")
    # se-1 had no peer in the VS: only the controller's heartbeats (every 2 s, 3 misses here) find it.
    assert failed["t"] == 6.0 and failed["detected_by"] == "the controller missed 3 heartbeats"
    assert net.wait_for("vs.down")["t"] == 6.0
    started = net.wait_for("scale_out.started")
    assert started["se"] == "se-2" and started["reason"] == "placing the VS again: every SE it had failed"
    promoted = net.wait_for("se.promoted")
    assert promoted["se"] == "se-2" and promoted["t"] == 8.0
    net.expect("frontend", garp_from(net, "se-2"))
    assert served_by(net, 40000) == "se-2"


def test_n_plus_m_creates_an_se_when_no_spare_one_is_connected(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{
        "virtual_service.placement": ["se-1"], "service_engines": [{"name": "se-1", "host": "esx-1"}],
        "se_group.hosts": ["esx-1", "esx-2"], "se_group.se_create_delay": 5.0,
        "se_group.controller_heartbeat_interval": 1.0, "se_group.controller_heartbeat_miss_limit": 2}))
    net.fail_se("se-1")
    created = net.wait_for("se.create.completed")
    assert created["se"] == "se-2" and created["host"] == "esx-2"
    assert net.wait_for("se.promoted")["se"] == "se-2"
    assert served_by(net, 40001) == "se-2"


def test_legacy_active_standby_fails_over_to_the_standby(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{
        "service_engines": TWO_SES, "virtual_service.placement": ["se-1"],
        "se_group.ha_mode": "legacy-active-standby"}))
    assert net.events("vs.placed")[0]["standby"] == "se-2"
    assert served_by(net, 40002) == "se-1"
    net.discard()
    net.fail_se("se-1")
    promoted = net.wait_for("se.promoted")
    assert promoted["se"] == "se-2" and promoted["reason"] == "active se-1 failed"
    net.expect("frontend", garp_from(net, "se-2"))
    assert served_by(net, 40003) == "se-2"
    assert net.scale_out() == "ha_mode legacy-active-standby does not scale out"
    net.recover_se("se-1")
    assert net.wait_for("vs.standby")["se"] == "se-1"
    assert net.network.summary()["standby"] == "se-1"


def test_elastic_active_active_restores_two_ses_after_both_fail(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.ha_mode": "elastic-active-active"}))
    net.fail_se("se-1")
    net.fail_se("se-2")
    assert net.wait_for("vs.down")
    first = net.wait_for("scale_out.completed")
    second = net.wait_for("scale_out.completed")
    assert {first["se"], second["se"]} == {"se-3", "se-4"} and len(second["service_engines"]) == 2
    assert served_by(net, 40004) in ("se-3", "se-4")


# -- 3, 4: heartbeats as frames, frames lost to a failed SE -------------------------------------------------------

def test_heartbeats_are_frames_and_stop_at_the_failure(dataplane_net, tmp_path):
    net = dataplane_net(scenario_dict(**QUIET, **{"virtual_service.placement": ["se-1", "se-2", "se-3"]}))
    net.advance(2.0)
    net.fail_se("se-2")
    failed = net.wait_for("se.failed", se="se-2")
    assert failed["t"] == 3.0 and failed["detected_by"] == "se-1 missed 10 data-plane heartbeats"
    capture = capture_now(net, tmp_path)
    beats = fields(capture, ["frame.time_relative", "eth.src", "eth.dst", "frame.comment"],
                   f"eth.type == 0x{ETHERTYPE_HEARTBEAT:04x}")
    from_se2 = [float(t) for t, src, _, _ in beats if src == net.mac("se-2")]
    assert from_se2 and max(from_se2) < 2.0, "se-2 answers until it fails, and never after"
    to_se3 = [c for _, src, dst, c in beats if src == net.mac("se-1") and dst == net.mac("se-3")]
    assert len(to_se3) >= 29 and to_se3[0] == "se-1 heartbeat 1 to se-3"
    lost = [c for _, src, dst, c in beats if dst == net.mac("se-2") and "[LOST: se-2 failed, not yet detected]" in c]
    # se-2 failed just after heartbeat 20 left se-1: 21 to 29 are sent to a dead SE, the 10th miss declares it.
    assert [c.split()[2] for c in lost] == [str(n) for n in range(21, 30)]
    assert not [c for _, _, dst, c in beats if dst == net.mac("se-2") and "declared" in c], "none after"


def test_heartbeats_can_be_left_out_of_the_capture(dataplane_net, tmp_path):
    net = dataplane_net(scenario_dict(**QUIET, **{"virtual_service.placement": ["se-1", "se-2"],
                                                  "se_group.dp_hb_in_capture": False}))
    net.advance(1.0)
    net.fail_se("se-2")
    assert net.wait_for("se.failed", se="se-2")["t"] == 2.0
    assert not fields(capture_now(net, tmp_path), ["frame.number"], f"eth.type == 0x{ETHERTYPE_HEARTBEAT:04x}")


def test_frames_sent_to_a_failed_se_before_detection_are_counted_and_commented(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET))
    net.fail_se("se-2")
    for sport in range(41000, 41040):
        net.send("gw.frontend", syn(net, sport))
        if net.owner_of((CLIENT, sport, VIP, 80)) == "se-2":
            break
    lost = [s for s in net.seen if "[LOST: se-2 failed, not yet detected]" in s.comment and " steer " in s.comment]
    assert lost and net.network.summary()["drops"]["lost_to_failed_node"] >= 1


# -- 5, 6, 7: CPU per SE, overload, the primary's share --------------------------------------------------------------

def test_a_cpu_alert_names_the_hot_se_while_the_mean_is_below_the_limit(run_dict):
    run = run_dict(scenario_dict(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.primary_weight": 1000, "duration": 12.0,
        "se_group.capacity_pps": 120.0, "se_group.auto_rebalance_interval": 10.0,
        "traffic.new_connections_per_second": 12, "pool.health_monitor": {"type": "none"}}))
    cpu = run.summary["cpu"]
    high = [e for e in run.events if e["type"] == "alert.cpu_high"]
    assert high and {e["se"] for e in high} == {"se-1"}, "the hot SE is named"
    assert high[0]["average"] > 80 and (high[0]["average"] + cpu["se-2"]["average"]) / 2 < 80, "the mean is not"


def test_overload_queues_frames_then_drops_them(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{"virtual_service.placement": ["se-1"],
                                                  "se_group.capacity_pps": 10000.0, "pool.servers": ["10.20.0.101:8080"]}))
    served_by(net, 1)  # the SE has resolved the server's address
    net.fail_server("10.20.0.101:8080")  # silent: the SE's CPU goes to the SYNs alone
    net.discard()
    for sport in range(2, 1102):  # 1100 SYNs at once: each takes 100 us of the SE's CPU
        net.send("gw.frontend", syn(net, sport))
    net.advance(0.001)
    for sport in range(2000, 2050):  # the queue is past 1024 frames: these are dropped at the SE's port
        net.send("gw.frontend", syn(net, sport))
    net.settle()
    snat = sorted(s.time_ns for s in net.seen if " snat " in s.comment and not s.discarded)
    assert len(snat) == 1100
    gaps = {b - a for a, b in zip(snat, snat[1:])}
    assert gaps == {100_000}, "queued frames leave one service time (1/capacity_pps) apart"
    assert snat[-1] - snat[0] == 1099 * 100_000
    dropped = [s for s in net.seen if "[DROPPED: se-1 overloaded: its queue of 1024 frames is full at "
                                      "se_group.capacity_pps 10000]" in s.comment]
    assert len(dropped) == net.network.summary()["drops"]["overload_se-1"] == 50


def test_the_primary_gives_up_share_as_its_cpu_fills(run_dict):
    run = run_dict(scenario_dict(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 31.0, "se_group.capacity_pps": 200.0,
        "traffic.new_connections_per_second": 10, "pool.health_monitor": {"type": "none"}}))
    changes = [e for e in run.events if e["type"] == "primary.share"]
    assert changes and changes[0]["se"] == "se-1" and changes[0]["weight"] < 100
    assert run.summary["primary_weight"] == changes[-1]["weight"]
    assert run.summary["steering_share"]["se-1"] < 1 / 3
    pinned = run_dict(scenario_dict(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 31.0, "se_group.capacity_pps": 200.0,
        "se_group.primary_weight": 100, "traffic.new_connections_per_second": 10,
        "pool.health_monitor": {"type": "none"}}))
    assert not [e for e in pinned.events if e["type"] == "primary.share"], "primary_weight pins the share"


# -- 8: UDP across a primary failover --------------------------------------------------------------------------------

def test_udp_flows_keep_their_se_across_a_primary_failover(dataplane_net):
    net = dataplane_net(scenario_dict(**{
        "virtual_service.protocol": "udp", "virtual_service.port": 18000, "pool.servers": ["10.20.0.101:18001"],
        "se_group.primary_weight": 40, "traffic.response_bytes": 300, "traffic.requests_per_connection": 8,
        "traffic.request_interval": 1.0, "traffic.new_connections_per_second": 6, "traffic.stop": 5.0,
        "pool.health_monitor": {"type": "none"}, "duration": 20.0,
        "events": [{"at": 5.0, "action": "fail_se", "se": "se-1"}]}), traffic=True)
    table = follow(net, 20.0)
    kept = [c for c in table.values() if c.opened < 5.0 and c.owner != "se-1"]
    assert len(kept) > 5 and all(c.owners == [c.owner] for c in kept), "survivors' flows stay where they were"
    assert all(c.outcome == "completed" for c in kept)
    orphans = [c for c in table.values() if c.opened < 5.0 and c.owner == "se-1" and c.closed and c.closed > 6.0]
    assert orphans and all(c.outcome == "completed" and len(c.owners) == 2 for c in orphans), \
        "the failed primary's UDP flows are load-balanced to a survivor, as the product does"
    assert net.events("flow_probe.claimed") and net.events("flow_probe.unclaimed")


def test_a_udp_client_asks_again_then_goes_on(dataplane_net):
    net = dataplane_net(scenario_dict(**{
        "virtual_service.protocol": "udp", "virtual_service.port": 18000, "pool.servers": ["10.20.0.101:18001"],
        "virtual_service.placement": ["se-1"], "traffic.requests_per_connection": 3, "traffic.request_interval": 1.0,
        "traffic.response_bytes": 300, "traffic.max_connections": 1, "pool.health_monitor": {"type": "none"},
        "events": [{"at": 1.5, "action": "fail_server", "server": "10.20.0.101:18001"},
                   {"at": 6.0, "action": "recover_server", "server": "10.20.0.101:18001"}], "duration": 12.0}),
        traffic=True)
    net.advance(12.0)
    tries = [s.comment for s in net.seen if s.segment == "clients" and " try " in s.comment]
    assert tries and all(", no answer for 1 s" in c for c in tries)
    reasons = net.network.runtime.counters.flow_reasons
    assert reasons["failed"] == {"1 of 3 requests unanswered after 3 tries": 1}


# -- 9, 10: NAT as a real SE does it; migrate to a new SE -----------------------------------------------------------

def test_snat_uses_the_products_port_range_and_half_open_entries_expire(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{"virtual_service.placement": ["se-1"],
                                                  "se_group.tcp_half_open_timeout": 5.0}))
    net.fail_server("10.20.0.101:8080")
    net.fail_server("10.20.0.102:8080")
    net.send("gw.frontend", syn(net, 42000))
    net.settle()
    first = [s for s in net.seen if " snat " in s.comment][0]
    assert TCP(first.frame[34:]).sport == 4096
    se = net.network.nodes["se-1"]
    assert len(se.nat) == 1
    net.advance(20.0)
    assert len(se.nat) == 0 and net.network.summary()["expired_idle"]["nat"] == 1


def test_migrate_to_a_new_se_creates_it_then_drains_the_source(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **{
        "virtual_service.placement": ["se-1"], "service_engines": [{"name": "se-1", "host": "esx-1"}],
        "se_group.hosts": ["esx-1", "esx-2"], "se_group.se_create_delay": 4.0, "se_group.vs_scalein_timeout": 5.0,
        "events": [{"at": 1.0, "action": "migrate", "from": "se-1", "to_new_se": True}]}))
    started = net.wait_for("migrate.started")
    assert started["to"] == "se-2" and started["new_se"] is True
    net.wait_for("se.create.completed", se="se-2")
    assert net.wait_for("se.promoted")["se"] == "se-2"
    net.expect("frontend", garp_from(net, "se-2"))
    assert net.wait_for("migrate.completed")["t"] == pytest.approx(12.0)  # 1 + 4 (create) + 2 (join) + 5 (drain)
    read_only = dataplane_net(scenario_dict(**QUIET, **{"se_group.access": "read"}))
    assert read_only.migrate("se-1").startswith("migrate to a new SE: access read:")
