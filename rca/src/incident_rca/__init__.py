"""Root-cause analysis of incidents: Gemini with structured output, or the offline runbook matcher.

Used by the dashboard (the incident page, the notifier) and by Airflow's triage task; it imports neither
Streamlit nor the dashboard. Entry point: :func:`incident_rca.service.analyze`. ``incident_rca.data`` is
the one read path over the incident tables (the dashboard's pages query it too).
"""
