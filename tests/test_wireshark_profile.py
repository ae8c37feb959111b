"""The 'dataplane' Wireshark profile, installed in a temporary configuration folder and read by tshark -C."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from conftest import scenario_dict
from dataplane.cli import main
from dataplane.tools import colours
from dataplane.tools import wireshark_profile as profile
from dataplane.wire.pcapng import PcapngWriter


def tshark_env(tmp_path: Path, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("WIRESHARK_CONFIG_DIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path / "home"), **extra)
    return env


def tshark(env: dict, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("tshark")
    assert binary, "tshark is required by the test suite (apt-get install tshark)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result


def personal_folder(env: dict) -> Path:
    """Where tshark itself says the personal configuration is: the oracle for config_dir."""
    for line in tshark(env, "-G", "folders").stdout.splitlines():
        if line.startswith("Personal configuration:"):
            return Path(line.split(":", 1)[1].strip())
    raise AssertionError("tshark -G folders names no personal configuration folder")


@pytest.mark.parametrize("case", ["xdg", "default", "legacy", "both", "override"])
def test_the_profile_goes_where_wireshark_looks(tmp_path, case):
    home = tmp_path / "home"
    home.mkdir()
    extra = {}
    if case in ("xdg", "both"):
        extra["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if case in ("legacy", "both"):
        (home / ".wireshark").mkdir()
    if case == "both":
        (tmp_path / "xdg" / "wireshark").mkdir(parents=True)
    if case == "override":
        extra["WIRESHARK_CONFIG_DIR"] = str(tmp_path / "override")
    env = tshark_env(tmp_path, **extra)
    assert profile.config_dir(env) == personal_folder(env)


@pytest.fixture
def installed(tmp_path, monkeypatch, capsys):
    """The profile installed by the command into a fresh configuration folder; the env tshark needs."""
    env = tshark_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "config"))
    for key in ("WIRESHARK_CONFIG_DIR", "XDG_CONFIG_HOME", "HOME"):
        monkeypatch.delenv(key, raising=False)
        if key in env:
            monkeypatch.setenv(key, env[key])
    assert main(["wireshark-profile", "--install"]) == 0
    folder = tmp_path / "config" / "wireshark" / "profiles" / "dataplane"
    assert str(folder) in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["colorfilters", "decode_as_entries", "preferences", "recent"]
    return env


def rows(env: dict, capture: Path, *names: str, extra=()) -> list[list[str]]:
    args = ["-C", "dataplane", "-r", str(capture), *extra, "-T", "fields", "-E", "separator=\t"]
    for name in names:
        args += ["-e", name]
    result = tshark(env, *args)
    assert "filter" not in result.stderr.lower(), result.stderr  # e.g. "Disabling color filter: Could not compile"
    return [line.split("\t") for line in result.stdout.splitlines()]


def neutron(run_dict, **overrides):
    data = scenario_dict(**{"cloud": "openstack-neutron", "duration": 2.0, **overrides})
    return run_dict(data).capture


def test_tshark_decodes_the_tunnel_with_the_profile_and_no_d(installed, run_dict):
    capture = neutron(run_dict)
    with_profile = rows(installed, capture, "frame.number", extra=("-Y", "vxlan"))
    with_d = [line.split("\t") for line in tshark(installed, "-r", str(capture), "-d", "udp.port==1550,vxlan",
                                                    "-Y", "vxlan", "-T", "fields", "-e", "frame.number")
              .stdout.splitlines()]
    without = tshark(installed, "-r", str(capture), "-Y", "vxlan", "-T", "fields", "-e", "frame.number").stdout
    assert with_profile and with_profile == with_d and not without


def test_columns_show_the_interface_the_comment_and_names(installed, run_dict):
    capture = neutron(run_dict)
    shown = rows(installed, capture, "_ws.col.Interface", "_ws.col.Source", "_ws.col.Comment", "frame.comment",
                 "frame.interface_name", extra=("-c", "40"))
    assert all(row[0] == row[4] and row[2] == row[3] for row in shown)
    assert {"vs-web", "gw", "server-1"} <= {row[1] for row in shown}
    assert "10.10.0.100" not in {row[1] for row in shown}


def test_colouring_rules_follow_the_comments(installed, run_dict):
    plain = neutron(run_dict)
    dsr = neutron(run_dict, **{"se_group.se_tunnel_mode": "enable-dsr"})  # port-security drops
    seen = set()
    for capture in (plain, dsr):
        for rule, comment, vxlan, reset, kind in rows(installed, capture, "frame.coloring_rule.name", "frame.comment",
                                                      "vxlan", "tcp.flags.reset", "eth.type", extra=("--color",)):
            sender = comment.split(" ", 1)[0]
            if "[DROPPED" in comment or "[LOST" in comment:
                expected = "dataplane: dropped"
            elif sender == "controller":
                expected = "dataplane: controller event"
            elif kind == "0x88b5":
                expected = "dataplane: SE heartbeat"
            elif "1" in reset.split(","):
                expected = "dataplane: TCP reset"
            elif vxlan:
                expected = "dataplane: SE-to-SE tunnel"
            elif sender.startswith("se-"):
                expected = f"dataplane: {sender}"
            elif sender == "gw":
                expected = "dataplane: router"
            else:
                assert sender.startswith("server-"), comment
                expected = "dataplane: pool servers"
            assert rule == expected, comment
            seen.add(expected)
    assert {"dataplane: dropped", "dataplane: SE-to-SE tunnel", "dataplane: se-1", "dataplane: se-4",
            "dataplane: router", "dataplane: pool servers", "dataplane: SE heartbeat",
            "dataplane: controller event"} <= seen


def test_heartbeats_and_controller_events_have_their_colours(installed, tmp_path):
    capture = tmp_path / "control.pcapng"
    heartbeat = Ether(src="02:00:0a:0a:00:0b", dst="02:00:0a:0a:00:0c", type=0x88B5) / (b"\x00" * 46)
    syslog = (Ether(src="02:00:0a:63:00:01", dst="02:00:0a:63:00:0b") / IP(src="10.99.0.1", dst="10.99.0.11")
              / UDP(sport=514, dport=514) / b'<134>1 2026-01-01T00:00:10Z controller dataplane - scale_out.started - '
                                             b'{"t": 10.0, "type": "scale_out.started"}')
    with PcapngWriter(capture) as writer:
        frontend, controller = writer.add_interface("frontend"), writer.add_interface("controller")
        writer.write_frame(frontend, 1, bytes(heartbeat), "se-1 heartbeat to se-2")
        writer.write_frame(controller, 2, bytes(syslog), "controller scale_out.started se-2")
    assert [row[0] for row in rows(installed, capture, "frame.coloring_rule.name", extra=("--color",))] == [
        "dataplane: SE heartbeat", "dataplane: controller event"]


def test_colour_rules_are_written_as_wireshark_reads_them():
    line = profile.ColourRule("x", "tcp", "#ff8000", "#000001").line()
    assert line == "@x@tcp@[65535,32896,0][0,0,257]"  # background first, 16 bits per channel
    with pytest.raises(ValueError):
        profile.ColourRule("bad", "eth.addr == @", "#000000").line()
    assert profile.decode_as_entries(4790).splitlines()[-1] == "decode_as_entry: udp.port,4790,(none),VXLAN"


def test_se_colours_are_matplotlibs_tab20_pairs():
    import matplotlib

    tab20 = ["#%02x%02x%02x" % tuple(round(v * 255) for v in c) for c in matplotlib.colormaps["tab20"].colors]
    for strong, light in colours.SE_PAIRS:
        assert tab20.index(light) == tab20.index(strong) + 1
    assert colours.se_colour("se-2") == "#ff7f0e" and colours.se_colour("se-10") == colours.se_colour("se-2")
    assert colours.se_colour("edge-a", fallback=2, light=True) == "#98df8a"


def test_out_writes_an_importable_profile_folder_and_refuses_both(tmp_path, capsys):
    assert main(["wireshark-profile", "--out", str(tmp_path / "profiles"), "--tunnel-port", "4790"]) == 0
    folder = tmp_path / "profiles" / "dataplane"
    assert "udp.port,4790," in (folder / "decode_as_entries").read_text()
    assert "udp.port == 4791" in (folder / "colorfilters").read_text()  # flow probes: the port above
    assert str(folder) in capsys.readouterr().out
    assert main(["wireshark-profile", "--tunnel-port", "0", "--out", str(tmp_path)]) == 2
    assert "--tunnel-port: must be between 1 and 65534" in capsys.readouterr().err
    assert main(["wireshark-profile", "--install", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--out: not allowed with argument --install" in err[0]
