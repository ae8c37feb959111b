"""Tests for dataplane.capture_reader: pcap (µs/ns, both byte orders),
pcapng from Scapy, from our writer and built by hand (SPB, PB, big-endian
sections, 2^-n resolution, skipped blocks), and every error path."""

import struct
import types
from decimal import Decimal

import pytest
from scapy.all import IP, TCP, UDP, Ether, PcapWriter, wrpcap, wrpcapng
from scapy.layers.l2 import CookedLinux, CookedLinuxV2

from dataplane.wire.capture_reader import (
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,
    CaptureError, Record, open_capture, read_all)
from dataplane.wire.pcapng import PcapngWriter

T_US = Decimal("1700000000.123456")
T_NS = Decimal("1700000000.123456789")


def _eth(n=0):
    return Ether() / IP(src="10.0.0.1", dst=f"10.0.1.{n % 250}") / TCP(sport=1000 + n) / (b"p" * n)


# -- classic pcap -------------------------------------------------------------

def test_pcap_microseconds_scapy(tmp_path):
    pkts = [_eth(k) for k in range(3)]
    for k, p in enumerate(pkts):
        p.time = T_US + k
    wrpcap(str(tmp_path / "us.pcap"), pkts)
    recs = read_all(tmp_path / "us.pcap")
    assert [r.data for r in recs] == [bytes(p) for p in pkts]
    assert [r.time_ns for r in recs] == [1700000000123456000 + k * 10**9 for k in range(3)]
    assert all(r.linktype == LINKTYPE_ETHERNET and r.interface == 0 for r in recs)
    assert [r.number for r in recs] == [1, 2, 3]
    # offsets: 24-byte file header, then 16-byte record headers
    assert recs[0].offset == 24 and recs[1].offset == 24 + 16 + len(recs[0].data)
    assert isinstance(recs[0], Record) and recs[0].comment is None


def test_pcap_nanoseconds_scapy(tmp_path):
    p = _eth(1)
    p.time = T_NS
    with PcapWriter(str(tmp_path / "ns.pcap"), nano=True) as w:
        w.write(p)
    (rec,) = read_all(tmp_path / "ns.pcap")
    assert rec.time_ns == 1700000000123456789 and rec.data == bytes(p)


@pytest.mark.parametrize("magic,frac,expect", [
    (0xA1B2C3D4, 123456, 1700000000123456000),
    (0xA1B23C4D, 123456789, 1700000000123456789),
])
@pytest.mark.parametrize("bo", [">", "<"])
def test_pcap_by_hand_both_byte_orders(tmp_path, magic, frac, expect, bo):
    frame = bytes(_eth(2))
    data = struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    data += struct.pack(bo + "IIII", 1700000000, frac, len(frame), len(frame) + 10) + frame
    (tmp_path / "h.pcap").write_bytes(data)
    (rec,) = read_all(tmp_path / "h.pcap")
    assert (rec.time_ns, rec.linktype, rec.data, rec.orig_len) == (expect, LINKTYPE_RAW, frame, len(frame) + 10)


@pytest.mark.parametrize("linktype,pkt", [
    (LINKTYPE_LINUX_SLL, CookedLinux() / IP() / UDP()),
    (LINKTYPE_LINUX_SLL2, CookedLinuxV2() / IP() / UDP()),
    (LINKTYPE_RAW, IP() / UDP()),
])
def test_pcap_linktypes(tmp_path, linktype, pkt):
    wrpcap(str(tmp_path / "l.pcap"), [pkt], linktype=linktype)
    (rec,) = read_all(tmp_path / "l.pcap")
    assert rec.linktype == linktype and rec.data == bytes(pkt)


def test_header_only_pcap_yields_nothing(tmp_path):
    (tmp_path / "e.pcap").write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    assert read_all(tmp_path / "e.pcap") == []


def test_streams_across_chunks_and_huge_frame(tmp_path):
    # ~3 MiB of odd-sized frames crosses the 1 MiB read chunk many times;
    # the 1.5 MiB frame is bigger than a whole chunk.
    frames = [bytes([k & 0xFF]) * (61 + k % 7) for k in range(40000)]
    frames.insert(20000, b"\x42" * (3 << 19))
    with PcapWriter(str(tmp_path / "big.pcap"), linktype=1) as w:
        w.write_header(None)  # write_packet(bytes) alone never writes it
        for k, f in enumerate(frames):
            w.write_packet(f, sec=k, usec=7)
    gen = open_capture(tmp_path / "big.pcap")
    assert isinstance(gen, types.GeneratorType)
    n = 0
    for n, rec in enumerate(gen, 1):
        assert rec.data == frames[n - 1] and rec.time_ns == (n - 1) * 10**9 + 7000
    assert n == len(frames)


# -- pcapng -------------------------------------------------------------------

def test_pcapng_from_scapy(tmp_path):
    a = _eth(1)
    a.sniffed_on, a.comment, a.time = "seg-A", "note ü".encode(), T_US
    b = IP() / UDP()
    b.sniffed_on, b.time = "seg-B", T_US + 1
    wrpcapng(str(tmp_path / "s.pcapng"), [a, b])
    recs = read_all(tmp_path / "s.pcapng")
    # Scapy always writes an unnamed, empty IDB 0, so named ones start at 1.
    assert [(r.interface, r.interface_name) for r in recs] == [(1, "seg-A"), (2, "seg-B")]
    assert [r.linktype for r in recs] == [LINKTYPE_ETHERNET, LINKTYPE_IPV4]
    assert [r.comment for r in recs] == ["note ü", None]
    assert [r.time_ns for r in recs] == [1700000000123456000, 1700000001123456000]
    assert [r.data for r in recs] == [bytes(a), bytes(b)]


def test_pcapng_from_our_writer(tmp_path):
    path = tmp_path / "o.pcapng"
    with PcapngWriter(path) as w:
        i = w.add_interface("x", linktype=LINKTYPE_RAW)
        j = w.add_interface("y")
        w.add_names({"10.0.0.1": "h"})
        w.write_frame(j, 1700000000123456789, b"abc", comment="c1")
        w.write_statistics(j, 1700000000123456790, 1)
        w.write_frame(i, 1, bytes(IP()))
    recs = read_all(path)
    assert [(r.interface_name, r.linktype, r.time_ns, r.comment) for r in recs] == [
        ("y", 1, 1700000000123456789, "c1"), ("x", LINKTYPE_RAW, 1, None)]


def _blk(bo, btype, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack(bo + "II", btype, len(body) + 12) + body + struct.pack(bo + "I", len(body) + 12)


def _opt(bo, code, val):
    return struct.pack(bo + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def _shb(bo):
    return _blk(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(bo, linktype, snaplen=0, opts=b""):
    return _blk(bo, 1, struct.pack(bo + "HHI", linktype, 0, snaplen) + opts
                + (struct.pack(bo + "HH", 0, 0) if opts else b""))


def _epb(bo, ifid, ts, data, opts=b""):
    return _blk(bo, 6, struct.pack(bo + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
                + data + b"\0" * (-len(data) % 4) + opts)


def test_pcapng_by_hand_sections_resolutions_and_block_kinds(tmp_path):
    le, be = "<", ">"
    data = b"".join([
        _shb(le),
        _idb(le, 1, 0, _opt(le, 2, b"ms-if") + _opt(le, 9, b"\x03")),   # 10^-3
        _idb(le, 101, 0, _opt(le, 9, bytes([0x80 | 10]))),              # 2^-10
        _blk(le, 4, struct.pack("<HH", 1, 6) + bytes([10, 0, 0, 1]) + b"h\0" + b"\0\0"
             + struct.pack("<HH", 0, 0)),                               # NRB: skipped
        _epb(le, 0, 1500, b"one", _opt(le, 1, b"first") + _opt(le, 1, b"second")
             + struct.pack("<HH", 0, 0)),
        _epb(le, 1, 3 * 1024 + 512, b"two"),
        _blk(le, 5, struct.pack("<III", 0, 0, 0)),                      # ISB: skipped
        _blk(le, 0x00000BAD, b"custom"), _blk(le, 0x12345678, b""),    # custom/unknown
        _blk(le, 3, struct.pack("<I", 5) + b"spb-x"),                   # SPB on if 0
        _blk(le, 2, struct.pack("<HHIIII", 1, 0, 0, 7, 4, 9) + b"pb!!"),  # obsolete PB
        # Second section, big-endian: interface ids restart at 0.
        _shb(be),
        _idb(be, 113, 0, _opt(be, 2, b"be-if") + _opt(be, 9, b"\x09")
             + _opt(be, 14, struct.pack(">q", 2))),                     # if_tsoffset 2 s
        _epb(be, 0, 10, b"big-endian"),
    ])
    (tmp_path / "h.pcapng").write_bytes(data)
    got = [(r.number, r.interface, r.interface_name, r.linktype, r.time_ns, r.data, r.orig_len, r.comment)
           for r in read_all(tmp_path / "h.pcapng")]
    assert got == [
        (1, 0, "ms-if", 1, 1_500_000_000, b"one", 3, "first\nsecond"),
        (2, 1, None, 101, 3_500_000_000, b"two", 3, None),
        (3, 0, "ms-if", 1, 0, b"spb-x", 5, None),
        (4, 1, None, 101, 7 * 10**9 // 1024, b"pb!!", 9, None),
        (5, 0, "be-if", 113, 2_000_000_010, b"big-endian", 10, None),
    ]


def test_pcapng_undefined_interface(tmp_path):
    (tmp_path / "u.pcapng").write_bytes(_shb("<") + _epb("<", 0, 0, b"x"))
    with pytest.raises(CaptureError, match="undefined interface 0") as ei:
        read_all(tmp_path / "u.pcapng")
    assert ei.value.frame_number == 1 and ei.value.offset == 28


# -- errors -------------------------------------------------------------------

def _records_then_error(path):
    got, err = [], None
    try:
        for rec in open_capture(path):
            got.append(rec)
    except CaptureError as e:
        err = e
    return got, err


def test_truncated_pcap_yields_whole_records_first(tmp_path):
    pkts = [_eth(k) for k in range(5)]
    path = tmp_path / "cap.pcap"
    wrpcap(str(path), pkts)
    full = path.read_bytes()
    sizes = [len(bytes(p)) for p in pkts]
    last_off = 24 + sum(16 + s for s in sizes[:4])
    path.write_bytes(full[:-10])  # cut inside frame 5's data
    got, err = _records_then_error(path)
    assert [r.data for r in got] == [bytes(p) for p in pkts[:4]]
    assert (err.frame_number, err.offset) == (5, last_off)
    assert str(err) == (f"cap.pcap: frame 5 at byte {last_off} is truncated "
                        f"(header says {sizes[4]} bytes, {sizes[4] - 10} left)")
    path.write_bytes(full[:last_off + 5])  # cut inside frame 5's record header
    got, err = _records_then_error(path)
    assert len(got) == 4 and (err.frame_number, err.offset) == (5, last_off)
    assert "record header needs 16 bytes, 5 left" in str(err)


def test_truncated_pcapng(tmp_path):
    path = tmp_path / "cap.pcapng"
    with PcapngWriter(path) as w:
        i = w.add_interface("a")
        for k in range(3):
            w.write_frame(i, k, bytes(_eth(k)), comment="c")
    full = path.read_bytes()
    offsets = [r.offset for r in read_all(path)]
    path.write_bytes(full[:-3])
    got, err = _records_then_error(path)
    assert len(got) == 2 and (err.frame_number, err.offset) == (3, offsets[2])
    assert f"cap.pcapng: frame 3 at byte {offsets[2]} is truncated (block says" in str(err)


def test_garbage_and_empty_files(tmp_path):
    (tmp_path / "g.bin").write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(CaptureError, match=r"g.bin: not a pcap or pcapng file \(magic 0x47494638\)"):
        read_all(tmp_path / "g.bin")
    (tmp_path / "empty.pcap").write_bytes(b"")
    with pytest.raises(CaptureError, match="empty.pcap: empty") as ei:
        read_all(tmp_path / "empty.pcap")
    assert (ei.value.frame_number, ei.value.offset) == (0, 0)
    (tmp_path / "short.pcap").write_bytes(struct.pack("<I", 0xA1B2C3D4) + b"\0" * 4)
    with pytest.raises(CaptureError, match="header truncated"):
        read_all(tmp_path / "short.pcap")


def test_implausible_length_is_an_error_not_an_allocation(tmp_path):
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    (tmp_path / "x.pcap").write_bytes(hdr + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 60) + b"z" * 60)
    with pytest.raises(CaptureError, match="frame 1 at byte 24 has implausible length"):
        read_all(tmp_path / "x.pcap")


def test_corrupt_pcapng_blocks(tmp_path):
    good = _shb("<") + _idb("<", 1)
    bad_bom = bytearray(good)
    bad_bom[8:12] = b"\1\2\3\4"
    (tmp_path / "b.pcapng").write_bytes(bytes(bad_bom))
    with pytest.raises(CaptureError, match="bad pcapng byte-order magic 0x01020304"):
        read_all(tmp_path / "b.pcapng")
    epb = bytearray(_epb("<", 0, 0, b"abcd"))
    epb[-4:] = struct.pack("<I", 999)  # trailing length disagrees with leading
    (tmp_path / "t.pcapng").write_bytes(good + bytes(epb))
    with pytest.raises(CaptureError, match=f"corrupt block at byte {len(good)}"):
        read_all(tmp_path / "t.pcapng")


# -- what a capture says besides its frames (CaptureInfo) -----------------------

def test_capture_info_collects_sections_interfaces_and_every_nrb(tmp_path):
    from dataplane.wire.capture_reader import CaptureInfo

    path = tmp_path / "info.pcapng"
    with PcapngWriter(path, application="unit test", comment="section note") as w:
        w.add_interface("frontend", "the VIP network")
        w.add_names({"10.0.0.1": "gw", "2001:db8::1": ["six", "v6"]})
        w.write_frame(0, 1, bytes(_eth(1)))
        w.add_interface("backend", linktype=LINKTYPE_RAW, snaplen=96)
        w.add_names({"10.0.0.1": "router", "10.0.0.2": "se-1"})  # a later NRB adds, never replaces
        w.write_frame(1, 2, bytes(IP()))
    info = CaptureInfo()
    seen = []
    for record in open_capture(path, info):
        seen.append(info.sections[-1].interfaces[record.interface].name)
    assert seen == ["frontend", "backend"]
    section = info.sections[0]
    assert (section.comment, section.application) == ("section note", "unit test")
    assert [(i.name, i.description, i.linktype, i.snaplen) for i in section.interfaces] == [
        ("frontend", "the VIP network", LINKTYPE_ETHERNET, 262144), ("backend", None, LINKTYPE_RAW, 96)]
    assert info.names == {"10.0.0.1": ["gw", "router"], "2001:db8::1": ["six", "v6"], "10.0.0.2": ["se-1"]}


def test_capture_info_of_a_classic_pcap(tmp_path):
    from dataplane.wire.capture_reader import CaptureInfo

    wrpcap(str(tmp_path / "one.pcap"), [_eth(1)])
    info = CaptureInfo()
    assert len(list(open_capture(tmp_path / "one.pcap", info))) == 1
    assert len(info.sections) == 1 and info.sections[0].interfaces[0].linktype == LINKTYPE_ETHERNET
    assert info.names == {} and info.sections[0].interfaces[0].name is None


# -- gzip, special files, interfaces ---------------------------------------------------------

def _pcap_bytes(tmp_path, count=40):
    path = tmp_path / "plain.pcap"
    packets = [_eth(k) for k in range(count)]
    for k, packet in enumerate(packets):
        packet.time = 1_700_000_000 + k  # not Scapy's creation time: the same bytes (and test) every run
    wrpcap(str(path), packets)
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed_captures_stream_like_plain_ones(tmp_path, kind):
    import gzip
    plain = tmp_path / f"c.{kind}"
    if kind == "pcap":
        plain.write_bytes(_pcap_bytes(tmp_path))
    else:
        wrpcapng(str(plain), [_eth(k) for k in range(40)])
    packed = tmp_path / f"c.{kind}.gz"
    # Two gzip members, as `cat a.gz b.gz` makes: one stream of bytes once decompressed.
    data = plain.read_bytes()
    packed.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert [(r.data, r.time_ns, r.offset) for r in read_all(packed)] == \
        [(r.data, r.time_ns, r.offset) for r in read_all(plain)]


def test_a_cut_or_corrupt_gzip_stream_fails_after_the_whole_records(tmp_path):
    import gzip
    data = _pcap_bytes(tmp_path)
    packed = gzip.compress(data, mtime=0)  # no wall clock in the bytes: the same test each run
    (tmp_path / "cut.pcap.gz").write_bytes(packed[:len(packed) // 2])
    got, err = _records_then_error(tmp_path / "cut.pcap.gz")
    assert 0 < len(got) < 40 and err.frame_number == len(got) + 1
    assert err.args[0].startswith(f"cut.pcap.gz (uncompressed): frame {len(got) + 1} at byte ")
    assert "truncated: the compressed stream ends before its end marker" in str(err)
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "bad.pcap.gz").write_bytes(bytes(corrupt))
    got, err = _records_then_error(tmp_path / "bad.pcap.gz")
    assert "corrupt compressed data" in str(err) and "truncated" not in str(err)
    # Cut exactly after a whole record: every record, then the early end is still reported.
    (tmp_path / "edge.pcap.gz").write_bytes(gzip.compress(data, mtime=0)[:-8])   # the gzip trailer is missing
    got, err = _records_then_error(tmp_path / "edge.pcap.gz")
    assert len(got) == 40 and err.frame_number == 41 and "compressed stream ends" in str(err)


def test_special_files_are_refused_before_any_read(tmp_path):
    import os
    fifo = tmp_path / "pipe.pcap"
    os.mkfifo(fifo)   # nobody writes: a blocking open would never return
    with pytest.raises(CaptureError, match=r"pipe.pcap: not a regular file \(a FIFO\)"):
        read_all(fifo)
    with pytest.raises(CaptureError, match=r"zero: not a regular file \(a device\)"):
        read_all("/dev/zero")
    with pytest.raises(CaptureError, match=r"not a regular file \(a directory\)"):
        read_all(tmp_path)


def test_every_interface_is_reported_as_it_is_defined(tmp_path):
    path = tmp_path / "i.pcapng"
    with PcapngWriter(path) as w:
        w.add_interface("eth0")
        w.add_interface("usb", linktype=220)
        w.write_frame(1, 0, b"\x00" * 20)
    seen = []
    (rec,) = list(open_capture(path, on_interface=lambda *i: seen.append(i)))
    assert seen == [(0, 0, 1, "eth0"), (0, 1, 220, "usb")] and rec.interface == 1
    (tmp_path / "p.pcap").write_bytes(_pcap_bytes(tmp_path, 1))
    seen.clear()
    list(open_capture(tmp_path / "p.pcap", on_interface=lambda *i: seen.append(i)))
    assert seen == [(0, 0, LINKTYPE_ETHERNET, None)]
