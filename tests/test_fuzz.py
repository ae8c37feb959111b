"""Fuzz targets: the capture reader and the scenario loader take any bytes without a traceback.

Hypothesis drives structure-aware mutations of valid inputs (flipped bytes,
cut or spliced blocks, length fields set to the values that break parsers,
hostile TOML values), which reach far deeper than random bytes would.  In
the normal test run each target runs a fixed, derandomized set of examples
in a few seconds; CI sets ``DATAPLANE_FUZZ_SCALE`` (a multiplier of the
example counts) for a longer randomized run (``.ci/run``).  Properties:

- capture reader: every record is returned or the file is refused with a
  ``CaptureError``; records never hold more bytes than the file; ``dataplane
  check``'s own validation and replay's link-layer decoders take every record;
- scenario loader: ``load`` returns a ``Scenario`` or raises one
  ``ScenarioError`` line naming the file; a scenario it accepts builds,
  starts and runs a slice of virtual time.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import dataplane
from conftest import BASE as FIXTURE_BASE
from dataplane.emulation import build
from dataplane.l2.capture import EPOCH_NS
from dataplane.replay.input import decoder_for
from dataplane.scenario import Scenario, ScenarioError, load, parse
from dataplane.testing.check import _read_and_check, check_frame
from dataplane.wire import arp, frames
from dataplane.wire.capture_reader import CaptureError, open_capture
from dataplane.wire.pcapng import PcapngWriter

ROOT = Path(dataplane.__file__).parent.parent
SCALE = int(os.environ.get("DATAPLANE_FUZZ_SCALE", "0") or 0)


def fuzz_settings(examples: int) -> settings:
    """A fixed derandomized run in the normal suite; SCALE times more, randomized, in CI's fuzz step."""
    return settings(max_examples=examples * max(SCALE, 1), deadline=None, derandomize=not SCALE, database=None,
                    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                            HealthCheck.function_scoped_fixture,
                                                            HealthCheck.large_base_example])


# ------------------------------------------------------------------ captures

MAC_A, MAC_B = frames.mac_bytes("02:00:0a:0a:00:0b"), frames.mac_bytes("02:00:0a:0a:00:0c")
CLIENT, VIP = frames.ip_bytes("198.51.100.7"), frames.ip_bytes("10.10.0.100")


def _sample_frames() -> list[bytes]:
    tcp = frames.tcp_frame(MAC_B, MAC_A, CLIENT, VIP, 40000, 80, 1000, 0, frames.SYN, ident=7)
    udp = frames.udp_frame(MAC_B, MAC_A, CLIENT, VIP, 40001, 53, b"query", ident=8)
    return [tcp, udp, frames.vxlan_frame(MAC_B, MAC_A, VIP, CLIENT, 50000, 1550, 1, tcp, ident=9),
            arp.gratuitous_arp(MAC_A, VIP)]


def _pcapng_sample() -> bytes:
    out = io.BytesIO()
    writer = PcapngWriter(out, application="fuzz", comment="section comment")
    writer.add_interface("frontend", "VIP network")
    writer.add_interface("backend", snaplen=64)
    writer.add_names({"10.10.0.100": "vs-web", "198.51.100.7": ["client", "c1"]})
    for number, frame in enumerate(_sample_frames() * 2):
        writer.write_frame(number % 2, EPOCH_NS + number * 1000, frame, f"frame {number}", direction=number % 3)
    writer.write_statistics(0, EPOCH_NS + 10**9, received=8, dropped=1)
    writer.close()
    return out.getvalue()


def _pcapng_big_endian_sample() -> bytes:
    """SHB, IDB with if_tsresol 2^-20 and if_tsoffset, EPB, SPB and an obsolete PB, all big-endian."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack(">II", btype, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))

    def option(code: int, value: bytes) -> bytes:
        return struct.pack(">HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    tcp = _sample_frames()[0]
    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(">HHI", 1, 0, 0) + option(2, b"eth0") + option(9, b"\x94")
                + option(14, struct.pack(">q", 1_700_000_000)) + option(0, b""))
    epb = block(6, struct.pack(">IIIII", 0, 1, 2, len(tcp), len(tcp)) + tcp + b"\0" * (-len(tcp) % 4)
                + option(1, "comment \u00e9".encode()) + option(0, b""))
    spb = block(3, struct.pack(">I", len(tcp)) + tcp)
    pb = block(2, struct.pack(">HHIIII", 0, 0, 1, 2, len(tcp), len(tcp)) + tcp)
    return shb + idb + epb + spb + pb


def _pcap_sample(byte_order: str, magic: int, linktype: int) -> bytes:
    out = [struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for number, frame in enumerate(_sample_frames()):
        data = frame[14:] if linktype == 101 else frame
        out.append(struct.pack(byte_order + "IIII", 1_700_000_000 + number, number, len(data), len(data)) + data)
    return b"".join(out)


CAPTURE_SEEDS = [_pcapng_sample(), _pcapng_big_endian_sample(), _pcap_sample("<", 0xA1B2C3D4, 1),
                 _pcap_sample(">", 0xA1B23C4D, 101), (ROOT / "pcaps" / "real" / "curl-http-server.pcap").read_bytes()]
# Values that break length arithmetic: zero, one below and above a block's minimum, sign bits, huge.
INTERESTING_U32 = [0, 1, 3, 4, 8, 11, 12, 16, 28, 32, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                   1 << 28, (1 << 28) + 4, 0x0A0D0D0A, 0x1A2B3C4D, 0x4D3C2B1A]


@st.composite
def mutated_capture(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(CAPTURE_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "u32", "u16", "truncate", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind in ("u32", "u16"):
            size = 4 if kind == "u32" else 2
            value = draw(st.sampled_from(INTERESTING_U32)) & ((1 << (8 * size)) - 1)
            data[at:at + size] = value.to_bytes(size, draw(st.sampled_from(["little", "big"])))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 256)))
            data[at:at] = data[at:end]
    return bytes(data)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz_settings(400)
@given(blob=st.one_of(mutated_capture(), mutated_capture(), mutated_capture(), st.binary(max_size=512)))
@example(blob=CAPTURE_SEEDS[0][:-3])
@example(blob=b"\x0a\x0d\x0d\x0a" + b"\xff" * 8)
def test_capture_reader_takes_any_bytes(scratch, blob):
    path = scratch / "capture.bin"
    path.write_bytes(blob)
    records = 0
    try:
        for record in open_capture(path):
            records += 1
            assert len(record.data) <= len(blob) and isinstance(record.time_ns, int)
            decoder = decoder_for(record.linktype)
            if decoder is not None:
                packet, reason = decoder(record.data)
                assert (packet is None) != (reason is None)
            if record.linktype == 1:
                assert all(isinstance(problem, str) for problem in check_frame(record.data))
    except CaptureError as error:
        assert "\n" not in str(error) and str(error).startswith("capture.bin")
        event("refused after some records" if records else "refused")
    else:
        event("read to the end")
    assert records <= len(blob) // 12 + 1
    try:
        findings, oversize = _read_and_check(path, own_checks=True)
    except CaptureError:
        return
    assert all("\n" not in f.message for f in findings + oversize)


# ------------------------------------------------------------------ scenarios

SCENARIO_SEEDS = [(ROOT / "dataplane" / "scenarios" / "demo.toml").read_text(encoding="utf-8")] + [
    path.read_text(encoding="utf-8") for path in sorted((ROOT / "pcaps" / "golden").glob("*.toml"))]
HOSTILE_TOKENS = ["1e300", "-1e300", "1e-300", "0", "-0.0", "nan", "inf", "-inf", "18446744073709551616",
                  "9" * 400, "true", "1979-05-27", "07:32:00", "[]", "{}", "[[[[[[[[1]]]]]]]]", '""', '"\\u0000"',
                  '"\\u202e"', '"' + "x" * 300 + '"', '"224.0.0.0/24"', '"0.0.0.0/0"', '"10.0.0.0/8"',
                  '"255.255.255.255"', '"10.20.0.101:0"', '"10.20.0.101:65536"', '"::1"', '"a\\r\\nb"',
                  "'''\nx\n'''", "{ a = 1, b = [2] }"]


@st.composite
def mutated_toml(draw) -> bytes:
    lines = draw(st.sampled_from(SCENARIO_SEEDS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["value", "value", "delete", "duplicate", "insert", "bytes"]))
        at = draw(st.integers(0, len(lines) - 1))
        if kind == "value" and "=" in lines[at]:
            key = lines[at].split("=", 1)[0]
            lines[at] = f"{key}= {draw(st.sampled_from(HOSTILE_TOKENS))}"
        elif kind == "delete":
            del lines[at]
        elif kind == "duplicate":
            lines.insert(at, lines[at])
        elif kind == "insert":
            lines.insert(at, draw(st.text(max_size=40)))
        elif kind == "bytes" and lines[at]:
            where = draw(st.integers(0, len(lines[at]) - 1))
            lines[at] = lines[at][:where] + draw(st.text(min_size=1, max_size=3)) + lines[at][where + 1:]
        if not lines:
            lines = [""]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _assert_one_line(error: ScenarioError, source: str) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text and text.startswith(f"{source}: "), text
    assert len(text) < 1000, text[:200]


@fuzz_settings(150)
@given(text=mutated_toml())
def test_scenario_loader_takes_any_file(scratch, text):
    path = scratch / "scenario.toml"
    path.write_bytes(text)
    try:
        scenario = load(path)
    except ScenarioError as error:
        _assert_one_line(error, str(path))
        event("refused")
        return
    event("accepted")
    assert isinstance(scenario, Scenario)


# Values a TOML file can hold, favouring the edges: huge and tiny numbers, control characters, deep nesting.
toml_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, 1, -1, 2**63, 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e300, 1e-300, 5e-324, 1e-7, 1e7, 3.2e7]),
    st.booleans(), st.text(max_size=80), st.sampled_from([s.strip('"') for s in HOSTILE_TOKENS]),
    st.dates(), st.times(), st.datetimes())
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


def _paths(node, prefix=()):
    """Every key path into a scenario dict, tables and array items included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield prefix + (index,)
            yield from _paths(value, prefix + (index,))


def _converter_at(path: tuple):
    """The converter that checks the value at ``path`` of a scenario dict (None for tables and arrays)."""
    from dataplane import scenario as sc
    from dataplane.scenario.schema import _TOP
    from dataplane.scenario.validation import _spec
    sections = {"networks": sc.Network, "se_group": sc.SeGroup, "service_engines": sc.SeSpec,
                "virtual_service": sc.VirtualService, "pool": sc.Pool, "traffic": sc.Traffic, "events": sc.Event}
    keys = [part for part in path if isinstance(part, str)]
    if len(keys) == 1:
        return _TOP.get(keys[0], (None,))[0]
    if keys[0] == "pool" and len(keys) == 3:
        return _spec(sc.HealthMonitor).get(keys[2], (None,))[0]
    return _spec(sections[keys[0]]).get(keys[-1], (None,))[0] if keys[0] in sections else None


@st.composite
def in_range_value(draw, conv):
    """A value the converter accepts, favouring its edges: most runs should get past validation."""
    from dataplane.scenario.validation import _bool, _enum, _num, _str
    if isinstance(conv, _num):
        lo, hi = conv.lo, conv.hi
        edge = draw(st.sampled_from([lo, hi, lo * 2 or 1, hi / 2, None]))
        value = edge if edge is not None else draw(st.floats(lo, hi) if conv.kind is float else st.integers(lo, hi))
        return conv.kind(min(max(value, lo), hi))
    if isinstance(conv, _enum):
        return draw(st.sampled_from(conv.choices))
    if isinstance(conv, _str):
        if conv.pattern is not None:
            return draw(st.from_regex(conv.pattern, fullmatch=True).filter(lambda v: len(v.encode()) <= conv.max_bytes))
        printable = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))
        return draw(st.text(printable, min_size=1, max_size=conv.max_bytes // 4))
    if conv is _bool:
        return draw(st.booleans())
    return None


FIXTURE_SCENARIO = dict(copy.deepcopy(FIXTURE_BASE), events=[{"at": 1.0, "action": "scale_out"}],
                        se_group={"auto_rebalance": True, "auto_rebalance_interval": 1.0},
                        pool=dict(FIXTURE_BASE["pool"], health_monitor={"type": "http", "send_interval": 0.5,
                                                                        "receive_timeout": 0.2}))
SCENARIO_PATHS = sorted(set(_paths(FIXTURE_SCENARIO)), key=repr)


def _apply(changes) -> dict:
    data = copy.deepcopy(FIXTURE_SCENARIO)
    for path, value in changes:
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a table on this path
    return data


@fuzz_settings(300)
@given(changes=st.lists(st.tuples(st.sampled_from(SCENARIO_PATHS), toml_values), min_size=1, max_size=3))
def test_any_value_anywhere_is_accepted_or_one_line(changes):
    try:
        parse(_apply(changes), "fuzz.toml")
    except ScenarioError as error:
        _assert_one_line(error, "fuzz.toml")


def _draws_in_range(path) -> bool:
    """A leaf key whose converter can draw a value it accepts, and that no other key refers to."""
    from dataplane.scenario.validation import _bool, _enum, _num, _str
    conv = _converter_at(path)
    referred_to = path[0] == "service_engines" and path[-1] == "name" or path[0] == "events"
    return not referred_to and (isinstance(conv, (_num, _str, _enum)) or conv is _bool)


IN_RANGE_PATHS = [path for path in SCENARIO_PATHS if _draws_in_range(path)]
EVENT_BUDGET = 10_000  # events run per example: bounded work whatever the rates, yet timers get to fire


@st.composite
def in_range_change(draw):
    path = draw(st.sampled_from(IN_RANGE_PATHS))
    return path, draw(in_range_value(_converter_at(path)))


@fuzz_settings(25)
@given(changes=st.lists(in_range_change(), min_size=1, max_size=4))
@example(changes=[(("traffic", "new_connections_per_second"), 1e6)])
@example(changes=[(("duration",), 31536000.0), (("se_group", "dp_hb_frequency"), 1e-6)])
@example(changes=[(("virtual_service", "name"), "\u00e9" * 127), (("name",), "../" * 80)])
def test_a_scenario_the_loader_accepts_runs(scratch, changes):
    try:
        scenario = parse(_apply(changes), "fuzz.toml")
    except ScenarioError as error:  # in range, but against another key (receive_timeout >= send_interval ...)
        _assert_one_line(error, "fuzz.toml")
        event("refused: " + str(error).split(": ")[1].split("[")[0])
        return
    event("accepted")
    capture = io.BytesIO()
    net = build(scenario, capture)
    net.start(traffic=True)
    end_ns, sim = round(scenario.duration * 1e9), net.sim
    while sim.events_run < EVENT_BUDGET and sim.peek() is not None and sim.peek() <= end_ns:
        sim.step()
    event(f"ran {'to the end' if sim.events_run < EVENT_BUDGET else 'the event budget'}")
    json.dumps(net.summary())
    net.capture.close()
    path = scratch / "run.pcapng"
    path.write_bytes(capture.getvalue())
    assert sum(1 for _ in open_capture(path)) == net.capture.frames  # the capture reads back whole


def test_the_fuzzers_seeds_are_valid():
    """The mutations start from inputs that parse: otherwise the fuzzers would only test the first check."""
    for text in SCENARIO_SEEDS:
        parse(tomllib.loads(text))
    parse(copy.deepcopy(FIXTURE_SCENARIO))
def test_the_capture_seeds_are_valid(tmp_path):
    for number, blob in enumerate(CAPTURE_SEEDS):
        path = tmp_path / f"seed-{number}.bin"
        path.write_bytes(blob)
        assert len(list(open_capture(path))) >= 3
