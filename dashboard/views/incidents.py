"""Page script (see incident_dashboard.pages.incidents)."""

from incident_dashboard.pages.incidents import render

render()
