"""
One colour per SE, the same in the report's plots and in Wireshark's colouring rules.

The pairs are matplotlib's ``tab20`` (a strong colour and its light tint):
the strong one draws an SE's line in a plot, the light one is the packet
list background of the frames it sent.  Red is left out (drops and resets
are red in both places) and so is grey (the router and the servers).
"""

from __future__ import annotations

import re

#: (strong, light) per SE, in order: se-1 gets the first pair.
SE_PAIRS = (
    ("#1f77b4", "#aec7e8"),  # blue
    ("#ff7f0e", "#ffbb78"),  # orange
    ("#2ca02c", "#98df8a"),  # green
    ("#9467bd", "#c5b0d5"),  # purple
    ("#8c564b", "#c49c94"),  # brown
    ("#e377c2", "#f7b6d2"),  # pink
    ("#bcbd22", "#dbdb8d"),  # olive
    ("#17becf", "#9edae5"),  # cyan
)
DROP = "#d62728"
NEUTRAL = ("#7f7f7f", "#c7c7c7")


def se_index(name: str, fallback: int = 0) -> int:
    """se-N -> N - 1; any other name keeps its ``fallback`` place (its order in the run)."""
    match = re.fullmatch(r"se-(\d+)", name)
    return int(match.group(1)) - 1 if match and int(match.group(1)) > 0 else fallback


def se_colour(name: str, fallback: int = 0, light: bool = False) -> str:
    return SE_PAIRS[se_index(name, fallback) % len(SE_PAIRS)][1 if light else 0]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
