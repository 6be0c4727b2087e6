"""Pieces every page uses: settings, the repository, time windows, auto-refresh, empty states, formats."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlparse

import altair as alt
import pandas as pd
import streamlit as st

from incident_contracts.settings import Settings, SettingsError, get_settings
from incident_dashboard.ui import charts
from incident_rca.data import Freshness, Repository, get_repository
from incident_rca.data.mirror import MirrorStatus

REFRESH_CHOICES = {"Off": None, "10 s": 10, "30 s": 30, "1 min": 60}
REFRESH_KEY = "auto_refresh"
SEVERITY_BADGE = {"P1": "red", "P2": "orange", "P3": "yellow", "P4": "blue"}
STATUS_BADGE = {"open": "red", "resolved": "green"}

TABLE_HINTS = {
    "incident_updates": "The Spark job writes it when it opens its first incident.",
    "events": "The Spark job writes it as it consumes the `logs.events` topic.",
    "dead_letter": "The Spark job writes it when a Kafka record cannot be decoded; none so far is good news.",
    "metrics": "The Spark job writes one row per micro-batch once it is running.",
}


def settings() -> Settings:
    """The configuration, or a readable error on the page (and stop) when it is invalid."""
    try:
        return get_settings()
    except SettingsError as exc:
        st.error(f"**The configuration is invalid.**\n\n```\n{exc}\n```")
        st.stop()
        raise  # unreachable: st.stop() raises


def repository() -> Repository:
    return get_repository(settings())


@dataclass(frozen=True)
class Window:
    label: str
    start: datetime
    end: datetime
    bucket: str  # DuckDB interval, e.g. "10 minutes"

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    @property
    def step(self) -> pd.Timedelta:
        return pd.Timedelta(self.bucket)


_WINDOWS = {"1 h": timedelta(hours=1), "6 h": timedelta(hours=6), "24 h": timedelta(hours=24),
            "7 d": timedelta(days=7), "All": None}


def _bucket_for(span: timedelta) -> str:
    minutes = max(1, span.total_seconds() / 60 / 60)  # about 60 buckets across the window
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440):
        if step >= minutes:
            return f"{step} minutes"
    return f"{math.ceil(minutes / 1440)} days"


def time_window(key: str, freshness: Freshness, default: str = "6 h", first: datetime | None = None,
                zoom_to_data: bool = False) -> Window:
    """A window selector; windows end at the newest data (see Freshness.reference_time).

    ``first`` is the oldest data: the start of the "All" window, and with ``zoom_to_data`` the start of
    any window that reaches further back than the data (so a pipeline that has run for ten minutes
    fills its charts with one-minute buckets instead of two bars in a six-hour frame).
    """
    choice = st.segmented_control("Time window", list(_WINDOWS), default=default, key=key,
                                  help="Windows end at the newest data, so a stopped or replayed pipeline still "
                                       "shows its last hours.") or default
    end = freshness.reference_time + timedelta(seconds=1)
    span = _WINDOWS[choice]
    start = (first or end - timedelta(days=1)) if span is None else end - span
    if zoom_to_data and first is not None and first > start:
        start = first.replace(second=0, microsecond=0)
    start = min(start, end - timedelta(minutes=1))
    return Window(choice, start, end, _bucket_for(end - start))


def chart(figure: alt.TopLevelMixin) -> None:
    """Draw an Altair chart across the container's width (see :func:`charts.to_vega_lite`)."""
    st.vega_lite_chart(charts.to_vega_lite(figure), width="stretch")


def refresh_every() -> int | None:
    return REFRESH_CHOICES.get(st.session_state.get(REFRESH_KEY, "Off"))


def live(body: Callable[[], None]) -> None:
    """Run ``body`` as a fragment that reruns on its own at the selected auto-refresh interval."""
    interval = refresh_every()
    st.fragment(body, run_every=interval)()


def data_caption(freshness: Freshness) -> None:
    newest = freshness.latest_event_time or freshness.latest_incident_update
    if newest is None:
        when = "none yet"
    else:
        age = freshness.age_seconds(newest)
        when = f"{freshness.reference_time:%Y-%m-%d %H:%M:%S} UTC" + (f" ({fmt_age(age)} ago)" if age is not None
                                                                     else "")
    interval = refresh_every()
    refresh = f"auto-refresh every {interval} s" if interval else "auto-refresh off"
    st.caption(f"Newest data: {when} · {refresh} · all times UTC")


def table_notice(status: MirrorStatus, what: str) -> bool:
    """Explain a table that cannot be read, or is missing or empty (returns True when there is nothing to show)."""
    hint = TABLE_HINTS.get(status.table, "")
    if status.error:
        st.error(f"**The {what} table cannot be read.** {status.error}", icon=":material/error:")
        return status.empty
    if not status.exists:
        st.info(f"**No {what} yet.** There is no table at `{status.location}`. {hint} Run the pipeline with "
                "`make demo` (or, with `make up` running, `make trigger-dag`), or try the dashboard on demo data: "
                "`python -m incident_dashboard.demo --data-dir /tmp/demo` then "
                "`DATA_DIR=/tmp/demo streamlit run dashboard/app.py`.",
                icon=":material/hourglass_empty:")
        return True
    if status.empty:
        st.info(f"**No {what} yet.** The table `{status.location}` holds no rows yet (version {status.version}). "
                f"{hint}", icon=":material/hourglass_empty:")
        return True
    if status.unreadable:
        st.warning(f"{len(status.unreadable)} file(s) of `{status.table}` version {status.version} could not be "
                   f"read and are left out (damaged, or deleted while the version still names them): "
                   f"{', '.join(status.unreadable[:3])}", icon=":material/warning:")
    return False


def fmt_age(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "n/a"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_duration(delta: timedelta | pd.Timedelta | None) -> str:
    if delta is None or pd.isna(delta):
        return "-"
    return fmt_age(pd.Timedelta(delta).total_seconds())


def fmt_time(value: datetime | pd.Timestamp | None) -> str:
    if value is None or pd.isna(value):
        return "-"
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def fmt_pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}%"


def incident_link(incident_id: str) -> str:
    """Relative deep link to one incident (works behind any host and port)."""
    return f"incident?id={quote(incident_id)}"


def signed_in_user() -> str | None:
    """The user the login proxy signed in (compose: dashboard-proxy sets X-Forwarded-User; the dashboard has
    no other way in there), or None without a login."""
    try:
        user = (st.context.headers.get("X-Forwarded-User") or "").strip()
    except Exception:  # outside a request (tests, bare mode)
        user = ""
    return user or None


def host_of_request() -> str:
    try:
        url = st.context.url
    except Exception:  # outside a request (tests, bare mode)
        url = None
    return (urlparse(url).hostname if url else None) or "localhost"


def ui_links(cfg: Settings) -> dict[str, str | None]:
    """URLs of the Spark, Airflow and Kafka UIs as a browser on this host would reach them."""
    host = host_of_request()
    return {"Spark UI": f"http://{host}:{cfg.spark_ui_port}", "Airflow": f"http://{host}:{cfg.airflow_port}",
            "Kafka UI": cfg.kafka_ui_url or None}
