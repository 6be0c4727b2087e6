"""Page script (see incident_dashboard.pages.incident_detail)."""

from incident_dashboard.pages.incident_detail import render

render()
