"""Hostile input at the command line and in scenario files (issue 17): one line and exit 2, or a bounded run.

Each case below is one that used to end in a traceback, a run that never
ends, unbounded memory or a file outside the output folder.  Cases run
in-process through ``dataplane.cli.main`` where that is enough, and as a
real subprocess where the process itself is the point (signals, a FIFO).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import dataplane
from conftest import scenario_dict
from dataplane import cli
from dataplane.emulation import build
from dataplane.l2.capture import EPOCH_NS
from dataplane.scenario import MAX_SCENARIO_BYTES, ScenarioError, Server, parse
from dataplane.testing.check import check_capture
from dataplane.wire import frames
from dataplane.wire.pcapng import PcapngWriter

DEMO = Path(dataplane.__file__).parent / "scenarios" / "demo.toml"


def small_scenario(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    """The demo without its events, 8 s long, with textual (old, new) replacements."""
    text = DEMO.read_text().split("[[events]]")[0].replace("duration = 170.0", "duration = 8.0")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    status = cli.main(list(args))
    return status, capsys.readouterr().err.splitlines()


def assert_one_line_exit_2(capsys, args, *fragments: str) -> str:
    status, lines = run_cli(capsys, *args)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("dataplane: ") and "Traceback" not in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ scenario values

HOSTILE_VALUES = {
    "duration_1e300": (("duration = 8.0", "duration = 1e300"), "duration: 1e+300 is out of range 1 µs..1 year"),
    "duration_1e999": (("duration = 8.0", "duration = 1e999"), "duration: must be a finite number, got inf"),
    "duration_1e9": (("duration = 8.0", "duration = 1e9"), "duration: 1,000,000,000 is out of range 1 µs..1 year"),
    "rebalance_1e300": (('access = "write"', 'access = "write"\nauto_rebalance_interval = 1e300'),
                        "se_group.auto_rebalance_interval: 1e+300 is out of range 1 µs..1 year"),
    "rebalance_1e-300": (('access = "write"', 'access = "write"\nauto_rebalance_interval = 1e-300'),
                         "se_group.auto_rebalance_interval: 1e-300 is out of range 1 µs..1 year"),
    "rate_1e-300": (("new_connections_per_second = 3", "new_connections_per_second = 1e-300"),
                    "traffic.new_connections_per_second: 1e-300 is out of range 0 or 1e-06..1,000,000 /s"),
    "send_interval_1e-10": (("send_interval = 5.0", "send_interval = 1e-10"),
                            "pool.health_monitor.send_interval: 1e-10 is out of range 1 µs..1 year"),
    "name_70k": (('name = "demo"', f'name = "{"n" * 70_000}"'), "name: 70,000 bytes long (UTF-8), at most 255"),
    "http_request_70k": (('type = "tcp"', f'type = "http"\nhttp_request = "GET /{"x" * 70_000} HTTP/1.0"'),
                         "pool.health_monitor.http_request: 70,014 bytes long (UTF-8), at most 1,456"),
    "http_request_control": (('type = "tcp"', 'type = "http"\nhttp_request = "GET /\\u0007\\u001b[2J HTTP/1.0"'),
                             "pool.health_monitor.http_request: 'GET /\\x07\\x1b[2J HTTP/1.0' holds control "
                             "character U+0007"),
    "http_request_bare_lf": (('type = "tcp"', 'type = "http"\nhttp_request = "GET / HTTP/1.1\\nHost: x"'),
                             "pool.health_monitor.http_request: 'GET / HTTP/1.1\\nHost: x' holds control character "
                             "U+000A (only CR LF between lines)"),
    "vs_name_newline": (('name = "vs-web"', 'name = "vs\\nweb"'),
                        "virtual_service.name: 'vs\\nweb' holds control character U+000A"),
    "multicast_frontend": (('cidr = "10.10.0.0/24"\ngateway = "10.10.0.1"',
                            'cidr = "224.0.0.0/24"\ngateway = "224.0.0.1"'),
                           "networks.frontend.cidr: 224.0.0.0/24 is multicast (224.0.0.0/4): hosts cannot use it"),
    "broadcast_frontend": (('cidr = "10.10.0.0/24"\ngateway = "10.10.0.1"',
                            'cidr = "255.255.255.255/32"\ngateway = "255.255.255.255"'),
                           "networks.frontend.cidr: 255.255.255.255/32 is the limited broadcast address"),
    "reserved_backend": (('cidr = "10.20.0.0/24"', 'cidr = "240.20.0.0/24"'),
                         "networks.backend.cidr: 240.20.0.0/24 is reserved (240.0.0.0/4)"),
    "link_local_frontend": (('cidr = "10.10.0.0/24"\ngateway = "10.10.0.1"',
                             'cidr = "169.254.10.0/24"\ngateway = "169.254.10.1"'),
                            "networks.frontend.cidr: 169.254.10.0/24 is link-local (169.254.0.0/16): the VIP must be "
                            "routable"),
    "loopback_clients": (('clients = ["198.51.100.0/27"]', 'clients = ["127.0.0.0/8"]'),
                         "traffic.clients[0]: 127.0.0.0/8 is loopback (127.0.0.0/8): hosts cannot use it"),
    "this_network_clients": (('clients = ["198.51.100.0/27"]', 'clients = ["0.0.0.0/8"]'),
                             "traffic.clients[0]: 0.0.0.0/8 is 'this network' (0.0.0.0/8)"),
    "half_the_internet": (('clients = ["198.51.100.0/27"]', 'clients = ["128.0.0.0/1"]'),
                          "traffic.clients[0]: 128.0.0.0/1 contains multicast (224.0.0.0/4), which hosts cannot use"),
    "link_local_clients": (('clients = ["198.51.100.0/27"]', 'clients = ["169.254.0.0/24"]'),
                           "traffic.clients[0]: 169.254.0.0/24 is link-local (169.254.0.0/16): hosts cannot use it"),
    "arabic_indic_port": (('"10.20.0.103:8080"', '"10.20.0.103:\u0668\u0660"'),
                          "pool.servers[2]: expected \"ip:port\" or \"[ipv6]:port\", got '10.20.0.103:\u0668\u0660'"),
    "arabic_indic_prefix": (('clients = ["198.51.100.0/27"]', 'clients = ["198.51.100.0/\u0662\u0667"]'),
                            "traffic.clients[0]: '198.51.100.0/\u0662\u0667' is not a network in CIDR notation"),
    "seed_2_64": (("seed = 7", "seed = 18446744073709551616"),
                  "seed: 18,446,744,073,709,551,616 is out of range 0..18,446,744,073,709,551,615"),
    "seed_4000_digits": (("seed = 7", f"seed = {'9' * 4000}"),
                         "seed: an integer of 4000 digits is out of range"),
    "unknown_key_of_a_megabyte": (('name = "demo"', f'name = "demo"\n"{"k" * 1_000_000}" = 1'),
                                  "'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk'...: unknown key; expected one of: name,"),
}


@pytest.mark.parametrize("change, message", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_hostile_scenario_value_is_one_line_exit_2_and_no_output_folder(tmp_path, capsys, change, message):
    out = tmp_path / "out"
    line = assert_one_line_exit_2(capsys, ["run", str(small_scenario(tmp_path, change)), "--out", str(out)],
                                  f"s.toml: {message}")
    assert len(line) < 300
    assert not out.exists()


def test_a_year_is_the_longest_duration_and_one_microsecond_the_shortest_interval():
    year = 365 * 86400
    assert parse(scenario_dict(duration=float(year))).duration == year
    assert parse(scenario_dict(duration=1e7)).duration == 1e7   # 115 days: long, but bounded
    with pytest.raises(ScenarioError, match=r"duration: 31,536,001 is out of range 1 µs\.\.1 year$"):
        parse(scenario_dict(duration=year + 1))
    assert parse(scenario_dict(**{"pool.health_monitor": {"send_interval": 2e-6, "receive_timeout": 1e-6}}))
    with pytest.raises(ScenarioError, match="receive_timeout: 5e-07 is out of range 1 µs..1 year"):
        parse(scenario_dict(**{"pool.health_monitor": {"send_interval": 1e-6, "receive_timeout": 5e-7}}))


@pytest.mark.parametrize("text, message", [
    ("a = " + "[" * 5000 + "]" * 5000, "TOML syntax error: arrays or inline tables nested too deeply"),
    ("a = " + "{b = " * 5000 + "1" + "}" * 5000, "TOML syntax error: arrays or inline tables nested too deeply"),
    ('name = "x"\nseed = ' + "7" * 5000, "TOML syntax error: integer of more than 4,300 digits (at line 2, column 8)"),
    ("\xff", "not UTF-8 text (byte 0)"),
], ids=["nested-arrays", "nested-inline-tables", "5000-digit-integer", "not-utf8"])
def test_toml_the_parser_cannot_take_is_one_line_naming_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1") if text == "\xff" else text.encode())
    line = assert_one_line_exit_2(capsys, ["run", str(path), "--out", str(tmp_path / "out")], f"{path}: ")
    assert message in line and len(line) < 300
    assert not (tmp_path / "out").exists()


def test_only_a_regular_file_of_bounded_size_is_read(tmp_path, capsys):
    assert_one_line_exit_2(capsys, ["run", "/dev/zero"],
                           "/dev/zero: cannot read: a character device, not a regular file")
    assert_one_line_exit_2(capsys, ["run", str(tmp_path)], f"{tmp_path}: cannot read")
    big = tmp_path / "big.toml"
    big.write_bytes(b"# padding\n" * (MAX_SCENARIO_BYTES // 10 + 1))
    assert_one_line_exit_2(capsys, ["run", str(big)], f"{big}: larger than 4 MiB: not a scenario file")


def test_a_fifo_as_scenario_is_refused_at_once(tmp_path):
    fifo = tmp_path / "scenario.toml"
    os.mkfifo(fifo)
    # A writer never comes: a blocking open would hang until the timeout fails the test.
    result = subprocess.run([sys.executable, "-m", "dataplane", "run", str(fifo)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"dataplane: {fifo}: cannot read: a FIFO, not a regular file"]


def test_sixteen_thousand_servers_are_checked_for_duplicates_in_linear_time(monkeypatch):
    servers = [f"10.64.{i >> 8}.{i & 255}:80" for i in range(1, 16_001)]
    data = scenario_dict(**{"networks.backend": {"cidr": "10.64.0.0/16"}, "pool.servers": servers})
    comparisons = []
    original = Server.__eq__
    monkeypatch.setattr(Server, "__eq__", lambda a, b: comparisons.append(1) or original(a, b))
    assert len(parse(data).pool.servers) == 16_000
    # A list scan compares each server with every earlier one: 128 million comparisons.
    assert len(comparisons) < 16_000
    with pytest.raises(ScenarioError, match=r"pool\.servers\[16000\]: duplicate 10\.64\.0\.1:80$"):
        parse(scenario_dict(**{"networks.backend": {"cidr": "10.64.0.0/16"}, "pool.servers": servers + [servers[0]]}))


def test_a_client_network_of_16_million_addresses_costs_no_memory():
    scenario = parse(scenario_dict(**{"traffic.clients": ["11.0.0.0/8"]}))
    tracemalloc.start()
    try:
        net = build(scenario)
        net.start(traffic=True)
        net.sim.run(until_ns=10**9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert net.vs.flows_by_se  # the clients of the /8 did open connections
    assert peak < 64 * 1024 * 1024, f"{peak:,} bytes"  # a list of its addresses alone would be ~1 GB


# ------------------------------------------------------------------ command line

def test_the_scenario_name_never_leaves_out(tmp_path):
    cwd = tmp_path / "a" / "b" / "c" / "d"
    cwd.mkdir(parents=True)
    scenario = small_scenario(tmp_path, ('name = "demo"', 'name = "../../../../escaped-by-name"'))
    result = subprocess.run([sys.executable, "-m", "dataplane", "run", str(scenario)], capture_output=True,
                            text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (cwd / "out" / "escaped-by-name").iterdir()) == [
        "capture.pcapng", "events.jsonl", "summary.json"]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"s.toml", *(f"a/b/c/d/out/escaped-by-name/{name}"
                                   for name in ("capture.pcapng", "events.jsonl", "summary.json"))}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_termination_signal_cleans_up_like_ctrl_c(tmp_path, signum):
    out = tmp_path / "out"
    out.mkdir()
    (out / "capture.pcapng").write_bytes(b"previous run")
    scenario = small_scenario(tmp_path, ("duration = 8.0", "duration = 3000.0"))
    process = subprocess.Popen([sys.executable, "-m", "dataplane", "run", str(scenario), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size for p in out.glob(".capture.pcapng.*.part")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert stderr.splitlines() == [f"dataplane: terminated by {name}; no output file was replaced"]
    assert [p.name for p in out.iterdir()] == ["capture.pcapng"]
    assert (out / "capture.pcapng").read_bytes() == b"previous run"


def test_a_signal_before_any_output_leaves_no_folder(tmp_path, monkeypatch, capsys):
    from dataplane.emulation import Network

    def terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not turned into a clean exit")

    monkeypatch.setattr(Network, "run", terminated)
    out = tmp_path / "new" / "out"
    status, lines = run_cli(capsys, "run", str(small_scenario(tmp_path)), "--out", str(out))
    assert (status, lines) == (143, ["dataplane: terminated by SIGTERM; no output file was replaced"])
    assert not (tmp_path / "new").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command put the handler back


@pytest.mark.parametrize("args, message", [
    (["run"], "dataplane: run: the following arguments are required: scenario (see 'dataplane run --help')"),
    (["run", "x.toml", "--frobnicate"], "dataplane: unrecognized arguments: --frobnicate (see 'dataplane --help')"),
    (["run", "x.toml", "--seed", "\u0661\u0662"], "dataplane: run: argument --seed: expected an integer in ASCII "
                                                  "digits, got '\u0661\u0662' (see 'dataplane run --help')"),
    (["run", "x.toml", "--seed", "1e5"], "dataplane: run: argument --seed: expected an integer in ASCII digits, "
                                         "got '1e5'"),
    (["diff", "a", "b", "--limit", "\u0661\u0660"], "dataplane: diff: argument --limit: expected an integer in ASCII "
                                                    "digits"),
    (["check"], "dataplane: check: the following arguments are required: capture"),
], ids=["missing-scenario", "unknown-option", "arabic-indic-seed", "float-seed", "arabic-indic-limit", "check"])
def test_usage_errors_are_one_line_and_exit_2(capsys, args, message):
    status, lines = run_cli(capsys, *args)
    assert status == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_an_unknown_command_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "dataplane", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["dataplane: argument COMMAND: invalid choice: 'frobnicate' (choose from "
                                          "'run', 'demo', 'replay', 'diff', 'check', 'split', 'report', "
                                          "'wireshark-profile') (see 'dataplane --help')"]


def test_check_reads_a_comment_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "c.pcapng"
    good = frames.tcp_frame(frames.mac_bytes("02:00:00:00:00:02"), frames.mac_bytes("02:00:00:00:00:01"),
                            frames.ip_bytes("198.51.100.7"), frames.ip_bytes("10.10.0.100"), 40000, 80, 1, 0,
                            frames.SYN)
    bad = bytearray(good)
    bad[24] ^= 0xFF  # the IPv4 header checksum: a finding, so the comment is read back
    with PcapngWriter(path) as writer:
        writer.add_interface("frontend")
        writer.write_frame(0, EPOCH_NS, bytes(bad), "marker-comment")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"marker-comment", b"marker\xffcomment"))
    (finding,) = check_capture(path, use_tshark=True)
    assert finding.number == 1 and "checksum" in finding.message
    assert finding.comment == "marker\ufffdcomment"
    status = cli.main(["check", str(path)])
    assert status == 1 and "marker\ufffdcomment" in capsys.readouterr().out


def test_a_message_lists_a_few_names_not_a_thousand():
    ses = [{"name": f"se-{i}", "host": f"esx-{i}-{'h' * 200}"} for i in range(1, 1001)]
    data = scenario_dict(**{"networks.frontend": {"cidr": "10.10.0.0/20", "gateway": "10.10.0.1"},
                            "networks.backend": {"cidr": "10.20.0.0/20"}, "service_engines": ses,
                            "virtual_service.placement": ["se-1", "se-1001"]})
    with pytest.raises(ScenarioError) as info:
        parse(data, "s.toml")
    assert str(info.value).startswith("s.toml: virtual_service.placement[1]: unknown SE 'se-1001' (service_engines: "
                                      "se-1, se-2, se-3, se-4, se-5, se-6, se-7, se-8, ... (992 more))")
    data["virtual_service"]["placement"] = ["se-1"]
    data["events"] = [{"at": 1.0, "action": "fail_host", "host": "esx-0"}]
    with pytest.raises(ScenarioError) as info:
        parse(data, "s.toml")
    assert "(992 more)" in str(info.value) and len(str(info.value)) < 2000
