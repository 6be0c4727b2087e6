"""Streamlit dashboard over the incident tables, showing each incident's root-cause analysis.

Sub-packages: ``pages`` and ``ui`` (the Streamlit app), ``analysis`` (Markdown exports and the per-user
rate limit), ``actions`` (the incident actions audit table), ``notify`` (the notifier process), ``data``
(the Kafka view) and ``demo`` (demo tables). The tables are read, and incidents analysed, through the
``incident_rca`` package.
"""
