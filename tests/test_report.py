"""report.html: every plot decoded by headless Chromium, titles, units, legends and marks, the tables, bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import scenario_dict
from dataplane.cli import main
from dataplane.tools import plots, report
from dataplane.tools.report import load_run

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "pcaps" / "real" / "curl-http-server.pcap"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# Added to a copy of the page: after the load event, decode every image and write what the browser got.
PROBE = """<script>
window.addEventListener("load", async () => {
  const images = Array.from(document.images);
  const decoded = await Promise.allSettled(images.map(i => i.decode()));
  const seen = images.map((i, k) => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                      height: i.naturalHeight, decoded: decoded[k].status}));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Chromium is required by the report tests (Debian: apt-get install chromium)"
    return binary


def images_in_chromium(page: Path, tmp_path: Path) -> list[dict]:
    """Load ``page`` in headless Chromium and return, per <img>, whether it decoded and its natural size."""
    probed = tmp_path / f"probed-{page.parent.name}.html"
    html = page.read_text(encoding="utf-8")
    assert html.count("</body>") == 1
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / f"chromium-profile-{page.parent.name}"
    result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                             "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run; Chromium printed:\n{result.stdout[:1000]}\n{result.stderr[-1000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def svg_texts(page: Path) -> list[list[str]]:
    """The text of each embedded plot (matplotlib keeps each text as a comment beside its glyph paths)."""
    html = page.read_text(encoding="utf-8")
    svgs = [base64.b64decode(data).decode("utf-8")
            for data in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)]
    return [re.findall(r"<!-- (.*?) -->", svg) for svg in svgs]


SCENARIO = scenario_dict(**{
    "cloud": "openstack-neutron", "duration": 8.0, "se_group.se_tunnel_mode": "enable-dsr",  # drops
    "service_engines": [{"name": f"se-{i}", "host": f"esx-{i}"} for i in (1, 2, 3)],
    "virtual_service.placement": ["se-1", "se-2"], "traffic.new_connections_per_second": 10,
    "events": [{"at": 2.0, "action": "scale_out", "se": "se-3"}, {"at": 4.5, "action": "scale_in", "se": "se-2"},
               {"at": 5.0, "action": "fail_server", "server": "10.20.0.102:8080"}],
})


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    from dataplane import scenario as scenario_mod
    from dataplane.emulation import run_scenario

    out = tmp_path_factory.mktemp("reported")
    run_scenario(scenario_mod.parse(SCENARIO, "report.toml"), out)
    assert main(["report", str(out)]) == 0
    return out


def test_every_plot_renders_in_chromium(reported, tmp_path):
    seen = images_in_chromium(reported / "report.html", tmp_path)
    assert [image["alt"] for image in seen] == ["New flows per SE over time", "Open connections per SE",
                                                "CPU per SE", "Drops"]
    for image in seen:
        assert image["complete"] and image["decoded"] == "fulfilled", image
        assert image["width"] > 300 and image["height"] > 100, image


def test_the_probe_sees_a_broken_plot(reported, tmp_path):
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    html = (reported / "report.html").read_text(encoding="utf-8")
    data = re.search(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html).group(1)
    broken.write_text(html.replace(data, base64.b64encode(b"<svg><unclosed").decode(), 1), encoding="utf-8")
    first, *rest = images_in_chromium(broken, tmp_path)
    assert first["width"] == 0 and first["decoded"] == "rejected"
    assert all(image["decoded"] == "fulfilled" for image in rest)


def test_plots_have_titles_units_legends_and_numbered_event_marks(reported):
    run = load_run(reported)
    flows, connections, cpu, drops = svg_texts(reported / "report.html")
    marks = plots.markers(run.events, run.summary["duration"])
    numbers = [str(m.number) for m in marks]
    assert len(marks) >= 4  # placement, scale out, scale in, server failure (and what follows)
    assert "New flows per SE, with the control-plane events (numbered as in the table below)" in flows
    assert {"virtual time (s)", "new flows per second", "SE", "se-1", "se-2", "se-3"} <= set(flows)
    assert {"open connections", "virtual time (s)", "se-3"} <= set(connections)
    assert {"CPU utilisation (%)", "max_cpu_usage 80 %: alert.cpu_high above",
            "min_cpu_usage 30 %: alert.cpu_low below"} <= set(cpu)
    for texts in (flows, connections, cpu):
        assert [t for t in texts if t in numbers][:len(numbers)] == numbers  # every mark, labelled in order
    assert "frames dropped" in drops and "Frames dropped, by reason" in drops
    assert set(run.summary["drops"]) <= set(drops)


def test_the_page_is_one_self_contained_file(reported):
    html = (reported / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "url(" not in html
    assert re.findall(r"src='([^']*)'", html) and all(src.startswith("data:image/svg+xml;base64,")
                                                    for src in re.findall(r"src='([^']*)'", html))
    assert not re.search(r"https?://", html)


def test_tables_list_the_phases_and_every_event_with_its_mark(reported):
    run = load_run(reported)
    html = (reported / "report.html").read_text(encoding="utf-8")
    for phase in run.summary["flows_by_phase"]:
        counts = phase["flows"]
        row = re.search(rf"<tr><td>{re.escape(report.phase_label(phase))}</td><td>{re.escape(phase['after'])}</td>"
                        rf"(.*?)</tr>", html)
        assert row, phase
        assert f"<b>{sum(counts.values())}</b>" in row.group(1)
    events = re.search(r"<h2>Control-plane events</h2>.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    rows = re.findall(r"<tr><td class=num>(\d+)</td><td class=num>([\d.]+)</td><td><code>([^<]+)</code>", events)
    assert [(float(t), kind) for _, t, kind in rows] == [(round(e["t"], 3), e["type"]) for e in run.events]
    marks = {e["type"] + str(e["t"]): str(m.number) for m in plots.markers(run.events, run.summary["duration"])
             for e in m.events}
    assert [mark for mark, _, _ in rows] == [marks[e["type"] + str(e["t"])] for e in run.events]


def test_close_events_share_a_mark_and_marks_never_pile_up():
    events = [{"t": 10.0, "type": "a"}, {"t": 10.5, "type": "b"}, {"t": 40.0, "type": "c"}]
    assert [(m.number, m.t, len(m.events)) for m in plots.markers(events, 100.0)] == [(1, 10.0, 2), (2, 40.0, 1)]
    many = [{"t": float(t), "type": "x"} for t in range(0, 1000, 3)]
    assert len(plots.markers(many, 1000.0)) <= 40


def test_new_flows_are_averaged_per_second_over_round_bins():
    t = [float(i) for i in range(1, 101)]
    starts, width, rates = plots.rebin(t, 1, {"se-1": [2] * 50 + [None] * 50, "se-2": [1] * 100})
    assert width == 5 and starts[0] == 0.0 and starts[-1] == 100.0 and len(starts) == 21
    assert rates["se-2"] == [1.0] * 21 and rates["se-1"][:10] == [2.0] * 10 and rates["se-1"][10] is None


def test_run_writes_the_report_when_asked_and_the_demo_by_default(tmp_path, capsys):
    toml = ROOT / "pcaps" / "golden" / "vmware.toml"
    assert main(["run", str(toml), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "report.html").exists()
    assert main(["run", str(toml), "--out", str(tmp_path / "asked"), "--report"]) == 0
    assert f"report: {tmp_path / 'asked' / 'report.html'}" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert f"report: {tmp_path / 'demo' / 'report.html'}" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path / "quiet-demo"), "--no-report"]) == 0
    assert not (tmp_path / "quiet-demo" / "report.html").exists()
    seen = images_in_chromium(tmp_path / "demo" / "report.html", tmp_path)
    drops = json.loads((tmp_path / "demo" / "summary.json").read_text())["drops"]
    assert len(seen) == (4 if drops else 3), "flows, connections and CPU always; drops when there are some"
    assert all(i["decoded"] == "fulfilled" and i["width"] > 0 for i in seen)


def test_replay_writes_the_report_when_asked(tmp_path, capsys):
    toml = tmp_path / "replay.toml"
    toml.write_text((ROOT / "pcaps" / "golden" / "vmware.toml").read_text().replace("[[events]]\nat = 1.0\n"
                                                                                   "action = \"scale_out\"\n", ""))
    out = tmp_path / "replayed"
    assert main(["replay", str(REAL), "--scenario", str(toml), "--out", str(out), "--quiet", "--report"]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    seen = images_in_chromium(out / "report.html", tmp_path)
    assert len(seen) >= 3 and all(i["decoded"] == "fulfilled" and i["width"] > 0 for i in seen)


def test_bad_outputs_are_one_line_naming_the_file(reported, tmp_path, capsys):
    def fails(folder: Path, expected: str) -> None:
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        assert not (folder / "report.html").exists()

    fails(tmp_path / "nowhere", "nowhere: no such output folder")
    folder = tmp_path / "run"
    folder.mkdir()
    fails(folder, "summary.json: missing")
    shutil.copy(reported / "events.jsonl", folder)
    (folder / "summary.json").write_text("{not json")
    fails(folder, "summary.json: not JSON")
    summary = json.loads((reported / "summary.json").read_text())
    del summary["timeline"]
    (folder / "summary.json").write_text(json.dumps(summary))
    fails(folder, 'summary.json: "timeline" is missing')
    summary = json.loads((reported / "summary.json").read_text())
    summary["timeline"]["cpu"]["se-1"].pop()
    (folder / "summary.json").write_text(json.dumps(summary))
    fails(folder, 'summary.json: "timeline.cpu.se-1" should have')
    shutil.copy(reported / "summary.json", folder)
    (folder / "events.jsonl").write_text('{"t": 0, "type": "vs.placed"}\n{"t": "soon"}\n')
    fails(folder, "events.jsonl line 2: an event needs a number \"t\" and a string \"type\"")
