"""
The regression kit: packet-test verbs over a live network, masks, goldens, capture diff and check.

``DataplaneNet`` (built by ``start_network``, or by the pytest fixture
``dataplane_net`` of ``plugin``) sends frames and checks what crossed each
segment; ``Mask`` names don't-care fields; ``assert_matches_golden``
compares a capture with a reviewed one.  Names are loaded on first use, so
that the pytest plugin, which pytest imports in every run of every project
that installed dataplane, stays cheap to import.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"DataplaneNet": ".net", "Seen": ".seen", "start_network": ".net", "summarize": ".explain",
         "Mask": "..wire.masks", "assert_matches_golden": ".golden"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
