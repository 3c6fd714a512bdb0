"""The surge lab: scenarios, a discrete-event simulator on the gateway's own algorithms, a live
load generator, capacity planning and self-contained reports (see docs/scenarios.md)."""

from seawall.surge.scenario import Scenario, ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from seawall.surge.sim import SimResult, simulate

__all__ = ["Scenario", "ScenarioError", "SimResult", "load_scenario", "parse_scenario", "shipped_scenarios",
           "simulate"]
