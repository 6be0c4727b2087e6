"""Page script (see incident_dashboard.pages.pipeline)."""

from incident_dashboard.pages.pipeline import render

render()
