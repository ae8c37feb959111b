"""
Scenario files: TOML in, validated frozen dataclasses out (see ``schema``).
"""

from .schema import (UDP_PAYLOAD_MAX, Event, HealthMonitor, Network, Pool, Scenario, ScenarioError, SeGroup,
                     Server, SeSpec, Traffic, VirtualService, load, parse, with_seed)

__all__ = ["UDP_PAYLOAD_MAX", "Event", "HealthMonitor", "Network", "Pool", "Scenario", "ScenarioError", "SeGroup",
           "Server", "SeSpec", "Traffic", "VirtualService", "load", "parse", "with_seed"]
