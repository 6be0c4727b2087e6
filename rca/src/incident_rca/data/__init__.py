"""Reads of the incident tables, for the analysis and the dashboard (see :mod:`incident_rca.data.repository`)."""

from incident_rca.data.repository import (
    SEVERITIES,
    STATUSES,
    Freshness,
    IncidentFilter,
    IncidentPage,
    Repository,
    get_repository,
)

__all__ = ["SEVERITIES", "STATUSES", "Freshness", "IncidentFilter", "IncidentPage", "Repository",
           "get_repository"]
