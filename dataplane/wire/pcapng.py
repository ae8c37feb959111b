"""Hand-written pcapng WRITER for the emulator's captures.

Owns: turning (interface, ns timestamp, frame bytes, comment, direction)
into a pcapng file that tshark, capinfos, Scapy and our own
``capture_reader`` can read.  Reading lives in ``capture_reader``.

Why not a library: Scapy 2.8's pcapng writer cannot write name-resolution
blocks (NRB), ``if_description``, or ``if_tsresol`` (it truncates ns to
µs), always emits an unnamed empty IDB 0, and will not write to file
objects.  python-pcapng can do all of it but has been unmaintained since
2023 and is slow (~40k EPB/s).  The format is simple enough that ~200
lines of ``struct`` code give us exactly what we need at >1M frames/s.

File layout written: one little-endian section (SHB with shb_userappl and
an optional comment), then IDBs (if_name, if_description, if_tsresol=9),
NRBs, EPBs and ISBs in the order the caller asks for them.  Every block
is padded to 32 bits and carries its total length at both ends.
"""

from __future__ import annotations

import ipaddress
import os
import struct

__all__ = ["PcapngWriter"]

# Block types (pcapng spec, draft-ietf-opsawg-pcapng).
_SHB, _IDB, _NRB, _ISB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000004, 0x00000005, 0x00000006

# Option codes.
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_EPB_FLAGS = 2
_ISB_STARTTIME, _ISB_ENDTIME, _ISB_IFRECV, _ISB_IFDROP = 2, 3, 4, 5
_NRB_END, _NRB_IPV4, _NRB_IPV6 = 0, 1, 2

# Precompiled structs: the EPB header/trailer are the per-frame hot path.
_U32 = struct.Struct("<I")
_OPT_HDR = struct.Struct("<HH")
_BLOCK_HDR = struct.Struct("<II")
_EPB_HDR = struct.Struct("<IIIIIII")  # type, total, ifid, ts_hi, ts_lo, caplen, origlen
_IDB_BODY = struct.Struct("<HHI")  # linktype, reserved, snaplen
_SHB_BODY = struct.Struct("<IHHq")  # byte-order magic, major, minor, section length
_ISB_BODY = struct.Struct("<III")  # ifid, ts_hi, ts_lo
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by len % 4
_OPT_END_BYTES = b"\0\0\0\0"
# Pre-built epb_flags options for direction 0/1/2 so a directed frame
# costs no extra packing.
_DIR_OPTS = tuple(_OPT_HDR.pack(_EPB_FLAGS, 4) + _U32.pack(d) for d in (0, 1, 2))
_MAX_OPT = 0xFFFF


def _opt(code: int, value: bytes) -> bytes:
    """One option: code, unpadded length, value padded to 32 bits."""
    if len(value) > _MAX_OPT:
        raise ValueError(f"pcapng option {code} too long ({len(value)} bytes, max {_MAX_OPT})")
    return _OPT_HDR.pack(code, len(value)) + value + _PAD[len(value) & 3]


def _options(opts: list[bytes]) -> bytes:
    # An empty option list is omitted entirely (allowed by the spec);
    # otherwise it must end with opt_endofopt.
    return b"".join(opts) + _OPT_END_BYTES if opts else b""


class PcapngWriter:
    """Streaming pcapng writer.  ``fileobj`` is a binary file object
    (ideally buffered) or a path, in which case the writer owns the file."""

    def __init__(self, fileobj, application: str = "dataplane", comment: str | None = None):
        if isinstance(fileobj, (str, os.PathLike)):
            # Big buffer: millions of small writes go to memory, not syscalls.
            self._file = open(fileobj, "wb", buffering=1 << 20)
            self._owns_file = True
        else:
            self._file = fileobj
            self._owns_file = False
        self._write = self._file.write
        self._counts: list[int] = []  # frames written, per interface id
        self._snaplens: list[int] = []
        self._nif = 0
        self.closed = False
        opts = [_opt(_SHB_USERAPPL, application.encode("utf-8"))]
        if comment:
            opts.append(_opt(_OPT_COMMENT, comment.encode("utf-8")))
        # Section length -1 = "not specified": we stream, so we never seek back.
        self._block(_SHB, _SHB_BODY.pack(0x1A2B3C4D, 1, 0, -1) + _options(opts))

    # -- generic block framing ------------------------------------------
    def _block(self, btype: int, body: bytes) -> None:
        total = 12 + len(body) + ((-len(body)) & 3)
        self._write(_BLOCK_HDR.pack(btype, total) + body + _PAD[len(body) & 3] + _U32.pack(total))

    # -- public API -----------------------------------------------------
    def add_interface(self, name: str, description: str = "", linktype: int = 1,
                      snaplen: int = 262144) -> int:
        """Write an IDB; returns its interface id (0-based, in call order)."""
        opts = [_opt(_IF_NAME, name.encode("utf-8"))]
        if description:
            opts.append(_opt(_IF_DESCRIPTION, description.encode("utf-8")))
        # if_tsresol=9: timestamps are units of 10^-9 s, so ns go in unscaled.
        opts.append(_opt(_IF_TSRESOL, b"\x09"))
        self._block(_IDB, _IDB_BODY.pack(linktype, 0, snaplen) + _options(opts))
        self._counts.append(0)
        # snaplen 0 means "no limit" in pcapng.
        self._snaplens.append(snaplen or 0xFFFFFFFF)
        self._nif += 1
        return self._nif - 1

    def add_names(self, names: dict[str, str | list[str]]) -> None:
        """Write an NRB mapping IPv4/IPv6 addresses to one or more names.
        May be called any number of times (each call is one NRB)."""
        recs = []
        for addr, value in names.items():
            ip = ipaddress.ip_address(addr)  # raises ValueError on junk
            rtype = _NRB_IPV4 if ip.version == 4 else _NRB_IPV6
            hostnames = [value] if isinstance(value, str) else list(value)
            if not hostnames:
                raise ValueError(f"no names given for {addr}")
            rec = ip.packed + b"".join(n.encode("utf-8") + b"\0" for n in hostnames)
            recs.append(_opt(rtype, rec))  # NRB records share the option TLV layout
        if recs:
            self._block(_NRB, b"".join(recs) + _OPT_HDR.pack(_NRB_END, 0))

    def write_frame(self, interface_id: int, time_ns: int, frame: bytes,
                    comment: str | None = None, direction: int | None = None) -> None:
        """Write one EPB.  ``time_ns``: integer ns since epoch.
        ``direction``: 1 inbound, 2 outbound (0 unknown)."""
        if not 0 <= interface_id < self._nif:
            raise ValueError(f"interface id {interface_id} not defined "
                             f"({self._nif} interface(s) added)")
        origlen = len(frame)
        caplen = origlen
        if caplen > self._snaplens[interface_id]:
            caplen = self._snaplens[interface_id]
            frame = frame[:caplen]
        pad = _PAD[caplen & 3]
        if comment is None and direction is None:
            # Hot path: no options, one concatenation, one buffered write.
            total = 32 + caplen + len(pad)
            self._write(_EPB_HDR.pack(_EPB, total, interface_id, time_ns >> 32,
                                      time_ns & 0xFFFFFFFF, caplen, origlen)
                        + frame + pad + _U32.pack(total))
        else:
            opts = b""
            if comment is not None:
                opts = _opt(_OPT_COMMENT, comment.encode("utf-8"))
            if direction is not None:
                if direction not in (0, 1, 2):
                    raise ValueError(f"direction must be 0, 1 or 2, not {direction!r}")
                opts += _DIR_OPTS[direction]
            opts += _OPT_END_BYTES
            total = 32 + caplen + len(pad) + len(opts)
            self._write(_EPB_HDR.pack(_EPB, total, interface_id, time_ns >> 32,
                                      time_ns & 0xFFFFFFFF, caplen, origlen)
                        + frame + pad + opts + _U32.pack(total))
        self._counts[interface_id] += 1

    def write_commented(self, interface_id: int, time_ns: int, frame: bytes, comment: str) -> None:
        """Write one EPB with a comment: ``write_frame``'s fast path for the emulator's taps.

        The caller guarantees a defined interface and a frame within its snaplen.
        """
        text = comment.encode("utf-8")
        caplen = len(frame)
        comment_len = len(text)
        if comment_len > _MAX_OPT:
            raise ValueError(f"pcapng comment too long ({comment_len} bytes, max {_MAX_OPT})")
        total = 40 + caplen + (-caplen & 3) + comment_len + (-comment_len & 3)
        self._write(b"".join((
            _EPB_HDR.pack(_EPB, total, interface_id, time_ns >> 32, time_ns & 0xFFFFFFFF, caplen, caplen),
            frame, _PAD[caplen & 3], _OPT_HDR.pack(_OPT_COMMENT, comment_len), text, _PAD[comment_len & 3],
            _OPT_END_BYTES, _U32.pack(total))))
        self._counts[interface_id] += 1

    def write_statistics(self, interface_id: int, time_ns: int, received: int,
                         dropped: int | None = None) -> None:
        """Write an ISB with isb_ifrecv (and isb_ifdrop if given)."""
        if not 0 <= interface_id < self._nif:
            raise ValueError(f"interface id {interface_id} not defined "
                             f"({self._nif} interface(s) added)")
        opts = [_opt(_ISB_IFRECV, struct.pack("<Q", received))]
        if dropped is not None:
            opts.append(_opt(_ISB_IFDROP, struct.pack("<Q", dropped)))
        self._block(_ISB, _ISB_BODY.pack(interface_id, time_ns >> 32, time_ns & 0xFFFFFFFF)
                    + _options(opts))

    @property
    def frames_written(self) -> list[int]:
        """Frames written so far, indexed by interface id (a copy)."""
        return list(self._counts)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        """Flush; close the file only if we opened it from a path."""
        if self.closed:
            return
        self.closed = True
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> "PcapngWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
