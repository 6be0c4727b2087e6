"""The dashboard's side of the root-cause analysis: Markdown exports and the per-user Gemini rate limit.

The analysis itself (Gemini, the offline analyzer, the prompt, redaction, the store) is the
``incident_rca`` package, shared with Airflow's triage task.
"""
