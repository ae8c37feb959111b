"""
``dataplane wireshark-profile [--install | --out DIR] [--tunnel-port N]``: the command over ``tools.wireshark_profile``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK, UsageError
from ..tools import wireshark_profile as profile


def register(commands) -> None:
    parser = commands.add_parser(
        "wireshark-profile", help="write or install the 'dataplane' Wireshark configuration profile",
        description="Write the 'dataplane' Wireshark profile: Decode As UDP 1550 -> VXLAN (the SE-to-SE "
                    "tunnel), columns for the interface and the frame comment, colouring rules per SE and "
                    "for the tunnel, drops, resets, heartbeats and controller events, and name resolution "
                    "from the capture's name-resolution block. Then: wireshark -C dataplane CAPTURE, or "
                    "tshark -C dataplane -r CAPTURE.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--install", action="store_true",
                       help="install it in your Wireshark configuration folder (WIRESHARK_CONFIG_DIR, else "
                            "$XDG_CONFIG_HOME/wireshark or ~/.config/wireshark), replacing an older one")
    where.add_argument("--out", type=Path, default=None,
                       help="write it as DIR/dataplane, a folder Wireshark's Configuration Profiles dialog "
                            "imports (default: out/wireshark-profiles)")
    parser.add_argument("--tunnel-port", type=int, default=profile.TUNNEL_PORT, metavar="N",
                        help=f"the scenario's se_tunnel_udp_port (default {profile.TUNNEL_PORT})")
    parser.set_defaults(handler=_cmd_profile)


def _cmd_profile(args) -> int:
    if not 1 <= args.tunnel_port <= 65534:
        raise UsageError(f"--tunnel-port: must be between 1 and 65534, got {args.tunnel_port}")
    try:
        if args.install:
            folder = profile.install_profile(tunnel_port=args.tunnel_port)
        else:
            folder = profile.write_profile(args.out or Path("out/wireshark-profiles"), args.tunnel_port)
    except OSError as error:
        raise UsageError(f"{error.filename or 'profile'}: cannot write: {error.strerror or error}") from None
    print(f"wrote the Wireshark profile '{profile.PROFILE}': {folder}")
    if args.install:
        print(f"use it: wireshark -C {profile.PROFILE} CAPTURE   or   tshark -C {profile.PROFILE} -r CAPTURE")
    else:
        print(f"install it: copy {folder} into your Wireshark profiles folder "
              f"({profile.config_dir() / 'profiles'}), or run dataplane wireshark-profile --install")
    return EXIT_OK
