"""Scenario loading: the docs/design.md ("Scenario files") example parses with docs/design.md ("Behaviours") defaults, and
every kind of mistake yields one exact, single-line message naming the key."""
import copy
import dataclasses
import tomllib

import pytest
from netaddr import IPAddress, IPNetwork

from dataplane import scenario
from dataplane.scenario import ScenarioError, Server, load, parse, with_seed

# The example from docs/design.md ("Scenario files"), verbatim.
DESIGN_EXAMPLE = '''
name = "vmware-4se"
cloud = "vmware"             # vmware | openstack-nuage | openstack-neutron
seed = 7
duration = 120.0             # seconds of virtual time

[networks.frontend]
cidr = "10.10.0.0/24"
gateway = "10.10.0.1"        # router toward the clients
[networks.backend]
cidr = "10.20.0.0/24"

[se_group]                   # every key optional, defaults as in section 1
max_scaleout_per_vs = 4
vs_scalein_timeout = 30.0
se_tunnel_mode = "auto"
access = "write"
auto_rebalance = false

[[service_engines]]
name = "se-1"
host = "esx-1"

[virtual_service]
name = "vs-web"
vip = "10.10.0.100"
port = 80
protocol = "tcp"
placement = ["se-1"]         # the first is primary

[pool]
lb_algorithm = "least-connections"
servers = ["10.20.0.101:8080", "10.20.0.102:8080"]
[pool.health_monitor]
type = "tcp"                 # tcp | http | icmp | none
send_interval = 10.0

[traffic]
clients = ["198.51.100.0/28"]
new_connections_per_second = 20
requests_per_connection = 1  # > 1 keeps connections open (long-lived flows)
request_interval = 1.0       # seconds between requests on one connection
request_bytes = 200
response_bytes = 1500

[[events]]
at = 10.0
action = "scale_out"         # scale_out | scale_in | migrate | create_se |
                             # fail_se | recover_se | fail_server |
                             # recover_server | fail_host
'''
BASE = tomllib.loads(DESIGN_EXAMPLE)
SRC = "s.toml"
DELETE = object()
FOUR_SES = [{"name": f"se-{i}", "host": f"esx-{(i + 1) // 2}"} for i in range(1, 5)]


def mutate(*changes):
    """A deep copy of BASE with (dotted.path[i], value) changes; DELETE removes a key."""
    data = copy.deepcopy(BASE)
    for path, value in changes:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key = int(last) if last.isdigit() else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return data


def error_of(data) -> str:
    with pytest.raises(ScenarioError) as info:
        parse(data, SRC)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{SRC}: ")
    return msg[len(SRC) + 2:]


# ------------------------------------------------------------------ valid input

def test_design_example_parses_with_given_values():
    s = parse(BASE, "demo.toml")
    assert (s.name, s.cloud, s.seed, s.duration, s.source) == ("vmware-4se", "vmware", 7, 120.0,
                                                                "demo.toml")
    fe, be = s.networks["frontend"], s.networks["backend"]
    assert (fe.name, fe.cidr, fe.gateway) == ("frontend", IPNetwork("10.10.0.0/24"),
                                              IPAddress("10.10.0.1"))
    assert (be.cidr, be.gateway) == (IPNetwork("10.20.0.0/24"), None)
    assert [(e.name, e.host) for e in s.service_engines] == [("se-1", "esx-1")]
    vs = s.virtual_service
    assert (vs.name, vs.vip, vs.port, vs.protocol, vs.placement) == (
        "vs-web", IPAddress("10.10.0.100"), 80, "tcp", ("se-1",))
    assert s.pool.servers == (Server(IPAddress("10.20.0.101"), 8080),
                              Server(IPAddress("10.20.0.102"), 8080))
    assert str(s.pool.servers[0]) == "10.20.0.101:8080"
    assert s.traffic.clients == (IPNetwork("198.51.100.0/28"),)
    assert s.traffic.new_connections_per_second == 20.0
    assert isinstance(s.traffic.new_connections_per_second, float)  # int accepted as float
    assert [(e.at, e.action, e.se) for e in s.events] == [(10.0, "scale_out", None)]


def test_design_example_gets_design_defaults():
    s = parse(BASE)
    assert s.source == "<scenario>"
    assert s.networks["frontend"].latency == 20e-6
    assert dataclasses.asdict(s.se_group) == dict(
        max_scaleout_per_vs=4, min_scaleout_per_vs=1, vs_scalein_timeout=30.0,
        vs_se_scaleout_ready_timeout=25.0, se_tunnel_mode="auto", se_tunnel_udp_port=1550,
        access="write", auto_rebalance=False, auto_rebalance_interval=300.0,
        max_cpu_usage=80.0, min_cpu_usage=30.0, max_vs_per_se=10, capacity_pps=50000.0, ha_mode="elastic-n+m",
        se_create_delay=60.0, se_create_retry_delay=180.0, dp_hb_frequency=0.1,
        dp_hb_timeout_count=10, dp_hb_in_capture=True, controller_heartbeat_interval=10.0,
        controller_heartbeat_miss_limit=6, se_flow_probe_timer=0.1, se_flow_probe_retries=2,
        processing_delay=10e-6, primary_weight=None, ephemeral_portrange_start=4096,
        ephemeral_portrange_end=61440, tcp_half_open_timeout=30.0, hosts=("esx-1",))
    hm = s.pool.health_monitor
    assert (hm.type, hm.send_interval, hm.receive_timeout, hm.successful_checks,
            hm.failed_checks, hm.http_request, hm.http_response_codes) == (
        "tcp", 10.0, 4.0, 2, 2, "GET / HTTP/1.0", ("2xx", "3xx"))
    t = s.traffic
    assert (t.requests_per_connection, t.request_interval, t.request_bytes, t.response_bytes,
            t.start, t.stop, t.max_connections) == (1, 1.0, 200, 1500, 0.0, None, None)


def test_minimal_scenario_defaults():
    data = mutate(("cloud", DELETE), ("seed", DELETE), ("se_group", DELETE),
                  ("events", DELETE), ("pool", {"servers": ["10.20.0.9:80"]}))
    s = parse(data)
    assert (s.cloud, s.seed, s.events, s.se_group) == ("vmware", 1, (), scenario.SeGroup(
        hosts=("esx-1",)))
    assert s.pool.lb_algorithm == "least-connections"
    assert s.pool.health_monitor == scenario.HealthMonitor()


def test_hosts_default_to_se_hosts_in_order_of_first_appearance():
    data = mutate(("service_engines", [{"name": "a", "host": "h2"}, {"name": "b", "host": "h1"},
                                       {"name": "c", "host": "h2"}]),
                  ("virtual_service.placement", ["a"]), ("events", []))
    assert parse(data).se_group.hosts == ("h2", "h1")
    data["se_group"]["hosts"] = ["h9", "h1"]
    assert parse(data).se_group.hosts == ("h9", "h1")


def test_events_sorted_by_time_keeping_file_order_for_ties():
    evs = [{"at": 50.0, "action": "scale_in", "se": "se-9"},
           {"at": 5.0, "action": "fail_server", "server": "10.20.0.102:8080"},
           {"at": 20.0, "action": "create_se", "name": "se-9", "host": "esx-7"},
           {"at": 20.0, "action": "scale_out", "se": "se-9"},
           {"at": 5.0, "action": "fail_host", "host": "esx-7"}]
    # fail_host esx-7 at 5 s happens before esx-7 is known (create_se at 20 s).
    assert error_of(mutate(("events", evs))) == (
        "events[4].host: unknown host 'esx-7' (hosts: esx-1)")
    evs[4]["host"] = "esx-1"
    s = parse(mutate(("events", evs)))
    assert [(e.at, e.action) for e in s.events] == [
        (5.0, "fail_server"), (5.0, "fail_host"), (20.0, "create_se"), (20.0, "scale_out"),
        (50.0, "scale_in")]
    assert s.events[0].server == Server(IPAddress("10.20.0.102"), 8080)


def test_migrate_event_fields():
    data = mutate(("service_engines", FOUR_SES), ("events", [
        {"at": 1, "action": "migrate", "from": "se-1", "to": "se-2"}]))
    (ev,) = parse(data).events
    assert (ev.at, ev.from_se, ev.to_se, ev.se) == (1.0, "se-1", "se-2", None)


def test_dataclasses_are_frozen_and_with_seed_replaces_seed():
    s = parse(BASE, SRC)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3
    s2 = with_seed(s, 42)
    assert (s2.seed, s.seed) == (42, 7) and s2.pool is s.pool
    with pytest.raises(ScenarioError, match=r"^s\.toml: seed: -1 is out of range 0\.\.18,446,744,073,709,551,615$"):
        with_seed(s, -1)


def test_load_reads_file(tmp_path):
    f = tmp_path / "demo.toml"
    f.write_text(DESIGN_EXAMPLE)
    s = load(f)
    assert s.source == str(f) and s == parse(BASE, str(f))


# ---------------------------------------------------------------- file errors

def test_bad_toml_syntax_names_file_and_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nduration = \n')
    with pytest.raises(ScenarioError) as info:
        load(f)
    assert str(info.value) == f"{f}: TOML syntax error: Invalid value (at line 2, column 12)"


def test_unreadable_file(tmp_path):
    f = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError) as info:
        load(f)
    assert str(info.value) == f"{f}: cannot read: No such file or directory"


def test_invalid_toml_error_from_load_is_not_a_traceback_for_bad_values(tmp_path):
    f = tmp_path / "demo.toml"
    f.write_text(DESIGN_EXAMPLE.replace('vip = "10.10.0.100"', 'vip = "10.30.0.5"'))
    with pytest.raises(ScenarioError) as info:
        load(f)
    assert str(info.value) == (
        f"{f}: virtual_service.vip: 10.30.0.5 is outside networks.frontend (10.10.0.0/24)")


def test_newlines_in_values_are_escaped():
    msg = error_of(mutate(("cloud", "vm\nware")))
    assert msg == "cloud: 'vm\\nware' is not one of vmware, openstack-nuage, openstack-neutron"


# -------------------------------------------------------------- value errors

PLACE_2 = [("service_engines", FOUR_SES), ("virtual_service.placement", ["se-1", "se-2"])]

CASES = {
    # unknown keys, with and without a suggestion
    "unknown_key_suggests": ([("se_group.max_scaleout", 4)],
                             "se_group.max_scaleout: unknown key; did you mean "
                             "'max_scaleout_per_vs'?"),
    "unknown_top_key": ([("virtual_servce", {})],
                        "virtual_servce: unknown key; did you mean 'virtual_service'?"),
    "unknown_nested_key": ([("pool.health_monitor.intervall", 3)],
                           "pool.health_monitor.intervall: unknown key; did you mean "
                           "'send_interval'?"),
    "extra_network": ([("networks.dmz", {"cidr": "10.30.0.0/24"})],
                      "networks.dmz: unknown key; expected one of: frontend, backend, management"),
    # missing required keys
    "missing_top": ([("duration", DELETE)], "duration: missing required key"),
    "missing_vip": ([("virtual_service.vip", DELETE)], "virtual_service.vip: missing required key (or vip6, or both)"),
    "missing_gateway": ([("networks.frontend.gateway", DELETE)],
                        "networks.frontend.gateway: missing required key"),
    "missing_backend": ([("networks.backend", DELETE)], "networks.backend: missing required key"),
    "missing_se_host": ([("service_engines[0].host", DELETE)],
                        "service_engines[0].host: missing required key"),
    # wrong types
    "server_not_string": ([("pool.servers[1]", 8080)],
                          'pool.servers[1]: expected "ip:port" string, got integer'),
    "server_no_port": ([("pool.servers[1]", "10.20.0.102")],
                       "pool.servers[1]: expected \"ip:port\" or \"[ipv6]:port\", got '10.20.0.102'"),
    "bool_is_not_int": ([("seed", True)], "seed: expected integer, got boolean"),
    "float_is_not_int": ([("virtual_service.port", 80.0)],
                         "virtual_service.port: expected integer, got float"),
    "string_is_not_number": ([("duration", "60")], "duration: expected number, got string"),
    "int_is_not_bool": ([("se_group.auto_rebalance", 1)],
                        "se_group.auto_rebalance: expected boolean, got integer"),
    "table_expected": ([("traffic", ["x"])], "traffic: expected table, got array"),
    "array_expected": ([("virtual_service.placement", "se-1")],
                       "virtual_service.placement: expected array, got string"),
    "bad_enum": ([("se_group.access", "rw")], "se_group.access: 'rw' is not one of write, read, none"),
    "bad_ip": ([("virtual_service.vip", "10.10.0.300")],
               "virtual_service.vip: '10.10.0.300' is not an IP address"),
    "bad_cidr": ([("traffic.clients", ["198.51.100.0"])],
                 "traffic.clients[0]: '198.51.100.0' is not a network in CIDR notation "
                 "(like 10.10.0.0/24)"),
    "host_bits": ([("networks.backend.cidr", "10.20.0.5/24")],
                  "networks.backend.cidr: 10.20.0.5/24 has host bits set; did you mean 10.20.0.0/24?"),
    "ipv6_network": ([("networks.frontend.cidr", "fd00::/64")],
                     "networks.frontend.cidr: 'fd00::/64' is an IPv6 network: give it as cidr6 (this key is IPv4)"),
    "nan": ([("duration", float("nan"))], "duration: must be a finite number, got nan"),
    # ranges
    "max_scaleout_range": ([("se_group.max_scaleout_per_vs", 65)],
                           "se_group.max_scaleout_per_vs: 65 is out of range 1..64"),
    "duration_positive": ([("duration", 0)], "duration: 0 is out of range 1 µs..1 year"),
    "min_above_max": ([("se_group.min_scaleout_per_vs", 5)],
                      "se_group.min_scaleout_per_vs: must be <= max_scaleout_per_vs (4), got 5"),
    "cpu_min_above_max": ([("se_group.max_cpu_usage", 50), ("se_group.min_cpu_usage", 50)],
                          "se_group.min_cpu_usage: must be < max_cpu_usage (50.0), got 50.0"),
    "receive_timeout": ([("pool.health_monitor.receive_timeout", 10)],
                        "pool.health_monitor.receive_timeout: must be < send_interval (10.0), "
                        "got 10.0"),
    "traffic_stop": ([("traffic.stop", 121)],
                     "traffic.stop: must be after start (0.0) and <= duration (120.0), got 121.0"),
    "empty_servers": ([("pool.servers", [])], "pool.servers: must not be empty"),
    "se_name_shape": ([("service_engines[0].name", "SE_1")],
                      "service_engines[0].name: 'SE_1' is not a valid SE name ([a-z0-9][a-z0-9-]*)"),
    # addresses vs. networks
    "vip_outside_frontend": ([("virtual_service.vip", "10.30.0.5")],
                             "virtual_service.vip: 10.30.0.5 is outside networks.frontend "
                             "(10.10.0.0/24)"),
    "vip_is_gateway": ([("virtual_service.vip", "10.10.0.1")],
                       "virtual_service.vip: 10.10.0.1 is the gateway of networks.frontend"),
    "vip_is_broadcast": ([("virtual_service.vip", "10.10.0.255")],
                         "virtual_service.vip: 10.10.0.255 is the broadcast address of "
                         "networks.frontend (10.10.0.0/24)"),
    "gateway_outside": ([("networks.frontend.gateway", "10.20.0.1")],
                        "networks.frontend.gateway: 10.20.0.1 is outside networks.frontend "
                        "(10.10.0.0/24)"),
    "server_outside_backend": ([("pool.servers", ["10.20.0.101:8080", "10.30.0.1:80"])],
                               "pool.servers[1]: 10.30.0.1 is outside networks.backend "
                               "(10.20.0.0/24)"),
    "networks_overlap": ([("networks.backend.cidr", "10.10.0.0/25")],
                         "networks.backend.cidr: 10.10.0.0/25 overlaps networks.frontend "
                         "(10.10.0.0/24)"),
    "clients_overlap": ([("traffic.clients", ["198.51.100.0/28", "10.20.0.0/16"])],
                        "traffic.clients[1]: 10.20.0.0/16 overlaps networks.backend (10.20.0.0/24)"),
    # duplicates
    "duplicate_se": ([("service_engines", [{"name": "se-1", "host": "a"},
                                           {"name": "se-1", "host": "b"}])],
                     "service_engines[1].name: duplicate SE name 'se-1'"),
    "duplicate_server": ([("pool.servers", ["10.20.0.101:8080", "10.20.0.101:8080"])],
                         "pool.servers[1]: duplicate 10.20.0.101:8080"),
    "duplicate_placement": ([*PLACE_2, ("virtual_service.placement", ["se-2", "se-2"])],
                            "virtual_service.placement[1]: duplicate 'se-2'"),
    # placement
    "placement_unknown_se": ([("virtual_service.placement", ["se-1", "se-9"])],
                             "virtual_service.placement[1]: unknown SE 'se-9' "
                             "(service_engines: se-1)"),
    "placement_above_max": ([*PLACE_2, ("se_group.max_scaleout_per_vs", 1)],
                            "virtual_service.placement: 2 SEs placed but "
                            "se_group.max_scaleout_per_vs is 1"),
    "placement_below_min": ([("se_group.min_scaleout_per_vs", 2)],
                            "virtual_service.placement: 1 SEs placed but "
                            "se_group.min_scaleout_per_vs is 2"),
    "legacy_ha_pair": ([*PLACE_2, ("se_group.ha_mode", "legacy-active-standby")],
                       "service_engines: ha_mode legacy-active-standby needs exactly 2 SEs, got 4"),
    "legacy_ha_three_placed": ([("service_engines", FOUR_SES[:2]), ("virtual_service.placement",
                                                                   ["se-1", "se-2", "se-1"]),
                                ("se_group.ha_mode", "legacy-active-standby")],
                               "virtual_service.placement[2]: duplicate 'se-1'"),
    "ports_reversed": ([("se_group.ephemeral_portrange_start", 9000), ("se_group.ephemeral_portrange_end", 8000)],
                       "se_group.ephemeral_portrange_start: must be <= ephemeral_portrange_end (8000), got 9000"),
    "active_active_two_ses": ([("se_group.ha_mode", "elastic-active-active")],
                              "virtual_service.placement: ha_mode elastic-active-active needs "
                              "at least 2 SEs, got 1"),
    # events
    "event_key_wrong_action": ([("events[0]", {"at": 1, "action": "scale_in", "se": "se-1",
                                               "host": "esx-1"})],
                               "events[0].host: not a key of action 'scale_in'"),
    "event_unknown_key": ([("events[0].sed", "se-1")],
                          "events[0].sed: unknown key; did you mean 'se'?"),
    "event_missing_key": ([("events[0]", {"at": 1, "action": "migrate", "to": "se-1"})],
                          "events[0].from: required by action 'migrate'"),
    "event_migrate_nowhere": ([("events[0]", {"at": 1, "action": "migrate", "from": "se-1"})],
                              "events[0].to: give either to (an SE) or to_new_se = true (the controller creates one)"),
    "event_unknown_se": ([("events", [{"at": 1, "action": "scale_out"},
                                      {"at": 2, "action": "fail_se", "se": "se-7"}])],
                         "events[1].se: unknown SE 'se-7' (not in service_engines and not "
                         "created by an earlier create_se event)"),
    "event_se_created_later": ([("events", [
        {"at": 9, "action": "scale_in", "se": "se-7"},
        {"at": 9, "action": "create_se", "name": "se-7", "host": "esx-2"}])],
        "events[0].se: unknown SE 'se-7' (not in service_engines and not created by an "
        "earlier create_se event)"),
    "event_create_clash": ([("events[0]", {"at": 1, "action": "create_se", "name": "se-1",
                                           "host": "esx-2"})],
                           "events[0].name: SE 'se-1' already exists"),
    "event_unknown_server": ([("events[0]", {"at": 1, "action": "fail_server",
                                             "server": "10.20.0.200:8080"})],
                             "events[0].server: 10.20.0.200:8080 is not a pool server"),
    "event_after_duration": ([("events[0].at", 121)], "events[0].at: 121.0 is after duration (120.0)"),
    "event_bad_action": ([("events[0].action", "scaleout")],
                         "events[0].action: 'scaleout' is not one of scale_out, scale_in, "
                         "migrate, create_se, fail_se, recover_se, fail_server, recover_server, "
                         "fail_host"),
    "migrate_same": ([("events[0]", {"at": 1, "action": "migrate", "from": "se-1",
                                     "to": "se-1"})],
                     "events[0].to: same SE as from ('se-1')"),
    "no_room_for_ses": ([("networks.frontend", {"cidr": "10.10.0.0/29", "gateway": "10.10.0.1"}),
                         ("virtual_service.vip", "10.10.0.6"), ("service_engines", FOUR_SES + [
                             {"name": "se-5", "host": "esx-3"}])],
                        "networks.frontend: 10.10.0.0/29 has room for 4 SE(s) besides its other hosts; 5 listed"),
    "tunnel_port_leaves_room_for_probes": ([("se_group.se_tunnel_udp_port", 65535)],
                                           "se_group.se_tunnel_udp_port: 65535 is out of range 1..65534"),
    "seconds_bounded": ([("se_group.processing_delay", 1e300)],
                        "se_group.processing_delay: 1e+300 is out of range 0..1 s"),
    "two_servers_one_address": ([("pool.servers", ["10.20.0.101:8080", "10.20.0.101:8081"])],
                                "pool.servers[1]: 10.20.0.101 is already pool.servers[0]: one server per address"),
    "client_network_too_small": ([("traffic.clients", ["198.51.100.7/32"])],
                                 "traffic.clients[0]: 198.51.100.7/32 is too small: the router takes one host "
                                 "address and clients need at least one more (use /30 or larger)"),
    "client_networks_overlap": ([("traffic.clients", ["198.51.100.0/28", "198.51.100.0/29"])],
                                "traffic.clients[1]: 198.51.100.0/29 overlaps traffic.clients[0] (198.51.100.0/28)"),
    "udp_request_fits_a_datagram": ([("virtual_service.protocol", "udp"), ("traffic.request_bytes", 5000)],
                                    "traffic.request_bytes: a UDP request must fit one datagram (at most 1472 "
                                    "bytes), got 5000"),
}


@pytest.mark.parametrize("changes, expected", CASES.values(), ids=CASES.keys())
def test_invalid_scenario_message(changes, expected):
    assert error_of(mutate(*changes)) == expected


def test_first_problem_wins_in_a_fixed_order():
    # Sections are checked in a fixed order (virtual_service before pool) ...
    data = mutate(("pool.colour", "red"), ("virtual_service.vip", "10.30.0.5"))
    assert error_of(data) == ("virtual_service.vip: 10.30.0.5 is outside networks.frontend "
                              "(10.10.0.0/24)")
    del data["virtual_service"]["vip"]
    data["virtual_service"]["vip"] = "10.10.0.100"
    assert error_of(data) == ("pool.colour: unknown key; expected one of: lb_algorithm, "
                              "servers, health_monitor")
    # Within a table, unknown keys come before type errors.
    data = mutate(("se_group.access", 1), ("se_group.acess", "write"))
    assert error_of(data) == "se_group.acess: unknown key; did you mean 'access'?"


# ------------------------------------------------------------------ bounds

def _bounded_keys():
    """(dotted path, converter, other changes) for every number, string and array a scenario has."""
    from dataplane.scenario import schema
    from dataplane.scenario.validation import _spec
    sections = [("", {k: v for k, v in schema._TOP.items() if k in ("name", "seed", "duration", "service_engines",
                                                                   "events")}),
                ("networks.frontend", _spec(scenario.Network)), ("networks.backend", _spec(scenario.Network)),
                ("se_group", _spec(scenario.SeGroup)), ("service_engines[0]", _spec(scenario.SeSpec)),
                ("virtual_service", _spec(scenario.VirtualService)), ("pool", _spec(scenario.Pool)),
                ("pool.health_monitor", _spec(scenario.HealthMonitor)), ("traffic", _spec(scenario.Traffic))]
    # An event key is only read for an action that takes it.
    event_for = {"at": {"action": "scale_out"}, "se": {"action": "scale_out"}, "action": None,
                 "from": {"action": "migrate", "to": "se-1"}, "to": {"action": "migrate", "from": "se-1"},
                 "host": {"action": "fail_host"}, "name": {"action": "create_se", "host": "esx-1"}, "server": None,
                 "to_new_se": None, "vs": {"action": "scale_out"}}
    for path, spec in sections:
        for key, (conv, _default) in spec.items():
            yield (f"{path}.{key}" if path else key), conv, []
    for key, (conv, _default) in _spec(scenario.Event).items():
        if event_for[key] is not None:
            yield f"events[0].{key}", conv, [("events[0]", {"at": 1, **event_for[key]})]


def _too_big(conv):
    from dataplane.scenario.validation import _list, _num, _str
    if isinstance(conv, _num):
        return conv.kind(conv.hi * 2 + 1), "is out of range"
    if isinstance(conv, _str):
        return "a" * (conv.max_bytes + 1), f"bytes long (UTF-8), at most {conv.max_bytes:,}"
    if isinstance(conv, _list):
        return [None] * (conv.max_items + 1), f"items; at most {conv.max_items:,}"
    return None, None


BOUNDED = [(path, conv, changes) for path, conv, changes in _bounded_keys() if _too_big(conv)[0] is not None]


@pytest.mark.parametrize("path, conv, changes", BOUNDED, ids=[path for path, _, _ in BOUNDED])
def test_every_number_string_and_array_has_a_ceiling(path, conv, changes):
    value, words = _too_big(conv)
    message = error_of(mutate(*changes, (path, value)))
    assert message.startswith(f"{path}: ") and words in message and len(message) < 200, message


def test_every_number_has_a_range_and_every_key_is_in_the_readme_table():
    from pathlib import Path
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].strip("| `"): line for line in readme.splitlines() if line.startswith("| `")}
    missing = []
    for key, default, accepted in scenario.key_reference():
        expected = f"| `{key}` | {default} | {accepted} |"
        if not rows.get(key, "").startswith(expected):
            missing.append(expected)
        if accepted.startswith(("number", "integer")):
            assert ".." in accepted, f"{key}: a number without a range"
    assert not missing, "README's scenario key table lacks or misstates:\n" + "\n".join(missing)
    assert len(BOUNDED) >= 50
