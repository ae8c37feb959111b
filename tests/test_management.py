"""Control-plane events in the capture (issue 14, item 1): the management network and its syslog frames."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dataplane import scenario as scenario_mod
from dataplane.nodes import management
from dataplane.testing.net import Mask
from dataplane.testing.split import split_capture
from dataplane.wire import syslog
from conftest import capture_now, fields, scenario_dict

QUIET = {"pool.health_monitor": {"type": "none"}, "duration": 40.0}
TWO_SES = {"virtual_service.placement": ["se-1", "se-2"]}


def event_frames(capture) -> list[list[str]]:
    return fields(capture, ["frame.time_relative", "ip.src_host", "ip.dst_host", "syslog.level", "syslog.hostname",
                            "syslog.msg", "frame.comment"], 'frame.interface_name == "controller"',
                  "-N", "n", "-o", "nameres.use_external_name_resolver:FALSE")


def json_of(text: str) -> dict:
    return json.loads(text[text.index("{"):])


def test_every_event_is_one_dissected_syslog_frame_at_its_time(run_dict):
    run = run_dict(scenario_dict(**{"duration": 20.0, "events": [
        {"at": 4.0, "action": "scale_in", "se": "se-4"},
        {"at": 8.0, "action": "fail_server", "server": "10.20.0.101:8080"}]}))
    rows = event_frames(run.capture)
    assert [json_of(msg)["type"] for *_, msg, _ in rows] == ["vs.placed", "scale_in.started", "server.failed"]
    assert len(rows) == len(run.events)
    broadcast = str(scenario_mod.networks.MANAGEMENT_CHOICES[0].broadcast)
    for (time, src, dst, level, host, msg, comment), event in zip(rows, run.events):
        assert float(time) == pytest.approx(event["t"], abs=1e-9)
        assert src == "controller" and host == "controller"
        assert json_of(msg) == event and json_of(comment) == event
        assert int(level) == management.severity(event["type"])
        about = event.get("se") or event.get("primary") or "all SEs"
        assert dst == (broadcast if about == "all SEs" else f"{about}-mgmt")
        assert comment.startswith(f"controller syslog to {about}: ")
    levels = [int(level) for _, _, _, level, _, _, _ in rows]
    assert levels == [syslog.INFORMATIONAL, syslog.INFORMATIONAL, syslog.WARNING]
    # Wireshark's own conversation statistics list the controller talking to the SEs' management NICs.
    conversations = fields(run.capture, ["frame.number"], "udp.port == 514 && ip.src == " + run.ip("controller", "eth0"))
    assert len(conversations) == len(rows)


def test_an_event_about_a_missing_or_failed_se_goes_to_every_se(dataplane_net, tmp_path):
    net = dataplane_net(scenario_dict(**QUIET, **TWO_SES, **{"se_group.hosts": ["esx-1", "esx-2", "esx-3"]}))
    net.advance(1.0)
    net.fail_se("se-2")
    net.wait_for("se.failed", se="se-2")
    net.create_se("se-9", "esx-3")
    net.wait_for("se.create.completed", se="se-9")
    net.settle()  # the frame that tells se-9 is still on the wire when the event is logged
    rows = {json_of(msg)["type"]: (dst, comment) for _, _, dst, _, _, msg, comment in
            event_frames(capture_now(net, tmp_path))}
    broadcast = str(net.network.scenario.networks["management"].cidr.broadcast)
    assert rows["se.failed"] == (broadcast, rows["se.failed"][1]) and "to all SEs: " in rows["se.failed"][1]
    assert rows["se.create.started"][0] == broadcast, "se-9 does not exist yet"
    assert rows["se.create.completed"][0] == "se-9-mgmt"
    ports = {name: net.network.nodes[name].nics["management"].node for name in ("se-1", "se-2", "se-9")}
    # se-1: vs.placed, then the two broadcasts; se-2 was down for them; se-9 heard of its own creation.
    assert {name: port.messages for name, port in ports.items()} == {"se-1": 3, "se-2": 0, "se-9": 1}


def test_the_fixture_leaves_events_to_wait_for_but_can_expect_them(dataplane_net):
    net = dataplane_net(scenario_dict(**QUIET, **TWO_SES))
    net.expect_no_other(ignore=["arp"])  # the vs.placed syslog frame is not a data-plane frame
    net.scale_in("se-2")
    to_se2 = (Ether(src=net.mac("controller", "eth0"), dst=net.mac("se-2", "management")) /
              IP(src=net.ip("controller", "eth0"), dst=net.ip("se-2", "management"), flags="DF") /
              UDP(sport=514, dport=514) / b"<134>1 2026-01-01T00:00:00.000020Z controller dataplane - scale_in.started")
    net.expect("controller", Mask(to_se2, ["ip.id", "ip.len", "ip.checksum", "udp.len", "udp.chksum"],
                                  ignore_extra_bytes=True))


def test_split_by_se_keeps_the_events_sent_to_that_se(run_dict, tmp_path):
    run = run_dict(scenario_dict(**{"events": [{"at": 2.0, "action": "scale_in", "se": "se-3"}]}))
    split_capture(run.capture, "se", tmp_path / "by-se")
    to_se3 = fields(tmp_path / "by-se" / "se-3.pcapng", ["syslog.msg"], "syslog")
    assert {json_of(m)["type"] for (m,) in to_se3} >= {"scale_in.started"}
    assert all(json_of(m).get("se") == "se-3" for (m,) in to_se3)


def test_management_addresses_come_from_the_scenario_or_a_free_default():
    given = scenario_mod.parse(scenario_dict(**{"networks.management": {"cidr": "10.99.0.0/24"}}), "t.toml")
    assert str(given.networks["management"].cidr) == "10.99.0.0/24"
    # The first default overlaps these clients: the next one is taken.
    moved = scenario_mod.parse(scenario_dict(**{"traffic.clients": ["172.31.0.0/16"]}), "t.toml")
    assert str(moved.networks["management"].cidr) == str(scenario_mod.networks.MANAGEMENT_CHOICES[1])


@pytest.mark.parametrize("management, message", [
    ({"cidr": "10.20.0.0/16"}, "networks.management.cidr: 10.20.0.0/16 overlaps networks.backend (10.20.0.0/24)"),
    ({"cidr": "10.99.0.0/24", "gateway": "10.99.0.1"}, "networks.management.gateway: not a key of the management "
                                                        "network: it is IPv4 and nothing is routed to it"),
    ({"cidr": "10.99.0.0/30"}, "networks.management: 10.99.0.0/30 has room for 1 SE(s) besides its other hosts; "
                               "4 listed"),
])
def test_bad_management_networks_are_named(management, message):
    with pytest.raises(scenario_mod.ScenarioError) as error:
        scenario_mod.parse(scenario_dict(**{"networks.management": management}), "t.toml")
    assert str(error.value) == f"t.toml: {message}"


def test_a_long_event_is_cut_to_one_frame():
    text = json.dumps({"t": 1.0, "type": "x", "note": "y" * 3000})
    message = syslog.message(syslog.INFORMATIONAL, 0, "controller", "dataplane", "x", text)
    assert len(message) == syslog.MAX_MESSAGE and message.startswith(b"<134>1 1970-01-01T00:00:00.000000Z ")
    assert syslog.message(4, 1_500_000, "a b", "", "m" * 40, "") == (
        b"<132>1 1970-01-01T00:00:00.001500Z ab - - " + b"m" * 32 + b" - ")
