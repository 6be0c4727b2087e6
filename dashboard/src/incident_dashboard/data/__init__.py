"""Data access over the Parquet tables (see :mod:`incident_dashboard.data.repository`)."""

from incident_dashboard.data.repository import (
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
