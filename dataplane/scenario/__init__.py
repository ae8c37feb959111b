"""
Scenario files: TOML in, validated frozen dataclasses out (see ``schema``).
"""

from .reading import MAX_SCENARIO_BYTES, load
from . import networks
from .schema import (UDP_PAYLOAD_MAX, Event, HealthMonitor, Network, Pool, Scenario, ScenarioError, SeGroup,
                     Server, SeSpec, Traffic, VirtualService, key_reference, parse, with_seed)

__all__ = ["networks", "MAX_SCENARIO_BYTES", "UDP_PAYLOAD_MAX", "Event", "HealthMonitor", "Network", "Pool", "Scenario",
           "ScenarioError", "SeGroup", "Server", "SeSpec", "Traffic", "VirtualService", "key_reference", "load",
           "parse", "with_seed"]
