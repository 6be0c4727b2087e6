"""Root-cause analysis: Gemini with structured output, or the offline runbook matcher.

Entry point: :func:`incident_dashboard.analysis.service.analyze`.
"""
