"""The shared ranges and string shapes scenario sections declare their keys with (README, "Limits")."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .validation import MICROSECOND, YEAR, _num, _str

# A year of virtual time bounds every time: the ns clock and pcapng's 64-bit timestamps stay far from overflow.
_SECONDS = _num(float, 0.0, YEAR, "s")          # a delay or a moment: 0 means "at once"
_INTERVAL = _num(float, MICROSECOND, YEAR, "s")  # something that repeats: shorter would spin the clock
_SHORT_DELAY = _num(float, 0.0, 1.0, "s")       # per-hop latency and processing: no network takes longer
_PORT = _num(int, 1, 65535)
_COUNT = _num(int, 1, 1_000_000)
_SE_NAME_STR = _str(re.compile(r"[a-z0-9][a-z0-9-]*"), "SE name ([a-z0-9][a-z0-9-]*)", max_bytes=63)
_HOST_STR = _str(re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), "host name", max_bytes=253)
_HTTP_CODE = _str(re.compile(r"[1-5](xx|[0-9]{2})"), "HTTP status pattern (like 2xx or 200)", max_bytes=3)
# A health-monitor request is one TCP segment: MSS 1460 less the blank line that ends it.
HTTP_REQUEST_BYTES = 1456
MAX_SERVICE_ENGINES = 1000
MAX_HOSTS = 1000
MAX_SERVERS = 65_536
MAX_CLIENT_NETWORKS = 256
MAX_EVENTS = 100_000
MAX_VIRTUAL_SERVICES = 256
_dc = dataclass(frozen=True, slots=True)
