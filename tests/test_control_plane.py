"""Control-plane behaviours B2, B8-B15: each test pins one, on the capture and the event log."""

from __future__ import annotations

import pytest

from dataplane.control.se_state import IllegalTransition, Role, Roles, SeLifecycle, SeState
from conftest import capture_now, fields, scenario_dict
from survival import follow

VIP = "10.10.0.100"


def long_lived(**overrides) -> dict:
    """One SE placed, more listed, connections of several requests each."""
    base = {"virtual_service.placement": ["se-1"], "traffic.new_connections_per_second": 10,
            "traffic.requests_per_connection": 6, "traffic.request_interval": 1.0, "duration": 20.0,
            "pool.health_monitor": {"type": "tcp", "send_interval": 2.0, "receive_timeout": 1.0}}
    base.update(overrides)
    return scenario_dict(**base)


def events_of(run, kind: str) -> list[dict]:
    return [e for e in run.events if e["type"] == kind]


def test_scale_out_keeps_established_flows(dataplane_net):
    net = dataplane_net(long_lived(events=[{"at": 4.0, "action": "scale_out"}]), traffic=True)
    table = follow(net, 20.0)
    done = net.events("scale_out.completed")[0]
    assert all(len(c.owners) == 1 for c in table.values()), "a connection changed SE"
    before = [c for c in table.values() if c.opened < done["t"]]
    assert before and all(c.owner == "se-1" and c.outcome == "completed" for c in before)
    after = [c for c in table.values() if c.opened > done["t"]]
    assert {c.owner for c in after} >= {"se-1", "se-2"}
    assert net.network.summary()["flows"]["reset"] == 0


def test_scale_out_past_the_maximum_is_refused(run_dict):
    run = run_dict(scenario_dict(**{"se_group.max_scaleout_per_vs": 4, "events": [{"at": 1.0, "action": "scale_out"}]}))
    refused = events_of(run, "scale_out.refused")
    assert refused and "max_scaleout_per_vs = 4" in refused[0]["reason"]
    assert run.summary["refusals"][0]["action"] == "scale_out"
    assert run.summary["flows"]["completed"] == run.summary["flows"]["total"] > 0


def test_scale_out_reuses_a_connected_se_then_creates_one(run_dict):
    run = run_dict(long_lived(**{
        "service_engines": [{"name": "se-1", "host": "esx-1"}, {"name": "se-2", "host": "esx-2"}],
        "se_group.se_create_delay": 3.0, "se_group.hosts": ["esx-1", "esx-2", "esx-3"],
        "events": [{"at": 1.0, "action": "scale_out"}, {"at": 5.0, "action": "scale_out"}]}))
    started = events_of(run, "scale_out.started")
    assert [(e["se"], e["reused"]) for e in started] == [("se-2", True), ("se-3", False)]
    created = events_of(run, "se.create.completed")[0]
    assert created["host"] == "esx-3" and created["t"] == 8.0
    assert [e["t"] for e in events_of(run, "scale_out.completed")] == [3.0, 10.0]
    assert run.summary["flows_by_se"]["se-3"] > 0
    assert "se-3" in run.plan


def test_read_access_needs_an_administrator_to_create_the_se(run_dict):
    run = run_dict(long_lived(**{
        "service_engines": [{"name": "se-1", "host": "esx-1"}], "se_group.access": "read",
        "se_group.se_create_delay": 2.0,
        "events": [{"at": 1.0, "action": "scale_out"}, {"at": 2.0, "action": "create_se", "name": "se-9", "host": "esx-2"},
                   {"at": 6.0, "action": "scale_out"}]}))
    refused = events_of(run, "scale_out.refused")[0]
    assert refused["t"] == 1.0 and "create_se" in refused["reason"]
    assert events_of(run, "se.create.completed")[0]["se"] == "se-9"
    assert events_of(run, "scale_out.completed")[0]["se"] == "se-9"


def test_failed_creation_retries_on_another_host(run_dict):
    run = run_dict(long_lived(**{
        "service_engines": [{"name": "se-1", "host": "esx-1"}],
        "se_group.se_create_delay": 3.0, "se_group.se_create_retry_delay": 4.0,
        "se_group.hosts": ["esx-1", "esx-2", "esx-3"],
        "events": [{"at": 1.0, "action": "scale_out"}, {"at": 2.0, "action": "fail_host", "host": "esx-2"}]}))
    kinds = [(e["type"], e.get("host")) for e in run.events if e["type"].startswith("se.create")]
    assert kinds == [("se.create.started", "esx-2"), ("se.create.failed", "esx-2"),
                     ("se.create.started", "esx-3"), ("se.create.completed", "esx-3")]
    assert events_of(run, "se.create.started")[1]["t"] == 6.0
    assert events_of(run, "scale_out.completed")[0]["t"] == 11.0


def test_scale_in_drains_then_resets_the_rest(dataplane_net, tmp_path):
    net = dataplane_net(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "se_group.vs_scalein_timeout": 6.0,
        "traffic.requests_per_connection": 12, "duration": 30.0,
        "events": [{"at": 5.0, "action": "scale_in", "se": "se-2"}]}), traffic=True)
    table = follow(net, 30.0)
    expired = net.events("drain.expired")[0]
    assert expired["t"] == 11.0 and expired["se"] == "se-2" and expired["connections_reset"] > 0
    on_se2 = [c for c in table.values() if c.owner == "se-2"]
    assert all(c.opened < 5.0 for c in on_se2), "no new flow after the scale in"
    reset = [c for c in on_se2 if c.outcome == "reset"]
    assert len(reset) == expired["connections_reset"]
    assert all(abs(c.closed - 11.0) < 0.01 for c in reset), "reset exactly when the drain ends"
    assert all(c.outcome == "completed" for c in on_se2 if c not in reset)
    others = [c for c in table.values() if c.owner != "se-2" and c.opened < 16.0]
    assert others and all(c.outcome == "completed" for c in others)
    to_servers = fields(capture_now(net, tmp_path), ["ip.src"],
                        'frame.interface_name == "backend" && tcp.flags.reset == 1 && frame.comment contains "drain"')
    assert len(to_servers) == expired["connections_reset"]
    assert {row[0] for row in to_servers} == {net.ip("se-2", "backend")}


def test_scale_in_below_the_minimum_is_refused(run_dict):
    run = run_dict(long_lived(events=[{"at": 1.0, "action": "scale_in", "se": "se-1"}]))
    assert "min_scaleout_per_vs = 1" in events_of(run, "scale_in.refused")[0]["reason"]


def test_migrating_the_primary_moves_the_vip(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.vs_scalein_timeout": 5.0, "duration": 25.0,
        "events": [{"at": 4.0, "action": "migrate", "from": "se-1", "to": "se-3"}]}))
    promoted = events_of(run, "se.promoted")[0]
    assert promoted["se"] == "se-3" and promoted["t"] == 6.0
    garps = fields(run.capture, ["frame.time_relative", "eth.src"], f"arp.isgratuitous == 1 && arp.src.proto_ipv4 == {VIP}")
    assert [src for _, src in garps] == [run.mac("se-1"), run.mac("se-3")]
    to_vip = fields(run.capture, ["frame.time_relative", "eth.dst"],
                    f'eth.src == {run.mac("gw")} && ip.dst == {VIP} && frame.time_relative > 6.001')
    assert to_vip and {dst for _, dst in to_vip} == {run.mac("se-3")}
    relayed = fields(run.capture, ["frame.time_relative"], 'frame.comment contains "se-3 steer" && '
                     'frame.comment contains "-> se-1 (flow table, se-1 draining until 11 s)"')
    assert relayed and all(6.0 < float(t) < 11.0 for (t,) in relayed), "se-1's flows follow it until its drain ends"
    assert events_of(run, "migrate.completed")[0]["t"] == 11.0
    assert run.summary["primary"] == "se-3"


def test_each_se_monitors_every_server_from_its_own_backend_ip(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 30.0,
        "events": [{"at": 6.0, "action": "fail_server", "server": "10.20.0.102:8080"},
                   {"at": 18.0, "action": "recover_server", "server": "10.20.0.102:8080"}]}))
    probes = fields(run.capture, ["ip.src", "ip.dst"], 'frame.interface_name == "backend" && tcp.flags.syn == 1 && '
                    'tcp.flags.ack == 0 && tcp.srcport >= 61441')
    pairs = {(src, dst) for src, dst in probes}
    assert pairs == {(run.ip(se, "backend"), ip) for se in ("se-1", "se-2", "se-3") for ip in ("10.20.0.101", "10.20.0.102")}
    down = {e["se"]: e["t"] for e in events_of(run, "server.down")}
    up = {e["se"]: e["t"] for e in events_of(run, "server.up")}
    assert set(down) == set(up) == {"se-1", "se-2", "se-3"}
    assert len(set(down.values())) == 3, "SEs see the failure on their own schedules"
    assert all(6.0 < t < 6.0 + 2 * 2.0 + 2 * 1.0 + 0.5 for t in down.values())
    new_conns = fields(run.capture, ["frame.time_relative", "frame.comment"],
                       'frame.comment contains "new connection to server-2"')
    for t, comment in new_conns:
        se = comment.split()[0]
        assert not down[se] < float(t) < up[se], f"{se} sent a new flow to a server it sees down: {comment}"


@pytest.mark.parametrize("kind", ["http", "icmp"])
def test_http_and_icmp_monitors_detect_a_failed_server(run_dict, kind):
    run = run_dict(long_lived(**{
        "pool.health_monitor": {"type": kind, "send_interval": 2.0, "receive_timeout": 1.0},
        "events": [{"at": 5.0, "action": "fail_server", "server": "10.20.0.101:8080"}]}))
    assert [e["server"] for e in events_of(run, "server.down")] == ["10.20.0.101:8080"]
    assert "se_no_nat_entry" not in run.summary["drops"], "probe answers are never taken for client traffic"
    probe_filter = 'http.request.method == "GET" && tcp.srcport >= 61441' if kind == "http" else "icmp.type == 8"
    assert fields(run.capture, ["frame.number"], probe_filter)


def test_secondary_failure_is_detected_by_missed_heartbeats(dataplane_net, tmp_path):
    net = dataplane_net(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 20.0,
        "events": [{"at": 5.0, "action": "fail_se", "se": "se-2"}]}), traffic=True)
    table = follow(net, 20.0)
    failed = net.events("se.failed")[0]
    assert failed["se"] == "se-2" and failed["t"] == 6.0 and failed["missed_heartbeats"] == 10
    capture = capture_now(net, tmp_path)
    sent_by_se2 = fields(capture, ["frame.time_relative"],
                         f'eth.src == {net.mac("se-2")} || eth.src == {net.mac("se-2", "backend")}')
    assert max(float(t) for (t,) in sent_by_se2) < 5.0
    assert all(c.opened < 5.0 for c in table.values() if c.owner == "se-2")
    rehashed = fields(capture, ["frame.comment"], 'frame.comment contains "owner se-2 gone"')
    assert rehashed
    refusals = fields(capture, ["frame.comment"], 'frame.comment contains "no connection state"')
    assert refusals and all(not c[0].startswith("se-2") for c in refusals)
    survivors = [c for c in table.values() if c.owner != "se-2" and c.opened < 14.0]
    assert survivors and all(c.outcome == "completed" for c in survivors)


def test_primary_failure_promotes_a_secondary_that_probes_for_flows(dataplane_net, tmp_path):
    net = dataplane_net(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "duration": 20.0,
        "events": [{"at": 5.0, "action": "fail_se", "se": "se-1"}]}), traffic=True)
    table = follow(net, 20.0)
    promoted = net.events("se.promoted")[0]
    assert promoted["se"] == "se-2" and promoted["t"] == 6.0
    capture = capture_now(net, tmp_path)
    garp = fields(capture, ["eth.src"], "arp.isgratuitous == 1 && frame.time_relative > 5")
    assert garp == [[net.mac("se-2")]]
    probes = fields(capture, ["ip.src", "ip.dst", "frame.comment"], "udp.dstport == 1551")
    assert any("who owns" in c for _, _, c in probes) and any("claim" in c for _, _, c in probes)
    assert net.events("flow_probe.claimed") and net.events("flow_probe.unclaimed")
    survivors = [c for c in table.values() if c.owner in ("se-2", "se-3") and c.opened < 14.0]
    assert survivors and all(c.outcome == "completed" for c in survivors), "flows of surviving secondaries complete"
    lost = [c for c in table.values() if c.owner == "se-1" and c.opened < 5.0 and c.outcome != "completed"]
    assert lost and all(c.outcome == "reset" for c in lost if c.closed and c.closed > 6.0)


def test_fail_host_fails_its_ses(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "duration": 65.0, "traffic.stop": 10.0,
        "service_engines": [{"name": "se-1", "host": "esx-1"}, {"name": "se-2", "host": "esx-2"},
                            {"name": "se-3", "host": "esx-2"}],
        "events": [{"at": 3.0, "action": "fail_host", "host": "esx-2"},
                   {"at": 8.0, "action": "recover_se", "se": "se-2"}]}))
    failed = {e["se"]: e for e in events_of(run, "se.failed")}
    # se-2 has a peer in the VS: its data-plane heartbeats stop; se-3 serves nothing: only the controller sees it.
    assert failed["se-2"]["t"] == 4.0 and failed["se-2"]["detected_by"] == "se-1 missed 10 data-plane heartbeats"
    assert failed["se-3"]["t"] == 60.0 and failed["se-3"]["detected_by"] == "the controller missed 6 heartbeats"
    assert "host esx-2" in events_of(run, "recover_se.refused")[0]["reason"]


def test_cpu_alerts_and_autoscale_one_change_per_interval(run_dict):
    hot = run_dict(long_lived(**{
        "se_group.capacity_pps": 20.0, "se_group.auto_rebalance": True, "se_group.auto_rebalance_interval": 5.0,
        "duration": 22.0}))
    high = events_of(hot, "alert.cpu_high")
    assert [e["t"] for e in high] == [5.0, 10.0, 15.0, 20.0] and high[0]["average"] > 80
    started = events_of(hot, "scale_out.started")
    assert [e["t"] for e in started] == [5.0, 10.0, 15.0]
    assert events_of(hot, "scale_out.refused")[0]["t"] == 20.0, "four SEs is the maximum"
    calm = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.auto_rebalance": True,
        "se_group.auto_rebalance_interval": 5.0, "se_group.vs_scalein_timeout": 2.0}))
    assert events_of(calm, "alert.cpu_low")[0]["t"] == 5.0
    assert events_of(calm, "scale_in.started")[0]["se"] == "se-2"
    quiet = run_dict(long_lived(**{"se_group.capacity_pps": 20.0, "se_group.auto_rebalance_interval": 5.0}))
    assert events_of(quiet, "alert.cpu_high") and not events_of(quiet, "scale_out.started"), "alerts only when off"


def test_legacy_active_standby_refuses_scale_out(run_dict):
    run = run_dict(long_lived(**{"se_group.ha_mode": "legacy-active-standby",
                                 "service_engines": [{"name": "se-1", "host": "esx-1"}, {"name": "se-2", "host": "esx-2"}],
                                 "events": [{"at": 1.0, "action": "scale_out"},
                                            {"at": 2.0, "action": "migrate", "from": "se-1", "to": "se-2"}]}))
    assert "legacy-active-standby" in events_of(run, "scale_out.refused")[0]["reason"]
    assert "not supported" in events_of(run, "migrate.refused")[0]["reason"]
    assert events_of(run, "vs.placed")[0]["standby"] == "se-2" and run.summary["standby"] == "se-2"


def test_elastic_active_active_keeps_two_ses(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.ha_mode": "elastic-active-active",
        "events": [{"at": 1.0, "action": "scale_in", "se": "se-2"}, {"at": 3.0, "action": "fail_se", "se": "se-2"}]}))
    assert "at least 2" in events_of(run, "scale_in.refused")[0]["reason"]
    restored = events_of(run, "scale_out.started")[0]
    assert restored["t"] == 4.0 and restored["reason"] == "ha_mode elastic-active-active keeps the VS on 2 SEs"


def test_an_illegal_lifecycle_event_leaves_the_state_unchanged():
    life = SeLifecycle()
    life.add("se-1", SeState.READY)
    with pytest.raises(IllegalTransition, match="se-1 is ready: cannot recover"):
        life.apply("se-1", "recover")
    assert life.get("se-1") is SeState.READY
    assert life.apply("se-1", "fail") is SeState.FAILED


def test_an_illegal_role_event_leaves_the_role_unchanged():
    roles = Roles()
    with pytest.raises(IllegalTransition, match="se-1 is not in the VS: cannot drain"):
        roles.apply("se-1", "drain")
    assert roles.get("se-1") is None
    assert roles.apply("se-1", "join") is Role.JOINING
    with pytest.raises(IllegalTransition, match="se-1 is joining: cannot drain"):
        roles.apply("se-1", "drain")
    assert roles.get("se-1") is Role.JOINING
    assert roles.apply("se-1", "joined") is Role.MEMBER


def test_a_new_stint_in_a_role_keeps_the_se_s_place_in_the_order():
    roles = Roles()
    for name in ("se-1", "se-2", "se-3"):
        roles.apply(name, "place")
    first = roles.stint("se-2")
    roles.apply("se-2", "drain")
    assert roles.stint("se-2") is not first  # a timer of the member stint can tell it is over
    assert list(roles.named(Role.MEMBER)) == ["se-1", "se-3"]
    roles.apply("se-2", "drained")
    roles.apply("se-2", "join")
    roles.apply("se-2", "joined")
    assert list(roles.named(Role.MEMBER)) == ["se-1", "se-3", "se-2"]  # a returning SE comes in last


def test_idle_udp_nat_entries_expire(run_dict):
    run = run_dict(scenario_dict(**{
        "virtual_service.protocol": "udp", "virtual_service.port": 18000, "pool.servers": ["10.20.0.101:18001"],
        "traffic.response_bytes": 300, "traffic.new_connections_per_second": 5, "traffic.stop": 5.0,
        "pool.health_monitor": {"type": "none"}, "duration": 45.0}))
    assert run.summary["expired_idle"]["nat"] == run.summary["flows"]["total"] > 0


def test_an_expired_steering_entry_is_found_again_by_flow_probe(dataplane_net, monkeypatch):
    from dataplane.control import controller
    monkeypatch.setattr(controller, "FLOW_TABLE_IDLE", 5.0)
    net = dataplane_net(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2", "se-3"], "traffic.requests_per_connection": 2,
        "traffic.request_interval": 12.0, "traffic.stop": 3.0, "duration": 30.0}), traffic=True)
    table = follow(net, 30.0)
    summary = net.network.summary()
    assert summary["expired_idle"]["flow_table"] > 0
    assert net.events("flow_probe.claimed") and not net.events("flow_probe.unclaimed")
    assert summary["flows"]["completed"] == summary["flows"]["total"]
    assert table and all(len(c.owners) == 1 for c in table.values()), "a probed flow stays on its SE"


def test_migrate_whose_source_fails_while_the_target_joins(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"],
        "events": [{"at": 4.0, "action": "migrate", "from": "se-2", "to": "se-3"},
                   {"at": 4.5, "action": "fail_se", "se": "se-2"}]}))
    done = events_of(run, "migrate.completed")[0]
    assert done["t"] == 6.0 and "already" in done["note"]
    assert run.summary["service_engines"] == ["se-1", "se-3"]


def test_a_migrate_target_failing_while_joining_is_a_failed_migrate_not_a_scale_out(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.vs_se_scaleout_ready_timeout": 5.0,
        "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"} for i in range(1, 5)],
        "events": [{"at": 4.0, "action": "migrate", "from": "se-2", "to": "se-4"},
                   {"at": 4.1, "action": "fail_se", "se": "se-4"},
                   {"at": 5.0, "action": "scale_out", "se": "se-3"}]}))
    failed = events_of(run, "migrate.failed")[0]
    assert failed["to"] == "se-4" and failed["t"] == 9.0 and "did not report ready within" in failed["reason"]
    assert not events_of(run, "scale_out.failed")
    assert events_of(run, "scale_out.completed")[0]["se"] == "se-3"


def test_scale_out_after_every_se_failed_announces_the_vip(dataplane_net, tmp_path):
    net = dataplane_net(long_lived(**{
        "events": [{"at": 3.0, "action": "fail_se", "se": "se-1"}, {"at": 6.0, "action": "scale_out", "se": "se-2"}]}),
        traffic=True)
    table = follow(net, 20.0)
    # se-1 had no peer: only the controller's heartbeats could see it, 60 s later.  The administrator's
    # scale out gives it one at 8 s, and se-2's data-plane heartbeats find the primary silent 10 beats later.
    promoted = net.events("se.promoted")[0]
    assert promoted["se"] == "se-2" and promoted["t"] == 9.0
    assert net.events("se.failed")[0]["detected_by"] == "se-2 missed 10 data-plane heartbeats"
    garps = fields(capture_now(net, tmp_path), ["eth.src"], "arp.isgratuitous == 1")
    assert garps[-1] == [net.mac("se-2")]
    later = [c for c in table.values() if c.opened > 9.0 and c.opened < 14.0]
    assert later and all(c.owner == "se-2" and c.outcome == "completed" for c in later)


def test_an_earlier_drain_timer_does_not_end_a_later_drain(run_dict):
    run = run_dict(long_lived(**{
        "virtual_service.placement": ["se-1", "se-2"], "se_group.vs_scalein_timeout": 6.0, "duration": 22.0,
        "events": [{"at": 2.0, "action": "scale_in", "se": "se-2"}, {"at": 3.0, "action": "fail_se", "se": "se-2"},
                   {"at": 5.0, "action": "recover_se", "se": "se-2"}, {"at": 6.0, "action": "scale_out", "se": "se-2"},
                   {"at": 9.0, "action": "scale_in", "se": "se-2"}]}))
    assert [e["t"] for e in events_of(run, "drain.expired")] == [15.0]


def test_scale_out_is_refused_when_no_address_is_left(run_dict):
    run = run_dict(long_lived(**{
        "networks.frontend": {"cidr": "10.10.0.0/29", "gateway": "10.10.0.1"}, "virtual_service.vip": "10.10.0.6",
        "service_engines": [{"name": "se-1", "host": "esx-1"}], "se_group.se_create_delay": 1.0,
        "se_group.max_scaleout_per_vs": 8,
        "events": [{"at": 1.0, "action": "scale_out"}, {"at": 5.0, "action": "scale_out"},
                   {"at": 9.0, "action": "scale_out"}, {"at": 13.0, "action": "scale_out"}]}))
    assert [e["se"] for e in events_of(run, "scale_out.completed")] == ["se-2", "se-3", "se-4"]
    assert "no free address" in events_of(run, "scale_out.refused")[0]["reason"]


def test_the_timeline_keeps_a_bounded_number_of_points_per_series():
    from dataplane.control.timeline import MAX_POINTS, Timeline
    year = 365 * 86400.0
    timeline = Timeline(year)
    for second in range(1, 3 * timeline.bucket + 1):
        timeline.record(float(second), "se-1", 10.0 * (second % 2), 1, second)
        if second > timeline.bucket:
            timeline.record(float(second), "se-2", 50.0, 2, 7)
    summary = timeline.summary()
    assert summary["bucket_s"] == 8760 and len(range(0, int(year), summary["bucket_s"])) <= MAX_POINTS
    assert summary["t"] == [8760.0, 17520.0, 26280.0]
    assert summary["cpu"]["se-1"] == [5.0, 5.0, 5.0] and summary["cpu"]["se-2"] == [None, 50.0, 50.0]
    assert summary["new_flows"]["se-1"] == [8760] * 3 and summary["active_connections"]["se-2"] == [None, 7, 7]


def test_summary_has_a_per_second_timeline_of_each_se(run_dict):
    run = run_dict(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2"]}))
    timeline = run.summary["timeline"]
    assert timeline["bucket_s"] == 1 and timeline["t"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert sum(sum(v) for v in timeline["new_flows"].values()) == run.summary["flows"]["total"]
    assert max(timeline["active_connections"]["se-2"]) > 0
