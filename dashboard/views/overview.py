"""Page script (see incident_dashboard.pages.overview)."""

from incident_dashboard.pages.overview import render

render()
