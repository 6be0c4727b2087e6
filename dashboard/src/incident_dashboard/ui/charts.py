"""Altair charts of the dashboard. Pure functions: DataFrame in, chart out (no Streamlit calls).

Times are shown in UTC everywhere (``scale type utc``), like the tables, so a chart and a log line
can be compared without converting.

Speed: every rerun of a page builds its charts again, and Altair's JSON-schema checks cost more than
the queries behind a chart (a ``"field:N"`` shorthand or an ``alt.condition`` dict is parsed against
the whole Vega-Lite schema, about 10 ms each; validating a finished spec 50-100 ms). So encodings
are written as explicit channel objects, Altair's check of every object at creation is off in this
process, and :func:`to_vega_lite` turns a chart into the spec Streamlit draws without validating it
again. The tests validate every chart against the schema instead.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd
from altair.utils import schemapi

schemapi.disable_debug_mode()  # no schema check of each object at creation (see the module docstring)

SEVERITY_COLORS = {"P1": "#d6336c", "P2": "#f76707", "P3": "#f2b705", "P4": "#74a9cf"}
SEVERITY_SCALE = alt.Scale(domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values()))
ACCENT = "#4263eb"
SPAN_COLOR = "#e03131"


def _points(n: int) -> alt.OverlayMarkDef | bool:
    """Dots on a line with few points, so three batches do not look like a smooth trend."""
    return alt.OverlayMarkDef(size=22, filled=True) if n <= 40 else False


def band_height(rows: int, per_row: int = 30, extra: int = 70) -> int:
    """Chart height for a band axis: the height Vega-Lite gets includes axes and legend (autosize fit)."""
    return extra + per_row * max(1, rows)


def time_format(*columns: pd.Series) -> str:
    """Axis label format for the time span the columns cover: seconds for a few minutes, the day for
    several days (a fixed ``%H:%M`` repeats the same label on short spans and hides the day on long ones)."""
    values = pd.concat([pd.to_datetime(c, utc=True) for c in columns]) if columns else pd.Series(dtype=object)
    values = values.dropna()
    if values.empty:
        return "%H:%M"
    span = values.max() - values.min()
    if span <= pd.Timedelta(minutes=20):
        return "%H:%M:%S"
    if span <= pd.Timedelta(hours=36):
        return "%H:%M"
    return "%b %d %H:%M"


Span = tuple[datetime, datetime]


def _vl_datetime(moment: datetime) -> dict[str, Any]:
    """A Vega-Lite DateTime object in UTC (a scale domain given as epoch milliseconds is misread)."""
    t = pd.Timestamp(moment)
    t = t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")
    return {"year": t.year, "month": t.month, "date": t.day, "hours": t.hour, "minutes": t.minute,
            "seconds": t.second, "milliseconds": t.microsecond // 1000, "utc": True}


def _x_time(field: str = "bucket", title: str | None = None, frame: pd.DataFrame | None = None,
            span: Span | None = None) -> alt.X:
    """A UTC time axis; with ``span`` (the page's time window) it covers exactly that window, so the
    charts of one page line up whatever data each of them has."""
    if span is not None:
        fmt = time_format(pd.Series(span))
        scale = alt.Scale(type="utc", domain=[_vl_datetime(t) for t in span])
    else:
        fmt = time_format(frame[field]) if frame is not None and field in frame else "%H:%M"
        scale = alt.Scale(type="utc")
    return alt.X(f"{field}:T", scale=scale, axis=alt.Axis(format=fmt, labelAngle=0,
                                                                          title=title, grid=False))


def _utc_tooltip(field: str, title: str) -> alt.Tooltip:
    return alt.Tooltip(f"utcyearmonthdatehoursminutes({field}):T", title=title)


def severity_donut(frame: pd.DataFrame) -> alt.Chart:
    """Open incidents per severity; frame: severity, incidents."""
    base = alt.Chart(frame).encode(
        theta=alt.Theta("incidents:Q", stack=True),
        color=alt.Color("severity:N", scale=SEVERITY_SCALE, legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip("severity:N"), alt.Tooltip("incidents:Q", title="open incidents")],
    )
    ring = base.mark_arc(innerRadius=58, outerRadius=96, cornerRadius=3, padAngle=0.02)
    total = int(frame["incidents"].sum()) if not frame.empty else 0
    label = alt.Chart(pd.DataFrame({"text": [str(total)], "sub": ["open"]})).mark_text(
        fontSize=30, fontWeight="bold", dy=-6).encode(text=alt.Text("text:N"))
    sub = alt.Chart(pd.DataFrame({"text": ["open"]})).mark_text(fontSize=12, dy=18, color="#868e96").encode(
        text=alt.Text("text:N"))
    return (ring + label + sub).properties(height=240)


def _bucket_step(frame: pd.DataFrame, step: pd.Timedelta | None) -> pd.Timedelta:
    if step is not None:
        return pd.Timedelta(step)
    buckets = pd.Series(sorted(frame["bucket"].unique())) if not frame.empty else pd.Series(dtype=object)
    return buckets.diff().min() if len(buckets) > 1 else pd.Timedelta(minutes=10)


def incidents_over_time(frame: pd.DataFrame, span: Span | None = None, step: pd.Timedelta | None = None) -> alt.Chart:
    """Stacked bars of incidents opened per bucket and severity, each bar as wide as its bucket;
    frame: bucket, severity, incidents.

    The stacking is done here (rectangles from ``y0`` to ``y1``): Vega-Lite does not stack bars that
    have an end (``x2``), and without one a bar is a few pixels wide whatever its bucket."""
    data = frame.sort_values(["bucket", "severity"], ascending=[True, False], kind="stable")
    data = data.assign(bucket_end=data["bucket"] + _bucket_step(data, step),
                       y1=data.groupby("bucket")["incidents"].cumsum())
    data = data.assign(y0=data["y1"] - data["incidents"])
    return alt.Chart(data).mark_rect(cornerRadius=2, stroke="white", strokeWidth=0.5).encode(
        x=_x_time(frame=data, span=span),
        x2=alt.X2("bucket_end"),
        y=alt.Y("y1:Q", title="incidents opened", axis=alt.Axis(tickMinStep=1), scale=alt.Scale(zero=True)),
        y2=alt.Y2("y0"),
        color=alt.Color("severity:N", scale=SEVERITY_SCALE, legend=alt.Legend(orient="top", title=None)),
        tooltip=[_utc_tooltip("bucket", "from (UTC)"), alt.Tooltip("severity:N"), alt.Tooltip("incidents:Q")],
    ).properties(height=240)


def error_rate_over_time(frame: pd.DataFrame, services: list[str] | None = None,
                         span: Span | None = None) -> alt.Chart:
    """Error rate per service over time; frame: bucket, service, events, errors, error_rate."""
    data = frame if services is None else frame[frame["service"].isin(services)]
    highlight = alt.selection_point(fields=["service"], bind="legend")
    return alt.Chart(data).mark_line(strokeWidth=2, interpolate="monotone",
                                     point=_points(data["bucket"].nunique())).encode(
        x=_x_time(frame=data, span=span),
        y=alt.Y("error_rate:Q", title="error rate", axis=alt.Axis(format="%")),
        color=alt.Color("service:N", legend=alt.Legend(orient="right", title=None),
                        scale=alt.Scale(scheme="tableau10")),
        opacity=alt.OpacityValue(0.15, condition={"param": highlight.name, "value": 1.0}),
        tooltip=[_utc_tooltip("bucket", "time (UTC)"), alt.Tooltip("service:N"),
                 alt.Tooltip("error_rate:Q", format=".2%"), alt.Tooltip("errors:Q", format=","),
                 alt.Tooltip("events:Q", format=",")],
    ).add_params(highlight).properties(height=260)


def volume_over_time(frame: pd.DataFrame) -> alt.Chart:
    """Total events (area) and errors (bars) over time; frame: bucket, events, errors."""
    base = alt.Chart(frame).encode(x=_x_time(frame=frame))
    area = base.mark_area(opacity=0.25, color=ACCENT, line={"color": ACCENT}).encode(
        y=alt.Y("events:Q", title="events", axis=alt.Axis(format="~s")),
        tooltip=[_utc_tooltip("bucket", "time (UTC)"), alt.Tooltip("events:Q", format=","),
                 alt.Tooltip("errors:Q", format=","), alt.Tooltip("error_rate:Q", format=".2%")])
    errors = base.mark_bar(color=SPAN_COLOR, opacity=0.8).encode(y=alt.Y("errors:Q"))
    return (area + errors).properties(height=200)


def service_heatmap(frame: pd.DataFrame, span: Span | None = None, step: pd.Timedelta | None = None) -> alt.Chart:
    """Error rate per service and time bucket; frame: bucket, service, events, errors, error_rate."""
    data = frame.assign(bucket_end=frame["bucket"] + _bucket_step(frame, step))
    return alt.Chart(data).mark_rect(cornerRadius=2, stroke="white", strokeWidth=0.5).encode(
        x=_x_time(frame=data, span=span),
        x2=alt.X2("bucket_end"),
        y=alt.Y("service:N", title=None, sort=alt.EncodingSortField("errors", op="sum", order="descending"),
                axis=alt.Axis(labelOverlap=False, labelLimit=170)),
        color=alt.Color("error_rate:Q", title="error rate",
                        scale=alt.Scale(scheme="orangered", type="sqrt", domainMin=0),
                        legend=alt.Legend(format="%", orient="right")),
        tooltip=[_utc_tooltip("bucket", "from (UTC)"), alt.Tooltip("service:N"),
                 alt.Tooltip("error_rate:Q", format=".2%"), alt.Tooltip("errors:Q", format=","),
                 alt.Tooltip("events:Q", format=",")],
    ).properties(height=band_height(frame["service"].nunique() if not frame.empty else 1, 24, 40))


def noisiest_services(frame: pd.DataFrame) -> alt.Chart:
    """Errors per service, largest first; frame: service, events, errors, error_rate."""
    bars = alt.Chart(frame).mark_bar(cornerRadiusEnd=3, color=SPAN_COLOR).encode(
        x=alt.X("errors:Q", title="errors", axis=alt.Axis(format="~s")),
        y=alt.Y("service:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelLimit=170)),
        tooltip=[alt.Tooltip("service:N"), alt.Tooltip("errors:Q", format=","), alt.Tooltip("events:Q", format=","),
                 alt.Tooltip("error_rate:Q", format=".2%")],
    )
    text = bars.mark_text(align="left", dx=4, color="#495057").encode(text=alt.Text("error_rate:Q", format=".1%"))
    return (bars + text).properties(height=band_height(len(frame), 32, 50))


def _lanes(frame: pd.DataFrame) -> pd.Series:
    """Per service, the lowest lane where an incident does not overlap the previous one in that lane."""
    ordered = frame.sort_values("opened_at", kind="stable")
    lanes: dict[Any, int] = {}
    ends_by_service: dict[str, list[pd.Timestamp]] = {}
    for idx, service, opened, until in zip(ordered.index, ordered["service"], ordered["opened_at"],
                                           ordered["active_until"], strict=True):
        ends = ends_by_service.setdefault(service, [])
        lane = next((i for i, end in enumerate(ends) if end <= opened), len(ends))
        if lane == len(ends):
            ends.append(until)
        else:
            ends[lane] = until
        lanes[idx] = lane
    return pd.Series(lanes, index=frame.index, dtype="int64") if lanes else pd.Series(0, index=frame.index)


def incident_timeline(frame: pd.DataFrame) -> alt.Chart:
    """One bar per incident from opened_at to active_until, per service (overlaps stacked in lanes)."""
    data = frame.assign(lane=_lanes(frame)) if not frame.empty else frame.assign(lane=0)
    lanes = int(data["lane"].max()) + 1 if not data.empty else 1
    services = data["service"].nunique() if not data.empty else 1
    return alt.Chart(data).mark_bar(cornerRadius=3).encode(
        x=alt.X("opened_at:T", scale=alt.Scale(type="utc"),
                axis=alt.Axis(format=time_format(data["opened_at"], data["active_until"]) if not data.empty
                              else "%H:%M", title=None, labelAngle=0)),
        x2=alt.X2("active_until"),
        y=alt.Y("service:N", title=None, axis=alt.Axis(labelOverlap=False, labelLimit=170, grid=True)),
        yOffset=alt.YOffset("lane:O", scale=alt.Scale(paddingInner=0.25)),
        color=alt.Color("severity:N", scale=SEVERITY_SCALE, legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("incident_id:N"), alt.Tooltip("severity:N"), alt.Tooltip("status:N"),
                 alt.Tooltip("service:N"), alt.Tooltip("title:N"),
                 _utc_tooltip("opened_at", "opened (UTC)"), _utc_tooltip("active_until", "until (UTC)")],
    ).properties(height=band_height(services, max(26, 12 * lanes), 70))


def _span(start: datetime, end: datetime) -> alt.Chart:
    span = pd.DataFrame({"start": [pd.Timestamp(start)], "end": [pd.Timestamp(end)], "label": ["incident"]})
    return alt.Chart(span).mark_rect(color=SPAN_COLOR, opacity=0.09).encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), x2=alt.X2("end"),
        tooltip=[_utc_tooltip("start", "opened (UTC)"), _utc_tooltip("end", "until (UTC)")])


def _span_rule(start: datetime) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"t": [pd.Timestamp(start)]})).mark_rule(
        color=SPAN_COLOR, strokeDash=[4, 3], strokeWidth=1.5).encode(x=alt.X("t:T", scale=alt.Scale(type="utc")))


def window_chart(frame: pd.DataFrame, metric: str, title: str, start: datetime, end: datetime,
                 service: str, baseline: float | None = None, fmt: str = ".1%") -> alt.Chart:
    """A metric around an incident, the incident's span shaded; its own service drawn boldest."""
    data = frame.assign(is_focus=frame["service"] == service) if not frame.empty else frame
    lines = alt.Chart(data).mark_line(interpolate="monotone", point=alt.OverlayMarkDef(size=12)).encode(
        x=_x_time(title="time (UTC)", frame=frame),
        y=alt.Y(f"{metric}:Q", title=title, axis=alt.Axis(format=fmt.replace(".1", "").replace(".0", "") or None)),
        color=alt.Color("service:N", legend=alt.Legend(orient="top", title=None, columns=3, labelLimit=160),
                        scale=alt.Scale(scheme="tableau10")),
        strokeWidth=alt.StrokeWidthValue(1.2, condition={"test": "datum.is_focus", "value": 3}),
        opacity=alt.OpacityValue(0.55, condition={"test": "datum.is_focus", "value": 1.0}),
        tooltip=[_utc_tooltip("bucket", "time (UTC)"), alt.Tooltip("service:N"), alt.Tooltip(f"{metric}:Q", format=fmt),
                 alt.Tooltip("events:Q", format=",")],
    )
    layers = [_span(start, end), _span_rule(start), lines]
    if baseline is not None and pd.notna(baseline):
        rule = alt.Chart(pd.DataFrame({"y": [baseline], "label": [f"{service} baseline"]})).mark_rule(
            color="#868e96", strokeDash=[2, 2]).encode(
                y=alt.Y("y:Q"), tooltip=[alt.Tooltip("label:N"), alt.Tooltip("y:Q", format=fmt)])
        layers.append(rule)
    return alt.layer(*layers).properties(height=300)


def signatures_bar(frame: pd.DataFrame) -> alt.Chart:
    """Events per signature; frame: id, signature, count."""
    data = frame.assign(short=frame["signature"].str.slice(0, 70))
    return alt.Chart(data).mark_bar(cornerRadiusEnd=3, color=ACCENT).encode(
        x=alt.X("count:Q", title="events"),
        y=alt.Y("id:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=[alt.Tooltip("id:N"), alt.Tooltip("signature:N"), alt.Tooltip("count:Q", format=",")],
    ).properties(height=band_height(len(frame), 28, 45))


def throughput_chart(frame: pd.DataFrame) -> alt.Chart:
    """Input and processed rows per second per micro-batch; frame: metrics rows."""
    long = frame.melt(id_vars=["timestamp"], value_vars=["input_rows_per_second", "processed_rows_per_second"],
                      var_name="series", value_name="rows_per_second")
    long["series"] = long["series"].map({"input_rows_per_second": "input", "processed_rows_per_second": "processed"})
    return alt.Chart(long).mark_line(interpolate="monotone", strokeWidth=1.6, point=_points(len(frame))).encode(
        x=_x_time("timestamp", frame=frame),
        y=alt.Y("rows_per_second:Q", title="rows / s", axis=alt.Axis(format="~s")),
        color=alt.Color("series:N", legend=alt.Legend(orient="top", title=None),
                        scale=alt.Scale(range=[ACCENT, "#12b886"])),
        tooltip=[_utc_tooltip("timestamp", "time (UTC)"), alt.Tooltip("series:N"),
                 alt.Tooltip("rows_per_second:Q", format=",.0f")],
    ).properties(height=220)


def batch_duration_chart(frame: pd.DataFrame, trigger_ms: float | None = None) -> alt.Chart:
    bars = alt.Chart(frame).mark_area(opacity=0.35, color="#7048e8", line={"color": "#7048e8"}).encode(
        x=_x_time("timestamp", frame=frame),
        y=alt.Y("batch_duration_ms:Q", title="batch duration (ms)"),
        tooltip=[_utc_tooltip("timestamp", "time (UTC)"), alt.Tooltip("batch_id:Q"),
                 alt.Tooltip("batch_duration_ms:Q", format=","), alt.Tooltip("num_input_rows:Q", format=",")])
    if trigger_ms:
        rule = alt.Chart(pd.DataFrame({"y": [trigger_ms], "label": ["trigger interval"]})).mark_rule(
            color=SPAN_COLOR, strokeDash=[4, 3]).encode(y=alt.Y("y:Q"),
                                                        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("y:Q")])
        return (bars + rule).properties(height=220)
    return bars.properties(height=220)


def state_chart(frame: pd.DataFrame) -> alt.Chart:
    base = alt.Chart(frame).encode(x=_x_time("timestamp", frame=frame))
    rows = base.mark_line(color="#0c8599", strokeWidth=1.6, point=_points(len(frame))).encode(
        y=alt.Y("state_rows:Q", title="state rows", axis=alt.Axis(format="~s", titleColor="#0c8599")),
        tooltip=[_utc_tooltip("timestamp", "time (UTC)"), alt.Tooltip("state_rows:Q", format=","),
                 alt.Tooltip("state_memory_bytes:Q", format=".3~s", title="state memory (bytes)")])
    memory = base.mark_line(color="#e8590c", strokeDash=[4, 2], strokeWidth=1.4).encode(
        y=alt.Y("state_memory_bytes:Q", title="state memory", axis=alt.Axis(format=".2~s", titleColor="#e8590c")))
    return alt.layer(rows, memory).resolve_scale(y="independent").properties(height=220)


def lag_chart(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_area(opacity=0.3, color="#f59f00", line={"color": "#f59f00"}).encode(
        x=_x_time("timestamp", frame=frame),
        y=alt.Y("lag:Q", title="records behind", axis=alt.Axis(format="~s")),
        tooltip=[_utc_tooltip("timestamp", "time (UTC)"), alt.Tooltip("lag:Q", format=",")],
    ).properties(height=220)


def partition_lag_chart(frame: pd.DataFrame) -> alt.Chart:
    """Consumer lag per partition; frame: partition, lag."""
    return alt.Chart(frame).mark_bar(cornerRadiusEnd=3, color="#f59f00").encode(
        x=alt.X("lag:Q", title="lag (records)", axis=alt.Axis(format="~s")),
        y=alt.Y("partition:O", title=None,
                axis=alt.Axis(labelOverlap=False, labelExpr="'partition ' + datum.label")),
        tooltip=[alt.Tooltip("partition:O"), alt.Tooltip("lag:Q", format=","), alt.Tooltip("end_offset:Q", format=",")],
    ).properties(height=band_height(len(frame), 36, 60))


def dead_letter_reasons(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_bar(cornerRadiusEnd=3, color="#ae3ec9").encode(
        x=alt.X("records:Q", title="records"),
        y=alt.Y("reason:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelLimit=180)),
        tooltip=[alt.Tooltip("reason:N"), alt.Tooltip("records:Q", format=","), alt.Tooltip("example:N")],
    ).properties(height=band_height(len(frame), 36, 60))


def dead_letter_over_time(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        x=_x_time(frame=frame), y=alt.Y("records:Q", title="dead letters"),
        color=alt.Color("reason:N", legend=alt.Legend(orient="top", title=None), scale=alt.Scale(scheme="purples")),
        tooltip=[_utc_tooltip("bucket", "from (UTC)"), alt.Tooltip("reason:N"), alt.Tooltip("records:Q")],
    ).properties(height=200)


def to_vega_lite(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite spec of a chart with its DataFrames under ``datasets``, for ``st.vega_lite_chart``.

    What ``st.altair_chart`` sends, minus its schema validation: each layer's DataFrame is replaced by
    a named reference (Streamlit ships the named frames as Arrow), and the default theme's fixed
    300 px view size is left out as Streamlit does.
    """
    datasets: dict[str, pd.DataFrame] = {}

    def detach(node: Any) -> Any:
        node = node.copy(deep=False)
        data = getattr(node, "data", alt.Undefined)
        if isinstance(data, pd.DataFrame):
            name = _content_name(data)
            datasets[name] = data
            node.data = alt.NamedData(name=name)
        for part in ("layer", "hconcat", "vconcat", "concat"):
            children = getattr(node, part, alt.Undefined)
            if isinstance(children, list):
                setattr(node, part, [detach(child) for child in children])
        return node

    spec = detach(chart).to_dict(validate=False)
    view = spec.get("config", {}).get("view", {})
    for key, value in (alt.theme.get() or dict)().get("config", {}).get("view", {}).items():
        if view.get(key) == value:
            del view[key]
    if "config" in spec and not spec["config"].get("view", True):
        del spec["config"]["view"]
    if "config" in spec and not spec["config"]:
        del spec["config"]
    spec["datasets"] = datasets
    return spec


def _content_name(frame: pd.DataFrame) -> str:
    """A name that changes with the frame's content. The browser keeps a chart's datasets by name and
    only swaps in a dataset whose name is new, so a fixed name would leave the first data on screen."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    try:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells (lists): hash their text
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return f"d{digest.hexdigest()}"
