"""Reasons in every comment and tunnel entropy (issue 14, items 2 and 3)."""

from __future__ import annotations

import re
from collections import defaultdict

from conftest import fields, scenario_dict


def test_client_retransmissions_and_aborts_say_why_on_the_captured_hop(run_dict):
    run = run_dict(scenario_dict(**{
        "virtual_service.placement": ["se-1"], "pool.health_monitor": {"type": "none"}, "duration": 12.0,
        "traffic.requests_per_connection": 3, "traffic.request_interval": 1.0,
        "events": [{"at": 1.0, "action": "fail_server", "server": "10.20.0.101:8080"},
                   {"at": 1.0, "action": "fail_server", "server": "10.20.0.102:8080"}]}))
    routed = [c for (c,) in fields(run.capture, ["frame.comment"],
                                   'frame.interface_name == "frontend" && frame.comment contains "gw route"')]
    retransmits = [c for c in routed if " retransmit " in c]
    assert retransmits and all(re.search(r"\(client-\d+ retransmit (connect #\d+|request \d+ \(200 bytes\)), "
                                         r"no answer for \d+ s\)$", c) for c in retransmits)
    assert {re.search(r"no answer for (\d+) s", c).group(1) for c in retransmits} >= {"1", "3"}, "the timeout doubles"
    aborts = [c for c in routed if " abort " in c]
    assert aborts and all(c.endswith(" without answer)") for c in aborts)
    resets = fields(run.capture, ["frame.comment"], 'frame.interface_name == "frontend" && tcp.flags.reset == 1 '
                                                    '&& eth.src == ' + run.mac("gw"))
    assert resets and all("abort after 5 s without answer" in c for (c,) in resets), "every client RST says why"
    flows = run.summary["flows"]
    assert set(flows["why"]["failed"]) == {"no answer to the SYN in 5 s", "no answer to a request in 5 s"}
    assert sum(flows["why"]["failed"].values()) == flows["failed"] and flows["completed"] == 0


def test_tunnel_source_ports_spread_flows_and_keep_each_flow_on_one(run_dict):
    run = run_dict(scenario_dict(**{"cloud": "openstack-neutron", "duration": 4.0}))
    rows = fields(run.capture, ["udp.srcport", "ip.src", "tcp.srcport", "tcp.dstport"], "vxlan && tcp",
                  "-d", "udp.port==1550,vxlan", "-E", "occurrence=l")
    assert len(rows) > 100
    ports_of_flow = defaultdict(set)
    for sport, inner_src, inner_sport, inner_dport in rows:
        ports_of_flow[(inner_src, inner_sport, inner_dport)].add(int(sport))
    ports = set().union(*ports_of_flow.values())
    assert all(49152 <= port <= 65535 for port in ports)  # RFC 7348, 5: the dynamic range
    assert all(len(seen) == 1 for seen in ports_of_flow.values()), "one inner flow, one outer source port"
    assert len(ports) > len(ports_of_flow) // 2, "flows spread over source ports (ECMP entropy)"
