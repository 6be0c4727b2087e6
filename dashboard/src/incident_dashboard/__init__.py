"""Streamlit dashboard over the incident tables, with Gemini and offline root-cause analysis.

Sub-packages: ``data`` (the one data-access layer over the Parquet tables), ``analysis`` (root-cause
analysis, callable without Streamlit), ``ui`` and ``pages`` (the Streamlit app).
"""
