"""The regression kit's clock discipline and control verbs: settle, advance, owner_of, scale out, failures, wait_for."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from dataplane.clock import Simulator
from conftest import scenario_dict

VIP = "10.10.0.100"
CLIENT = "203.0.113.9"


def syn(net, sport: int, client: str = CLIENT):
    return Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=client, dst=VIP, ttl=63) / \
        TCP(sport=sport, dport=80, flags="S", seq=1000)


def snat_of(net, owner: str, proto=TCP):
    """What the owner sends a server for a client's SYN or datagram: masks say which fields we do not pin."""
    l4 = TCP(dport=8080, flags="S", seq=1000) if proto is TCP else UDP(dport=18001) / (b"x" * 10)
    return net.expect(f"{owner}.backend", Ether(src=net.mac(owner, "backend")) / IP(src=net.ip(owner, "backend"),
                      dst="0.0.0.0", ttl=62) / l4, mask=["eth.dst", "ip.dst", "ip.id", "ip.flags", "tcp.srcport",
                                                         "udp.srcport", "udp.dstport"])


# -- the clock -------------------------------------------------------------------------

def test_the_simulator_steps_and_settles_without_running_timers_beyond_the_frames():
    sim, ran = Simulator(), []
    sim.after(5_000, ran.append, "timer due before the last frame")
    sim.after(10**9, ran.append, "timer due later")
    sim.post(1_000, ran.append, ("frame",))
    sim.post(8_000, ran.append, ("second frame",))
    assert sim.in_flight()
    sim.settle()
    assert ran == ["frame", "timer due before the last frame", "second frame"] and sim.now == 8_000
    assert not sim.in_flight() and sim.peek() == 10**9
    assert sim.step() and ran[-1] == "timer due later" and not sim.step()
    with pytest.raises(AttributeError):
        sim.now = 0


def test_a_udp_flow_keeps_its_nat_entry_across_an_expect_none(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.protocol": "udp", "virtual_service.port": 18000,
                                         "pool.servers": ["10.20.0.101:18001"], "duration": 20.0}))
    datagram = Ether(src=net.mac("gw"), dst=net.mac(net.primary)) / IP(src=CLIENT, dst=VIP, ttl=63) / \
        UDP(sport=40123, dport=18000) / (b"x" * 10)
    net.send("gw.frontend", datagram)
    owner = net.owner_of(datagram)
    first = snat_of(net, owner, UDP)
    net.expect_none("se-2.frontend", ARP(op="is-at", psrc=VIP))  # something that never comes
    net.send("gw.frontend", datagram)
    second = snat_of(net, owner, UDP)
    assert net.now < 1.0, "expect_none settled; it did not run the scenario's timers for 20 s"
    assert UDP(second.frame[34:]).sport == UDP(first.frame[34:]).sport, "the same NAT entry, not a new one"
    assert "new connection" in first.comment and "new connection" not in second.comment


def test_owner_of_answers_right_after_send(dataplane_net):
    net = dataplane_net(scenario_dict())
    owners = set()
    for sport in range(41000, 41020):
        frame = syn(net, sport)
        net.send("gw.frontend", frame)
        owners.add(net.owner_of(frame))
        assert net.owner_of((CLIENT, sport, VIP, 80)) == net.owner_of((CLIENT, sport, VIP, 80, "tcp"))
    assert None not in owners and len(owners) == 4


def test_now_advance_and_run_move_the_clock_only_on_purpose(dataplane_net):
    net = dataplane_net(scenario_dict())
    net.settle()
    assert net.now == pytest.approx(0.00002)  # the gratuitous ARP crossed the frontend; nothing else was due
    with pytest.raises(AttributeError):
        net.now = 5.0
    net.advance(2.5)
    assert net.now == pytest.approx(2.50002)
    net.run(until=4.0)
    assert net.now == 4.0
    with pytest.raises(ValueError, match="cannot run back"):
        net.run(until=3.0)
    net.run()  # no argument: settle: the heartbeats sent at 4.0 land, the next ones (4.1 s) stay due
    assert 4.0 <= net.now < 4.001


# -- control verbs ---------------------------------------------------------------------

def test_scale_out_to_a_named_se_then_new_flows_reach_it(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2"]}))
    assert net.scale_out("se-3") is None
    done = net.wait_for("scale_out.completed")
    assert done["se"] == "se-3" and done["service_engines"] == ["se-1", "se-2", "se-3"]
    assert net.now == pytest.approx(2.0)
    net.discard()
    reached = 0
    for sport in range(42000, 42030):
        frame = syn(net, sport)
        net.send("gw.frontend", frame)
        if net.owner_of(frame) == "se-3":
            steered = Ether(bytes(frame))
            steered[Ether].src, steered[Ether].dst = net.mac("se-1"), net.mac("se-3")
            net.expect("se-3.frontend", steered)
            snat_of(net, "se-3")
            reached += 1
    assert reached > 3


def test_failing_the_primary_promotes_a_secondary_that_announces_the_vip(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2", "se-3"]}))
    net.discard()
    assert net.fail_se("se-1") is None
    failed = net.wait_for("se.failed", se="se-1")
    promoted = net.wait_for("se.promoted")
    # The first heartbeat the dead primary did not send was due at 0.1 s; ten intervals without one
    # (dp_hb_timeout_count x dp_hb_frequency) later its secondaries report it.
    assert failed["t"] == promoted["t"] == pytest.approx(1.1)
    assert failed["detected_by"].endswith("missed 10 data-plane heartbeats")
    new = promoted["se"]
    assert new == "se-2" and net.primary == "se-2"
    garp = Ether(src=net.mac(new), dst="ff:ff:ff:ff:ff:ff") / ARP(op="who-has", hwsrc=net.mac(new), psrc=VIP,
                                                                   hwdst="00:00:00:00:00:00", pdst=VIP)
    seen = net.expect("frontend", garp)
    assert "new primary: primary se-1 failed" in seen.comment


def test_scale_in_drains_and_migrate_moves_the_primary(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2"], "duration": 60.0,
                                         "se_group.vs_scalein_timeout": 5.0}))
    assert net.scale_in("se-2") is None
    assert net.wait_for("drain.expired", se="se-2")["t"] == pytest.approx(5.0)
    assert net.scale_in("se-1") == "the VS would be on 0 SEs (min_scaleout_per_vs = 1)"
    assert net.events("scale_in.refused")[-1]["reason"] == "the VS would be on 0 SEs (min_scaleout_per_vs = 1)"
    assert net.migrate("se-1", "se-3") is None
    net.wait_for("se.promoted", se="se-3")
    assert net.wait_for("migrate.completed")["to"] == "se-3"
    assert net.network.summary()["service_engines"] == ["se-3"]


def test_server_host_and_recovery_verbs(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2"], "duration": 120.0,
                                         "pool.health_monitor": {"send_interval": 2.0, "receive_timeout": 1.0}}))
    assert net.fail_server("10.20.0.102:8080") is None
    down = net.wait_for("server.down", se="se-1")
    assert down["server"] == "10.20.0.102:8080"
    assert net.recover_server("server-2") is None
    assert net.wait_for("server.up", se="se-2")["server"] == "10.20.0.102:8080"
    assert net.fail_host("esx-2") is None
    net.wait_for("se.failed", se="se-2")
    assert net.recover_se("se-2") == "host esx-2 of se-2 is still down"
    assert net.recover_se("se-3") == "se-3 is ready, not failed"


def test_an_administrator_creates_an_se_under_read_access(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1", "se-2", "se-3", "se-4"],
                                         "se_group.access": "read", "se_group.max_scaleout_per_vs": 5,
                                         "se_group.se_create_delay": 3.0}))
    assert "an administrator must create one first" in net.scale_out()
    assert net.create_se("se-5", "esx-1") is None
    net.wait_for("se.create.completed", se="se-5")
    assert net.scale_out() is None
    assert net.wait_for("scale_out.completed")["se"] == "se-5"


def test_verbs_refuse_names_the_scenario_could_not_hold(dataplane_net):
    net = dataplane_net(scenario_dict())
    with pytest.raises(ValueError, match="unknown SE 'se-9'"):
        net.scale_in("se-9")
    with pytest.raises(ValueError, match="not a pool server"):
        net.fail_server("10.20.0.199:8080")
    with pytest.raises(ValueError, match="unknown host 'esx-9'"):
        net.fail_host("esx-9")
    with pytest.raises(ValueError, match="already exists"):
        net.create_se("se-1", "esx-1")


def test_wait_for_fails_with_the_events_logged_meanwhile(dataplane_net):
    net = dataplane_net(scenario_dict(**{"virtual_service.placement": ["se-1"],
                                         "service_engines": [{"name": "se-1", "host": "esx-1"}],
                                         "se_group.se_create_delay": 60.0}))
    net.scale_out()
    with pytest.raises(AssertionError) as failure:
        net.wait_for("scale_out.completed", timeout=5.0)
    message = str(failure.value)
    assert "no scale_out.completed event within 5 s of virtual time" in message
    assert "scale_out.started" in message and "se.create.started" in message and "host=esx-1" in message
    assert net.now == pytest.approx(5.0)
    assert [e["type"] for e in net.events()][:1] == ["vs.placed"]


# -- failure messages ------------------------------------------------------------------

def test_a_failed_expect_compares_only_with_frames_of_the_same_kind(dataplane_net):
    net = dataplane_net(scenario_dict())
    net.discard()
    wanted = Ether(src=net.mac("se-2"), dst=net.mac("gw")) / IP(src=VIP, dst=CLIENT) / TCP(sport=80, dport=9)
    with pytest.raises(AssertionError) as failure:
        net.expect("frontend", wanted)
    message = str(failure.value)
    assert "no eth/ip/tcp frame was seen there to compare with" in message
    assert "nearest frame" not in message, "the gratuitous ARP says nothing about a missing TCP segment"


def test_a_discarded_frame_is_named_as_cleared_by_discard(dataplane_net):
    net = dataplane_net(scenario_dict())
    net.discard()
    garp_from_se2 = Ether(src=net.mac("se-2"), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op="who-has", hwsrc=net.mac("se-2"), psrc=VIP, hwdst="00:00:00:00:00:00", pdst=VIP)
    with pytest.raises(AssertionError) as failure:
        net.expect("frontend", garp_from_se2)
    assert "[cleared by discard()]" in str(failure.value)
    assert "already matched by an earlier expect" not in str(failure.value)
