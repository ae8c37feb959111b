"""Streaming READER for classic pcap and pcapng capture files.

Owns: turning a capture file on disk into a stream of ``Record``s (raw
frame bytes + integer-ns timestamp + linktype + interface + comment), in
constant memory, fast enough to feed replay (>500k records/s for small
frames).  It does no dissection; writing lives in ``dataplane.pcapng``.

Supported: pcap with µs (a1b2c3d4) and ns (a1b23c4d) magic in both byte
orders; pcapng with any number of sections (each with its own byte order),
IDBs (per-interface linktype, if_name, if_tsresol 10^-n and 2^-n,
if_tsoffset), EPB (opt_comment read back), SPB and the obsolete PB.
ISB, custom and unknown blocks are skipped.  What a capture says besides
its frames (section comments, interface names and descriptions, the
name-resolution blocks) is collected into a ``CaptureInfo`` when the
caller passes one (``dataplane split`` copies it into the files it writes).
Either format may be gzip-compressed (``tcpdump -w - | gzip``,
``.pcap.gz``): recognised by its magic, decompressed as a stream; byte
offsets then count the uncompressed stream.  Only regular files are read:
a FIFO or a device is refused before anything is read from it (it could
block for ever or never end).

Errors raise ``CaptureError`` naming the file, frame number and byte
offset.  A truncated final record (or compressed stream) is reported only
AFTER every whole record before it has been yielded, so callers can replay
what is whole.
"""

from __future__ import annotations

import os
import stat
import struct
import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Iterator

__all__ = ["Record", "CaptureError", "CaptureInfo", "Interface", "Section", "open_capture", "read_all",
           "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LINUX_SLL",
           "LINKTYPE_LINUX_SLL2", "LINKTYPE_IPV4", "LINKTYPE_IPV6"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_CHUNK = 1 << 20
# A length beyond this is corruption, not a packet; refusing it stops a
# garbage header from making us allocate gigabytes.
_MAX_RECORD = 1 << 28


@dataclass(slots=True)
class Record:
    number: int  # 1-based frame number (packet blocks only, in file order)
    offset: int  # byte offset of the record header / block in the file
    time_ns: int  # ns since epoch (0 for SPB, which has no timestamp)
    linktype: int
    data: bytes
    orig_len: int
    interface: int  # pcapng interface id within its section; 0 for pcap
    interface_name: str | None
    comment: str | None


@dataclass(slots=True)
class Interface:
    name: str | None
    description: str | None
    linktype: int
    snaplen: int


@dataclass(slots=True)
class Section:
    comment: str | None
    application: str | None
    interfaces: list[Interface] = field(default_factory=list)


@dataclass(slots=True)
class CaptureInfo:
    """Everything but the frames, filled in while ``open_capture`` reads.

    While a record is being handled, ``sections[-1]`` is its section, so
    ``sections[-1].interfaces[record.interface]`` is its interface.
    ``names`` maps an address (text) to the names every NRB gave it.
    """
    sections: list[Section] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)

    def add_names(self, address: str, names: list[str]) -> None:
        known = self.names.setdefault(address, [])
        known.extend(name for name in names if name not in known)


class CaptureError(Exception):
    """Unreadable capture.  ``frame_number`` is the frame that could not be
    read (1-based; 0 for file-level problems), ``offset`` its byte offset."""

    def __init__(self, message: str, frame_number: int = 0, offset: int = 0):
        super().__init__(message)
        self.frame_number = frame_number
        self.offset = offset


class _Stream:
    """Chunked buffer over a binary stream: buf[pos:] are unread bytes,
    ``base`` is the stream offset of buf[0].  ``broken`` says why a
    compressed stream stopped early (its end marker missing, or corrupt)."""

    __slots__ = ("read", "buf", "pos", "base", "broken")

    def __init__(self, read: Callable[[int], bytes], first: bytes):
        self.read, self.buf, self.pos, self.base = read, first, 0, 0
        self.broken: str | None = None

    def fill(self, need: int) -> bool:
        """Make at least ``need`` bytes available at pos; False at EOF."""
        while len(self.buf) - self.pos < need:
            more = self._more(max(_CHUNK, need - (len(self.buf) - self.pos)))
            if not more:
                return False
            # Drop consumed bytes so memory stays ~one chunk.
            self.base += self.pos
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        return True


    def _more(self, size: int) -> bytes:
        import gzip  # only a compressed capture needs them (and _more runs once a chunk)
        import zlib
        if self.broken:
            return b""
        try:
            return self.read(size)
        except EOFError:  # gzip: the compressed stream ends before its end marker
            self.broken = "truncated: the compressed stream ends before its end marker"
        except (zlib.error, gzip.BadGzipFile) as error:
            self.broken = f"corrupt compressed data ({error})"
        return b""


#: Called as on_interface(section, interface_id, linktype, name) for every interface a capture defines.
InterfaceHook = Callable[[int, int, int, "str | None"], None]


def open_capture(path, info: CaptureInfo | None = None,
                 on_interface: InterfaceHook | None = None) -> Iterator[Record]:
    """Yield every record of a (possibly gzip-compressed) pcap or pcapng file, streaming.

    ``info`` is filled as the file's blocks go by; ``on_interface`` hears of each interface as the
    file defines it (pcap: one).
    """
    name = os.path.basename(os.fspath(path))
    with _open_regular(path, name) as f:
        first = f.read(_CHUNK)
        read = f.read
        if first[:2] == b"\x1f\x8b":
            import gzip  # imported here: plain captures, the common case, never load it
            f.seek(0)
            # read1: one decompression step a call, so an early end of the compressed stream
            # (EOFError) never swallows data already decompressed.
            read = gzip.GzipFile(fileobj=f, mode="rb").read1
            name = f"{name} (uncompressed)"
            first = b""
        s = _Stream(read, first)
        if not s.fill(4):
            if s.broken:
                raise CaptureError(f"{name}: {s.broken}")
            raise CaptureError(f"{name}: empty or too short ({len(s.buf)} bytes): "
                               "not a pcap or pcapng file")
        magic = s.buf[:4]
        if magic == b"\x0a\x0d\x0d\x0a":
            records = _pcapng(s, name, info, on_interface)
        elif magic in _PCAP_MAGICS:
            records = _pcap(s, name, *_PCAP_MAGICS[magic], info, on_interface)
        else:
            raise CaptureError(f"{name}: not a pcap or pcapng file "
                               f"(magic 0x{magic.hex()})")
        try:
            count = yield from records
        except CaptureError as error:
            if not s.broken:
                raise
            raise CaptureError(f"{name}: frame {error.frame_number} at byte {error.offset} is unreadable: "
                               f"{s.broken}", error.frame_number, error.offset) from None
        if s.broken:  # the compressed stream broke off exactly between two records
            raise CaptureError(f"{name}: frame {count + 1} at byte {s.base + s.pos} is unreadable: "
                               f"{s.broken}", count + 1, s.base + s.pos)


def _open_regular(path, name: str):
    """Open ``path`` for reading if it is a regular file; never block on a FIFO or read a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file")
            raise CaptureError(f"{name}: not a regular file ({kind}); only capture files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_all(path) -> list[Record]:
    """All records as a list (tests and small files)."""
    return list(open_capture(path))


# magic bytes as stored -> (byte order, ns per fraction unit)
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}


def _truncated(name, number, off, detail):
    return CaptureError(f"{name}: frame {number} at byte {off} is truncated ({detail})",
                        number, off)


def _pcap(s: _Stream, name: str, bo: str, frac_ns: int, info: CaptureInfo | None,
          on_interface: InterfaceHook | None):
    if not s.fill(24):
        raise CaptureError(f"{name}: pcap file header truncated "
                           f"({len(s.buf)} of 24 bytes)", 0, 0)
    linktype = struct.unpack_from(bo + "I", s.buf, 20)[0] & 0xFFFF  # upper bits: FCS info
    if info is not None:
        snaplen = struct.unpack_from(bo + "I", s.buf, 16)[0]
        info.sections.append(Section(None, None, [Interface(None, None, linktype, snaplen)]))
    if on_interface is not None:
        on_interface(0, 0, linktype, None)
    s.pos = 24
    unpack = struct.Struct(bo + "IIII").unpack_from
    number = 0
    # Hot loop: locals only, and the buffer is refilled only at a chunk edge.
    buf, pos, n = s.buf, 24, len(s.buf)
    while True:
        if n - pos < 16:
            s.pos = pos
            if not s.fill(16):
                left = len(s.buf) - s.pos
                if not left:
                    return number
                raise _truncated(name, number + 1, s.base + s.pos,
                                 f"record header needs 16 bytes, {left} left")
            buf, pos, n = s.buf, s.pos, len(s.buf)
        sec, frac, incl, orig = unpack(buf, pos)
        end = pos + 16 + incl
        if end > n:
            if incl > _MAX_RECORD:
                raise CaptureError(f"{name}: frame {number + 1} at byte {s.base + pos} "
                                   f"has implausible length {incl}", number + 1, s.base + pos)
            s.pos = pos
            if not s.fill(16 + incl):
                raise _truncated(name, number + 1, s.base + s.pos, f"header says {incl} "
                                 f"bytes, {len(s.buf) - s.pos - 16} left")
            buf, pos, n = s.buf, s.pos, len(s.buf)
            end = pos + 16 + incl
        number += 1
        yield Record(number, s.base + pos, sec * 1_000_000_000 + frac * frac_ns,
                     linktype, buf[pos + 16:end], orig, 0, None, None)
        pos = end


def _iface(linktype: int, snaplen: int, opts, bo: str) -> tuple:
    """IDB -> (linktype, name, snaplen, mul, div, shift, offset_ns) where
    time_ns = ((ts * mul) // div >> shift) + offset_ns.  Default 10^-6 s."""
    name, mul, div, shift, offset_ns = None, 1000, 1, 0, 0
    for code, val in opts:
        if code == 2:
            name = val.decode("utf-8", "replace")
        elif code == 9 and val:
            exp = val[0] & 0x7F
            if val[0] & 0x80:  # 2^-exp seconds per tick
                mul, div, shift = 1_000_000_000, 1, exp
            elif exp <= 9:
                mul, div, shift = 10 ** (9 - exp), 1, 0
            else:
                mul, div, shift = 1, 10 ** (exp - 9), 0
        elif code == 14 and len(val) == 8:  # if_tsoffset, whole seconds
            offset_ns = struct.unpack(bo + "q", val)[0] * 1_000_000_000
    return (linktype, name, snaplen, mul, div, shift, offset_ns)


def _options(buf: bytes, pos: int, end: int, bo: str) -> list[tuple[int, bytes]]:
    """(code, value) pairs of an option list, stopping at opt_endofopt."""
    hdr = _S[bo][0].unpack_from
    out = []
    while pos + 4 <= end:
        code, length = hdr(buf, pos)
        if code == 0:
            break
        out.append((code, buf[pos + 4:pos + 4 + length]))
        pos += 4 + length + ((-length) & 3)
    return out


# Per byte order: option header, block header, EPB header, trailer u32.
_S = {bo: (struct.Struct(bo + "HH"), struct.Struct(bo + "II"),
           struct.Struct(bo + "8xIIIII"), struct.Struct(bo + "I")) for bo in "<>"}
_SHB_TYPE = 0x0A0D0D0A  # palindromic: reads the same in either byte order


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _section(info: CaptureInfo, opts) -> None:
    comments = [_text(v) for code, v in opts if code == 1]
    application = next((_text(v) for code, v in opts if code == 4), None)
    info.sections.append(Section("\n".join(comments) if comments else None, application))


def _interface(info: CaptureInfo, linktype: int, snaplen: int, opts) -> None:
    name = next((_text(v) for code, v in opts if code == 2), None)
    description = next((_text(v) for code, v in opts if code == 3), None)
    if not info.sections:  # an IDB before any SHB is caught as corruption elsewhere; stay safe
        info.sections.append(Section(None, None))
    info.sections[-1].interfaces.append(Interface(name, description, linktype, snaplen))


def _names(info: CaptureInfo, buf: bytes, pos: int, end: int, bo: str) -> None:
    """An NRB's records: type 1 (IPv4) or 2 (IPv6), the address, then NUL-terminated names."""
    hdr = _S[bo][0].unpack_from
    while pos + 4 <= end:
        rtype, length = hdr(buf, pos)
        if rtype == 0:
            break
        size = {1: 4, 2: 16}.get(rtype)
        value = buf[pos + 4:pos + 4 + length]
        if size and len(value) > size:
            names = [_text(n) for n in value[size:].split(b"\0") if n]
            info.add_names(str(ipaddress.ip_address(value[:size])), names)
        pos += 4 + length + ((-length) & 3)


def _pcapng(s: _Stream, name: str, info: CaptureInfo | None, on_interface: InterfaceHook | None):
    number = section = 0
    bo = "<"
    ohdr, hdr, epb, u32 = (st.unpack_from for st in _S[bo])
    ifaces: list[tuple] = []
    buf, pos, n = s.buf, s.pos, len(s.buf)
    while True:
        if n - pos < 12:
            s.pos = pos
            if not s.fill(12):
                left = len(s.buf) - s.pos
                if not left:
                    return number
                raise _truncated(name, number + 1, s.base + s.pos,
                                 f"block header needs 12 bytes, {left} left")
            buf, pos, n = s.buf, s.pos, len(s.buf)
        btype, total = hdr(buf, pos)
        if btype == _SHB_TYPE:  # new section: learn its byte order
            bom = buf[pos + 8:pos + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise CaptureError(f"{name}: bad pcapng byte-order magic 0x{bom.hex()} "
                                   f"at byte {s.base + pos}", number + 1, s.base + pos)
            bo = "<" if bom[0] == 0x4D else ">"
            ohdr, hdr, epb, u32 = (st.unpack_from for st in _S[bo])
            btype, total = hdr(buf, pos)
            ifaces = []  # interface ids are per section
            section += 1
        if total < 12 or total & 3 or total > _MAX_RECORD:
            off = s.base + pos
            raise CaptureError(f"{name}: corrupt block at byte {off} (type 0x{btype:x}, "
                               f"length {total})", number + 1, off)
        if n - pos < total:
            s.pos = pos
            if not s.fill(total):
                kind = "block" if btype in (2, 3, 6) else f"block type 0x{btype:x}"
                raise _truncated(name, number + 1, s.base + s.pos, f"{kind} says {total} "
                                 f"bytes, {len(s.buf) - s.pos} left")
            buf, pos, n = s.buf, s.pos, len(s.buf)
        off = s.base + pos
        end = pos + total - 4
        if u32(buf, end)[0] != total:
            raise CaptureError(f"{name}: corrupt block at byte {off}: trailing length "
                               f"differs from {total}", number + 1, off)
        if btype == 6 or btype == 2:  # EPB, obsolete PB
            if btype == 6:
                ifid, hi, lo, caplen, orig = epb(buf, pos)
            else:
                ifid, _drops, hi, lo, caplen, orig = struct.unpack_from(
                    bo + "HHIIII", buf, pos + 8)
            data_start = pos + 28
            opt_start = data_start + caplen + ((-caplen) & 3)
            if opt_start > end or ifid >= len(ifaces):
                why = (f"captured length {caplen} exceeds block" if opt_start > end
                       else f"refers to undefined interface {ifid}")
                raise CaptureError(f"{name}: frame {number + 1} at byte {off} {why}",
                                   number + 1, off)
            linktype, ifname, _snap, mul, div, shift, tsoff = ifaces[ifid]
            comment = None
            while opt_start + 4 <= end:  # inline option scan: only comments matter
                code, length = ohdr(buf, opt_start)
                if code == 0:
                    break
                if code == 1:
                    c = buf[opt_start + 4:opt_start + 4 + length].decode("utf-8", "replace")
                    comment = c if comment is None else comment + "\n" + c
                opt_start += 4 + length + ((-length) & 3)
            number += 1
            yield Record(number, off, ((((hi << 32) | lo) * mul) // div >> shift) + tsoff,
                         linktype, buf[data_start:data_start + caplen], orig,
                         ifid, ifname, comment)
        elif btype == 3:  # SPB: interface 0, no timestamp, caplen implied
            if not ifaces:
                raise CaptureError(f"{name}: frame {number + 1} at byte {off} refers to "
                                   "undefined interface 0", number + 1, off)
            linktype, ifname, snaplen = ifaces[0][:3]
            orig = u32(buf, pos + 8)[0]
            caplen = min(orig, total - 16, snaplen or orig)
            number += 1
            yield Record(number, off, 0, linktype, buf[pos + 12:pos + 12 + caplen],
                         orig, 0, ifname, None)
        elif btype == 1:  # IDB
            linktype, _res, snaplen = struct.unpack_from(bo + "HHI", buf, pos + 8)
            opts = _options(buf, pos + 16, end, bo)
            ifaces.append(_iface(linktype, snaplen, opts, bo))
            if info is not None:
                _interface(info, linktype, snaplen, opts)
            if on_interface is not None:
                on_interface(section - 1, len(ifaces) - 1, linktype, ifaces[-1][1])
        elif info is not None and btype == _SHB_TYPE:
            _section(info, _options(buf, pos + 24, end, bo))
        elif info is not None and btype == 4:  # NRB
            _names(info, buf, pos + 8, end, bo)
        # ISB, DSB, custom and unknown blocks: nothing to yield.
        pos += total
