"""
The ``dataplane`` Wireshark configuration profile: ``dataplane wireshark-profile``.

This module owns what the profile holds and where Wireshark looks for it.
A profile is a folder of Wireshark's own configuration files; we write:

- ``decode_as_entries``: UDP ``se_tunnel_udp_port`` (1550) decoded as VXLAN,
  so ``tshark -C dataplane`` and Wireshark decode the SE-to-SE tunnel
  without ``-d``;
- ``preferences``: packet-list columns for the interface (the segment) and
  the frame comment (who sent the frame and why), and network name
  resolution on, from the capture's name-resolution block only (no
  external resolver is asked);
- ``colorfilters``: drops, controller events, SE heartbeats, TCP resets,
  the SE-to-SE tunnel, flow probes, then one colour per SE (frames whose
  comment starts with ``se-N``), the router and the servers.  The first
  rule that matches a frame colours it, so the order is the priority;
- ``recent``: column widths, so the comment column is wide enough to read.

File formats follow Wireshark 4.0 (epan/decode_as.c, epan/color_filters.c,
epan/prefs.c, ui/recent.c): ``decode_as_entry: table,selector,initial,
current``; ``@name@filter@[bg r,g,b][fg r,g,b]`` with 16-bit channels;
``key: value`` preferences; ``column.width: format, width, ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..files import write_atomically
from ..nodes.heartbeat import ETHERTYPE_HEARTBEAT
from ..scenario import SeGroup
from .colours import NEUTRAL, SE_PAIRS, rgb

PROFILE = "dataplane"
TUNNEL_PORT = SeGroup().se_tunnel_udp_port  # the scenario's default; flow probes use the port above
#: SE data-path heartbeats are Ethernet frames of this type (nodes/heartbeat.py has the format).
HEARTBEAT_ETHERTYPE = ETHERTYPE_HEARTBEAT
#: Control-plane events arrive on this capture interface, as syslog over UDP 514.
CONTROLLER_INTERFACE = "controller"
DROPPED_MARK = "[DROPPED"
#: Colouring rules for se-1 ... se-12; SE colours repeat after len(SE_PAIRS).
SE_RULES = 12


@dataclass(frozen=True)
class ColourRule:
    name: str
    filter: str
    background: str  # "#rrggbb"
    foreground: str = "#000000"

    def line(self) -> str:
        if "@" in self.name or "@" in self.filter or "\n" in self.filter:
            raise ValueError(f"colour rule {self.name!r}: '@' and newlines cannot appear in colorfilters")
        bg, fg = (",".join(str(channel * 257) for channel in rgb(colour))  # 8 -> 16 bits per channel
                  for colour in (self.background, self.foreground))
        return f"@{self.name}@{self.filter}@[{bg}][{fg}]"


def colour_rules(tunnel_port: int = TUNNEL_PORT) -> list[ColourRule]:
    """The rules in priority order: what is rare and important first, then who sent the frame."""
    rules = [
        ColourRule("dataplane: dropped", f'frame.comment contains "{DROPPED_MARK}" || frame.comment contains "[LOST"',
                   "#000000", "#ff6060"),
        ColourRule("dataplane: controller event",
                   f'frame.interface_name == "{CONTROLLER_INTERFACE}" || syslog', "#ffdd57"),
        ColourRule("dataplane: SE heartbeat", f"eth.type == 0x{HEARTBEAT_ETHERTYPE:04x}", "#ececec", "#6e6e6e"),
        ColourRule("dataplane: TCP reset", "tcp.flags.reset == 1", "#a40000", "#fffc9c"),
        ColourRule("dataplane: SE-to-SE tunnel", f"vxlan || udp.port == {tunnel_port}", "#005f73", "#ffffff"),
        ColourRule("dataplane: flow probe", f"udp.port == {tunnel_port + 1}", "#5a3282", "#ffffff"),
    ]
    rules += [ColourRule(f"dataplane: se-{n}", f'frame.comment matches "^se-{n} "',
                         SE_PAIRS[(n - 1) % len(SE_PAIRS)][1]) for n in range(1, SE_RULES + 1)]
    rules += [ColourRule("dataplane: router", 'frame.comment matches "^gw "', "#f4f4f4"),
              ColourRule("dataplane: pool servers", 'frame.comment matches "^server-"', NEUTRAL[1])]
    return rules


#: (title, format) of each packet-list column; custom columns are "%Cus:field:occurrence:R(esolved)".
COLUMNS = (
    ("No.", "%m", 60), ("Time", "%t", 110), ("Interface", "%Cus:frame.interface_name:0:R", 80),
    ("Source", "%s", 120), ("Destination", "%d", 120), ("Protocol", "%p", 70), ("Length", "%L", 60),
    ("Info", "%i", 420), ("Comment", "%Cus:frame.comment:0:R", 760),
)


def _header(what: str) -> str:
    return (f"# {what} of the Wireshark profile \"{PROFILE}\", written by dataplane {__version__}\n"
            "# (dataplane wireshark-profile). Wireshark rewrites it when you change the profile.\n")


def decode_as_entries(tunnel_port: int = TUNNEL_PORT) -> str:
    return _header("Decode As entries") + f"decode_as_entry: udp.port,{tunnel_port},(none),VXLAN\n"


def preferences() -> str:
    columns = ",\n".join(f'\t"{title}", "{fmt}"' for title, fmt, _ in COLUMNS)
    return (_header("Preferences")
            + f"gui.column.format:\n{columns}\n"
            + "# Names from the capture's name-resolution block (the VIP, SEs, servers); no DNS is asked.\n"
            + "nameres.network_name: TRUE\n"
            + "nameres.use_external_name_resolver: FALSE\n"
            + "nameres.dns_pkt_addr_resolution: FALSE\n")


def colorfilters(tunnel_port: int = TUNNEL_PORT) -> str:
    return _header("Colouring rules") + "".join(rule.line() + "\n" for rule in colour_rules(tunnel_port))


def recent() -> str:
    widths = ", ".join(f"{fmt.rsplit(':', 2)[0] if fmt.startswith('%Cus') else fmt}, {width}"
                       for _, fmt, width in COLUMNS)
    return (_header("Recent settings")
            + f"column.width: {widths}\n"
            + "gui.packet_list_colorize: TRUE\n"
            + "gui.time_format: RELATIVE\n")


def profile_files(tunnel_port: int = TUNNEL_PORT) -> dict[str, str]:
    return {"decode_as_entries": decode_as_entries(tunnel_port), "preferences": preferences(),
            "colorfilters": colorfilters(tunnel_port), "recent": recent()}


def write_profile(folder: str | os.PathLike, tunnel_port: int = TUNNEL_PORT) -> Path:
    """Write the profile into ``folder``/dataplane (a folder of profiles); return the profile's folder."""
    target = Path(folder) / PROFILE
    for name, text in profile_files(tunnel_port).items():
        write_atomically(target / name, text.encode("utf-8"))
    return target


def config_dir(environ: dict | None = None) -> Path:
    """Wireshark's personal configuration folder, found as Wireshark 4 finds it.

    WIRESHARK_CONFIG_DIR wins; on Windows it is %APPDATA%\\Wireshark; elsewhere
    $XDG_CONFIG_HOME/wireshark (~/.config/wireshark), unless only the old ~/.wireshark exists.
    """
    env = os.environ if environ is None else environ
    if env.get("WIRESHARK_CONFIG_DIR"):
        return Path(env["WIRESHARK_CONFIG_DIR"])
    if os.name == "nt":
        return Path(env.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "Wireshark"
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "wireshark"
    legacy = home / ".wireshark"
    return legacy if legacy.is_dir() and not xdg.is_dir() else xdg


def install_profile(environ: dict | None = None, tunnel_port: int = TUNNEL_PORT) -> Path:
    """Write the profile under the user's Wireshark configuration folder; return its folder."""
    return write_profile(config_dir(environ) / "profiles", tunnel_port)
