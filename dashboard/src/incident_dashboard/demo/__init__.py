"""Demo and fixture data: realistic tables written through the shared schemas."""

from incident_dashboard.demo.builder import DemoConfig, DemoSummary, IncidentPlan, build_demo_data
from incident_dashboard.demo.scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "DemoConfig", "DemoSummary", "IncidentPlan", "Scenario", "build_demo_data"]
