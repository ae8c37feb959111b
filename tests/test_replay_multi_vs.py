"""Replay against several ports and several virtual services (issue 13, item 6): selection by every port a VS
listens on, each flow assigned to one VS (``--map``, else by port when unambiguous, else ``ambiguous_vs``),
per-VS counts in summary.json and the account's ``vs`` column; an IPv6-only VS; the CLI's one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6

from conftest import assert_passes_gate, fields, scenario_dict
from dataplane import cli
from dataplane import scenario as scenario_mod
from dataplane.replay import ReplayOptions, run_replay, synth
from dataplane.replay.input import SKIP_REASONS
from dataplane.replay.options import parse_port_map, parse_vs_map
from test_ipv6 import colliding_macs_scenario
from test_replay_ipv6 import http6

T0 = 1_700_000_000 * 10**9
WEB_SERVER, API_SERVER = "192.0.2.10", "192.0.2.20"      # the recorded servers
WEB_VIP, API_VIP = "10.10.0.100", "10.10.0.101"
WEB_POOL, API_POOL = {"10.20.0.101", "10.20.0.102"}, {"10.20.0.111"}
REQUEST = b"GET / HTTP/1.1\r\nHost: multi\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
SYN_FILTER = "tcp.flags.syn == 1 && tcp.flags.ack == 0 && !vxlan"


def http(client: str, cport: int, server: str, sport: int, start: int, family=IP) -> list[tuple[int, bytes]]:
    """One recorded HTTP connection: handshake, request, response, FIN exchange (8 packets)."""
    return http6(client, cport, server, start, family=family, server_port=sport, request=REQUEST)


def capture(tmp_path: Path, name: str, *flows: tuple) -> Path:
    """A capture of ``flows`` ((client, client port, server, server port[, family]), one after the other)."""
    records = []
    for i, flow in enumerate(flows):
        records += http(*flow[:4], start=T0 + i * 10**7, **({"family": flow[4]} if len(flow) > 4 else {}))
    path = tmp_path / name
    synth.write_pcap(path, records)
    assert_passes_gate(path)
    return path


def two_vs_toml(api_ports=(8443,)) -> str:
    """vs-web (ports 80 and 443, two pool servers on 8080) and vs-api (``api_ports``, one pool server on 9443)."""
    engines = "".join(f'[[service_engines]]\nname = "se-{i}"\nhost = "esx-{i}"\n' for i in range(1, 5))
    return f"""name = "replay-two-vs"\ncloud = "vmware"\nseed = 3\nduration = 2.0
[networks.frontend]\ncidr = "10.10.0.0/24"\ngateway = "10.10.0.1"
[networks.backend]\ncidr = "10.20.0.0/24"
{engines}[traffic]\nclients = ["198.51.100.0/28"]
[[virtual_services]]\nname = "vs-web"\nvip = "{WEB_VIP}"\nports = [80, 443]\nprotocol = "tcp"
placement = ["se-1", "se-2"]\nnetwork_profile = "tcp-fast-path"
[virtual_services.pool]\nservers = ["10.20.0.101:8080", "10.20.0.102:8080"]
[[virtual_services]]\nname = "vs-api"\nvip = "{API_VIP}"\nports = {list(api_ports)}\nprotocol = "tcp"
placement = ["se-3", "se-4"]\nnetwork_profile = "tcp-fast-path"
[virtual_services.pool]\nservers = ["10.20.0.111:9443"]
"""


def two_vs(tmp_path: Path, api_ports=(8443,)) -> Path:
    path = tmp_path / f"two-vs-{'-'.join(map(str, api_ports))}.toml"
    path.write_text(two_vs_toml(api_ports))
    return path


def replay(tmp_path: Path, capture_path: Path, scenario, name: str = "out", **options) -> dict:
    out = tmp_path / name
    if isinstance(scenario, Path):
        scenario = scenario_mod.load(scenario)
    summary = run_replay(scenario, capture_path, out, ReplayOptions(**options))
    assert_passes_gate(out / "capture.pcapng")
    summary["_out"] = out
    return summary


def rows(summary: dict, name: str) -> list[dict]:
    with open(summary["outputs"][name], newline="") as handle:
        return list(csv.DictReader(handle))


def syns(summary: dict, segment: str) -> set[tuple[str, str]]:
    """(destination address, port) of every SYN on ``segment`` (health probes included on the backend)."""
    found = fields(summary["_out"] / "capture.pcapng", ["ip.dst", "tcp.dstport"],
                   f'frame.interface_name == "{segment}" && {SYN_FILTER}')
    return {(dst, port) for dst, port in found}


def server_ips(summary: dict) -> dict[str, str]:
    """Pool server node name -> its backend address."""
    return {name: next(iter(nics.values()))["ip"] for name, nics in summary["address_plan"].items()
            if name.startswith("server-")}


# -- every port of the virtual service -------------------------------------------------------

def test_flows_to_each_port_of_a_multi_port_vs_replay_each_to_its_own_port(tmp_path):
    data = scenario_dict(duration=2.0)
    del data["virtual_service"]["port"]
    data["virtual_service"]["ports"] = [80, 443]
    scenario = scenario_mod.parse(data, "ports.toml")
    path = capture(tmp_path, "ports.pcap", ("203.0.113.5", 40000, WEB_SERVER, 80),
                   ("203.0.113.5", 40001, WEB_SERVER, 443), ("203.0.113.5", 40002, WEB_SERVER, 8080))
    summary = replay(tmp_path, path, scenario)
    rep = summary["replay"]
    assert rep["flows"] == {"total": 2, "completed": 2, "open_at_end": 0, "reset": 0, "stalled": 0}
    assert summary["skipped"] == {"not_selected": 8}          # 8080: no port of the VS
    assert rep["flows_by_vs"] == {"vs-web": 2}
    # Each flow keeps its recorded server port toward the VIP: 443 arrives at VIP:443, not VIP:80.
    assert {(dst, port) for dst, port in syns(summary, "frontend") if dst == "10.10.0.100"} == \
        {("10.10.0.100", "80"), ("10.10.0.100", "443")}
    flows = rows(summary, "replay-flows.csv")
    assert sorted(f["recorded"].rsplit(":", 1)[1] for f in flows) == ["443", "80"]
    assert {f["vs"] for f in flows} == {"vs-web"}


def test_port_map_to_one_port_of_a_multi_port_vs(tmp_path):
    data = scenario_dict(duration=2.0)
    del data["virtual_service"]["port"]
    data["virtual_service"]["ports"] = [80, 443]
    path = capture(tmp_path, "p8443.pcap", ("203.0.113.5", 40000, WEB_SERVER, 8443))
    summary = replay(tmp_path, path, scenario_mod.parse(data, "ports.toml"), port_map=((8443, 443),))
    assert summary["replay"]["flows"]["completed"] == 1 and summary["skipped"] == {}
    assert ("10.10.0.100", "443") in syns(summary, "frontend")


# -- several virtual services ------------------------------------------------------------------

def test_flows_are_assigned_by_port_when_one_vs_listens_on_it(tmp_path):
    path = capture(tmp_path, "by-port.pcap", ("203.0.113.5", 40000, WEB_SERVER, 80),
                   ("203.0.113.6", 40001, API_SERVER, 8443), ("203.0.113.7", 40002, WEB_SERVER, 443))
    summary = replay(tmp_path, path, two_vs(tmp_path))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 3 and summary["skipped"] == {}
    assert rep["flows_by_vs"] == {"vs-web": 2, "vs-api": 1}
    front = syns(summary, "frontend")
    assert {(WEB_VIP, "80"), (WEB_VIP, "443"), (API_VIP, "8443")} <= front
    ips = server_ips(summary)
    by_port = {f["recorded"].rsplit(":", 1)[1]: f for f in rows(summary, "replay-flows.csv")}
    assert by_port["80"]["vs"] == by_port["443"]["vs"] == "vs-web" and by_port["8443"]["vs"] == "vs-api"
    assert ips[by_port["80"]["server"]] in WEB_POOL and ips[by_port["443"]["server"]] in WEB_POOL
    assert ips[by_port["8443"]["server"]] in API_POOL
    # Each VS's pool server plays the recorded server side: the SE connects to it on its own port.
    back = syns(summary, "backend")
    assert any(dst in API_POOL and port == "9443" for dst, port in back)


def test_map_sends_each_recorded_server_to_its_vs_and_pool(tmp_path):
    # Both VSs listen on 443: by port the flows are ambiguous, --map says which server is which VS.
    path = capture(tmp_path, "two-servers.pcap", ("203.0.113.5", 40000, WEB_SERVER, 443),
                   ("203.0.113.6", 40001, API_SERVER, 443), ("203.0.113.7", 40002, API_SERVER, 443))
    scenario = two_vs(tmp_path, api_ports=(443, 8443))
    summary = replay(tmp_path, path, scenario, "mapped", vs_map=parse_vs_map(
        [f"{WEB_SERVER}=vs-web", f"{API_SERVER}=vs-api"], ["vs-web", "vs-api"]))
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 3 and summary["skipped"] == {}
    assert rep["flows_by_vs"] == {"vs-web": 1, "vs-api": 2}
    front = syns(summary, "frontend")
    assert (WEB_VIP, "443") in front and (API_VIP, "443") in front
    ips = server_ips(summary)
    flows = rows(summary, "replay-flows.csv")
    for flow in flows:
        recorded_server = flow["recorded"].split(">")[1].rsplit(":", 1)[0]
        if recorded_server == WEB_SERVER:
            assert flow["vs"] == "vs-web" and ips[flow["server"]] in WEB_POOL, flow
        else:
            assert flow["vs"] == "vs-api" and ips[flow["server"]] in API_POOL, flow
    # The per-frame account names each frame's VS (the new last column; the columns before keep their order).
    frames = rows(summary, "replay.csv")
    assert list(frames[0]) == ["loop", "frame", "time_ns", "action", "output_frame", "output_time_ns", "reason",
                               "detail", "flow", "se", "vs"]
    assert [f["vs"] for f in frames] == ["vs-web"] * 8 + ["vs-api"] * 16
    assert list(flows[0])[-1] == "vs"
    # The SEs of each VS carry its flows: vs-api is placed on se-3 and se-4 only.
    assert {f["se"] for f in flows if f["vs"] == "vs-api"} <= {"se-3", "se-4"}
    assert {f["se"] for f in flows if f["vs"] == "vs-web"} <= {"se-1", "se-2"}

    # Without --map the same flows are ambiguous: skipped with their own reason, counted.
    plain = replay(tmp_path, path, scenario, "plain")
    assert plain["replay"]["flows"]["total"] == 0
    assert plain["skipped"] == {"ambiguous_vs": 24} == plain["replay"]["skipped"]
    assert plain["replay"]["flows_by_vs"] == {"vs-web": 0, "vs-api": 0}
    assert {r["reason"] for r in rows(plain, "replay.csv")} == {"ambiguous_vs"}
    assert {r["vs"] for r in rows(plain, "replay.csv")} == {""}
    assert "use --map" in SKIP_REASONS["ambiguous_vs"]


def test_only_ambiguous_flows_are_skipped_and_map_to_a_vs_on_another_port(tmp_path):
    # 443 is ambiguous; 80 is vs-web's alone, 8443 vs-api's alone.  A --map to a VS that does not listen on
    # the recorded port sends the flow to that VS's first port.
    path = capture(tmp_path, "mixed.pcap", ("203.0.113.5", 40000, WEB_SERVER, 443),
                   ("203.0.113.6", 40001, WEB_SERVER, 80), ("203.0.113.7", 40002, API_SERVER, 8443))
    scenario = two_vs(tmp_path, api_ports=(443, 8443))
    summary = replay(tmp_path, path, scenario)
    assert summary["skipped"] == {"ambiguous_vs": 8}
    assert summary["replay"]["flows_by_vs"] == {"vs-web": 1, "vs-api": 1}
    mapped = replay(tmp_path, path, scenario, "mapped",
                    vs_map=parse_vs_map([f"{API_SERVER}=vs-web"], ["vs-web", "vs-api"]))
    assert mapped["skipped"] == {"ambiguous_vs": 8}
    assert mapped["replay"]["flows_by_vs"] == {"vs-web": 2, "vs-api": 0}
    assert (WEB_VIP, "80") in syns(mapped, "frontend") and (API_VIP, "8443") not in syns(mapped, "frontend")


def test_cli_map_replays_and_prints_per_vs_counts(tmp_path, capsys):
    path = capture(tmp_path, "cli.pcap", ("203.0.113.5", 40000, WEB_SERVER, 443),
                   ("203.0.113.6", 40001, API_SERVER, 443))
    out = tmp_path / "cli"
    code = cli.main(["replay", str(path), "--scenario", str(two_vs(tmp_path, api_ports=(443,))), "--out", str(out),
                     "--map", f"{WEB_SERVER}=vs-web", "--map", f"{API_SERVER}=vs-api"])
    assert code == 0
    assert "replayed flows by virtual service: vs-web 1, vs-api 1" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replay"]["flows_by_vs"] == {"vs-web": 1, "vs-api": 1}
    assert summary["replay"]["flows"]["completed"] == 2
    assert_passes_gate(out / "capture.pcapng")


@pytest.mark.parametrize("args,needle", [
    (["--map", "192.0.2.10=vs-nowhere"], "--map: no virtual service 'vs-nowhere' in the scenario (it has vs-web, "
                                         "vs-api)"),
    (["--map", "192.0.2.300=vs-web"], "--map: bad address '192.0.2.300'"),
    (["--map", "2001:db8::zz=vs-web"], "--map: bad address '2001:db8::zz'"),
    (["--map", "192.0.2.10"], "--map: expected SERVER_IP=VS_NAME"),
    (["--map", "192.0.2.10=vs-web", "--map", "192.0.2.10=vs-api"], "--map: 192.0.2.10 is mapped twice"),
    (["--map", "2001:db8::1=vs-web", "--map", "[2001:db8:0::1]=vs-web"], "--map: 2001:db8::1 is mapped twice"),
    (["--map", "[192.0.2.10]=vs-web"], "--map: bad address '[192.0.2.10]'"),      # brackets are for IPv6
    (["--map", "::ffff:192.0.2.10=vs-web"], "--map: bad address '::ffff:192.0.2.10'"),  # would never match
    (["--port-map", "8000:80", "--port-map", "8000:443"], "--port-map: port 8000 is mapped twice (to 80 and to 443)"),
    (["--port-map", "8000"], "--port-map: '8000' needs a TO port: the virtual services listen on 80, 443, 8443"),
    (["--port-map", "8000:81"], "--port-map: '8000:81' maps to port 81, but the virtual services listen on "
                                "80, 443, 8443"),
])
def test_bad_map_and_port_map_are_one_line_and_exit_2(tmp_path, capsys, args, needle):
    path = capture(tmp_path, "any.pcap", ("203.0.113.5", 40000, WEB_SERVER, 80))
    out = tmp_path / "bad"
    assert cli.main(["replay", str(path), "--scenario", str(two_vs(tmp_path)), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dataplane: ") and needle in err, err
    assert not out.exists()


def test_port_map_to_may_be_left_out_only_when_the_scenario_listens_on_one_port():
    assert parse_port_map("8000", [(80, 80)]) == (8000, 80)
    assert parse_port_map("8000:443", [(80, 80), (443, 443)]) == (8000, 443)
    assert parse_port_map("8000:1005", [(1000, 1010)]) == (8000, 1005)      # a port inside a range
    with pytest.raises(ValueError, match="needs a TO port: the virtual services listen on 1000-1010"):
        parse_port_map("8000", [(1000, 1010)])


def test_ipv6_map_entries_are_read_with_or_without_brackets():
    mapped = parse_vs_map(["[2001:db8::1]=vs-a", "2001:db8::2=vs-b", "192.0.2.1=vs-a"], ["vs-a", "vs-b"])
    assert mapped == ((bytes.fromhex("20010db8" + "00" * 11 + "01"), "vs-a"),
                      (bytes.fromhex("20010db8" + "00" * 11 + "02"), "vs-b"), (bytes((192, 0, 2, 1)), "vs-a"))


# -- a VS with only a vip6 ----------------------------------------------------------------------

def test_an_ipv6_only_vs_skips_ipv4_flows_as_ipv4_no_vip_and_replays_ipv6_ones(tmp_path):
    data = scenario_dict(**{"duration": 2.0, "networks.frontend.cidr6": "2001:db8:10::/64",
                            "networks.frontend.gateway6": "2001:db8:10::1",
                            "networks.backend.cidr6": "2001:db8:20::/64",
                            "virtual_service.vip6": "2001:db8:10::100",
                            "pool.servers": ["[2001:db8:20::101]:8080", "[2001:db8:20::102]:8080"],
                            "traffic.clients": ["2001:db8:99::/64"]})
    del data["virtual_service"]["vip"]
    scenario = scenario_mod.parse(data, "v6-only.toml")
    path = capture(tmp_path, "v6only.pcap", ("203.0.113.5", 40000, WEB_SERVER, 80),
                   ("2001:db8:5::7", 40001, "2001:db8:6::80", 80, IPv6))
    summary = replay(tmp_path, path, scenario)
    assert summary["skipped"] == {"ipv4_no_vip": 8}
    rep = summary["replay"]
    assert rep["flows"]["completed"] == 1 and rep["flows_by_vs"] == {"vs-web": 1}
    (flow,) = rows(summary, "replay-flows.csv")
    assert flow["recorded"] == "[2001:db8:5::7]:40001>[2001:db8:6::80]:80" and flow["vs"] == "vs-web"
    syn = fields(summary["_out"] / "capture.pcapng", ["ipv6.dst", "tcp.dstport"],
                 f'frame.interface_name == "frontend" && {SYN_FILTER} && ipv6.src == 2001:db8:5::7')
    assert syn and {tuple(s) for s in syn} == {("2001:db8:10::100", "80")}


# -- building the network fails -----------------------------------------------------------------

def test_a_scenario_only_the_network_build_refuses_is_one_line_and_exit_2(tmp_path, capsys):
    scenario = colliding_macs_scenario(tmp_path)
    path = capture(tmp_path, "any.pcap", ("203.0.113.5", 40000, WEB_SERVER, 80))
    out = tmp_path / "out"
    assert cli.main(["replay", str(path), "--scenario", str(scenario), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dataplane: {scenario}: ") and "would share the MAC" in err, err
    assert not out.exists() or not any(out.iterdir()), "no output is left behind"
