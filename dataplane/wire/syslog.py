"""
Syslog messages as RFC 5424 lays them out, for UDP transport (RFC 5426).

The controller tells the SEs about control-plane events as syslog over UDP
port 514 on the management network, so that Wireshark dissects every event
frame (``syslog.msg`` holds the event's JSON).  Only what the emulator
sends is built here: no structured data, no process id.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

SYSLOG_PORT = 514
#: RFC 5424, 6.2.1: facility local0 (16); severities warning (4) and informational (6).
FACILITY_LOCAL0 = 16
WARNING, INFORMATIONAL = 4, 6
#: RFC 5426, 3.2: an IPv4 sender should keep a message to what one 1500-byte frame carries (1472 bytes).
MAX_MESSAGE = 1472
_NIL = "-"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(epoch_ns: int) -> str:
    """RFC 5424's TIMESTAMP (RFC 3339, UTC, microseconds) for nanoseconds since the Unix epoch."""
    moment = _EPOCH + timedelta(microseconds=epoch_ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header_field(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, or NILVALUE."""
    clean = "".join(c for c in text if "!" <= c <= "~")[:limit]
    return clean or _NIL


def message(severity: int, epoch_ns: int, hostname: str, app_name: str, msgid: str, text: str) -> bytes:
    """One syslog message, cut to ``MAX_MESSAGE`` bytes (RFC 5426 lets a sender cut a long message)."""
    pri = FACILITY_LOCAL0 * 8 + severity
    header = (f"<{pri}>1 {timestamp(epoch_ns)} {_header_field(hostname, 255)} {_header_field(app_name, 48)} "
              f"{_NIL} {_header_field(msgid, 32)} {_NIL}")
    # MSG-ANY (RFC 5424, 6.4): no BOM, since the text is the caller's ASCII (JSON escapes the rest).
    return f"{header} {text}".encode("ascii", "backslashreplace")[:MAX_MESSAGE]
