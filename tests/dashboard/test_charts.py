"""Every chart of the dashboard is a valid Vega-Lite spec, and the spec the pages send carries its data.

The pages skip Altair's schema validation on each rerun (see ``incident_dashboard.ui.charts``), so
this is where the specs are validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import pytest
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema.core import load_schema

from incident_dashboard.ui import charts

T0 = pd.Timestamp("2026-11-23 09:00", tz="UTC")
MINUTES = pd.date_range(T0, periods=12, freq="5min")
SERVICES = ("order-service", "payment-service", "postgres-orders")


def _traffic() -> pd.DataFrame:
    rows = [{"bucket": t, "service": s, "events": 100 + i, "errors": i % 7, "error_rate": (i % 7) / (100 + i),
             "errors_5xx": i % 3, "latency_mean_ms": 40.0 + i, "latency_max_ms": 900.0}
            for i, (t, s) in enumerate((t, s) for t in MINUTES for s in SERVICES)]
    return pd.DataFrame(rows)


def _metrics() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": MINUTES, "batch_id": range(len(MINUTES)), "num_input_rows": 5_000,
                         "input_rows_per_second": 2_500.0, "processed_rows_per_second": 4_000.0,
                         "batch_duration_ms": 1_200, "state_rows": 320, "state_memory_bytes": 2.5e6, "lag": 0})


def _window() -> pd.DataFrame:
    return pd.DataFrame([{"bucket": t, "service": s, "events": 50, "errors": 5, "error_rate": 0.1,
                          "errors_5xx": 4, "latency_p50_ms": 30.0, "latency_p95_ms": 210.0}
                         for t in MINUTES for s in SERVICES])


def _incidents() -> pd.DataFrame:
    return pd.DataFrame({
        "incident_id": ["INC-1", "INC-2", "INC-3"], "severity": ["P1", "P2", "P3"],
        "status": ["open", "resolved", "resolved"], "service": ["order-service", "order-service", "postgres-orders"],
        "title": ["5xx surge", "latency", "pool exhausted"],
        "opened_at": [MINUTES[1], MINUTES[2], MINUTES[0]], "active_until": [MINUTES[6], MINUTES[4], MINUTES[9]]})


CHARTS: dict[str, Callable[[], Any]] = {
    "severity_donut": lambda: charts.severity_donut(
        pd.DataFrame({"severity": ["P1", "P2", "P3", "P4"], "incidents": [1, 2, 0, 4]})),
    "incidents_over_time": lambda: charts.incidents_over_time(
        pd.DataFrame({"bucket": MINUTES[:3], "severity": ["P1", "P2", "P2"], "incidents": [1, 2, 1]}),
        (MINUTES[0], MINUTES[-1]), pd.Timedelta(minutes=5)),
    "error_rate_over_time": lambda: charts.error_rate_over_time(_traffic(), list(SERVICES[:2]),
                                                                (MINUTES[0], MINUTES[-1])),
    "volume_over_time": lambda: charts.volume_over_time(_traffic()),
    "service_heatmap": lambda: charts.service_heatmap(_traffic()),
    "service_heatmap_window": lambda: charts.service_heatmap(_traffic(), (MINUTES[0], MINUTES[-1]),
                                                             pd.Timedelta(minutes=5)),
    "noisiest_services": lambda: charts.noisiest_services(
        pd.DataFrame({"service": SERVICES, "events": [10, 20, 30], "errors": [3, 2, 1], "error_rate": [.3, .1, .03]})),
    "incident_timeline": lambda: charts.incident_timeline(_incidents()),
    "window_chart": lambda: charts.window_chart(_window(), "error_rate", "error rate", MINUTES[3], MINUTES[8],
                                                "order-service", 0.01),
    "window_chart_latency": lambda: charts.window_chart(_window(), "latency_p95_ms", "p95 latency (ms)", MINUTES[3],
                                                        MINUTES[8], "order-service", None, fmt=",.0f"),
    "signatures_bar": lambda: charts.signatures_bar(
        pd.DataFrame({"id": ["S1", "S2"], "signature": ["timeout after <num> ms", "pool exhausted"], "count": [9, 4]})),
    "throughput": lambda: charts.throughput_chart(_metrics()),
    "batch_duration": lambda: charts.batch_duration_chart(_metrics(), 2_000),
    "state": lambda: charts.state_chart(_metrics()),
    "lag": lambda: charts.lag_chart(_metrics()),
    "partition_lag": lambda: charts.partition_lag_chart(
        pd.DataFrame({"partition": [0, 1], "lag": [10, 0], "end_offset": [500, 480]})),
    "dead_letter_reasons": lambda: charts.dead_letter_reasons(
        pd.DataFrame({"reason": ["bad_magic", "schema"], "records": [5, 2], "example": ["x", "y"]})),
    "dead_letter_over_time": lambda: charts.dead_letter_over_time(
        pd.DataFrame({"bucket": MINUTES[:2], "reason": ["bad_magic", "schema"], "records": [5, 2]})),
}


def _named_data(node: Any) -> list[str]:
    """Every ``{"data": {"name": ...}}`` reference in a spec."""
    found = []
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "name" in data:
            found.append(data["name"])
        for value in node.values():
            found += _named_data(value)
    elif isinstance(node, list):
        for value in node:
            found += _named_data(value)
    return found


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_chart_is_valid_vega_lite_and_sends_its_data_by_name(name: str) -> None:
    chart = CHARTS[name]()
    chart.to_dict(validate=True)  # Altair's own check of the whole spec (raises when invalid)

    spec = charts.to_vega_lite(chart)
    datasets = spec["datasets"]
    references = _named_data(spec)
    assert references and set(references) == set(datasets)
    assert all(isinstance(frame, pd.DataFrame) for frame in datasets.values())
    assert "values" not in str(spec.get("data", ""))
    # The same spec with the frames inlined is valid Vega-Lite.
    inline = {**spec, "datasets": {k: frame.astype(str).to_dict("records") for k, frame in datasets.items()}}
    validate_jsonschema(inline, load_schema())
    # The default theme's fixed view size is not sent (Streamlit sizes the chart).
    assert "continuousWidth" not in spec.get("config", {}).get("view", {})


def test_to_vega_lite_keeps_every_layer_frame() -> None:
    window = _window()
    chart = charts.window_chart(window, "error_rate", "error rate", MINUTES[3], MINUTES[8], "order-service", 0.02)
    datasets = charts.to_vega_lite(chart)["datasets"]
    sizes = sorted(len(frame) for frame in datasets.values())
    assert sizes == [1, 1, 1, len(window)]  # span, its start rule, the baseline rule, the lines
    lines = next(frame for frame in datasets.values() if len(frame) == len(window))
    assert lines["is_focus"].sum() == len(MINUTES)  # the incident's own service is flagged for the bold line
    assert isinstance(chart, alt.LayerChart) and len(chart.layer) == 4


@pytest.mark.parametrize(("minutes", "expected"), [(8, "%H:%M:%S"), (6 * 60, "%H:%M"), (7 * 24 * 60, "%b %d %H:%M")])
def test_time_axis_labels_fit_the_span(minutes: int, expected: str) -> None:
    span = (T0, T0 + pd.Timedelta(minutes=minutes))
    assert charts.time_format(pd.Series(span)) == expected
    spec = charts.to_vega_lite(charts.error_rate_over_time(_traffic(), None, span))
    assert spec["encoding"]["x"]["axis"]["format"] == expected
    start, end = spec["encoding"]["x"]["scale"]["domain"]
    assert start["utc"] and (start["hours"], start["minutes"]) == (T0.hour, T0.minute)
    assert (end["date"] - start["date"]) * 24 * 60 + (end["hours"] - start["hours"]) * 60 + (
        end["minutes"] - start["minutes"]) == minutes


def test_incident_bars_cover_their_bucket_and_stack() -> None:
    frame = pd.DataFrame({"bucket": [MINUTES[0], MINUTES[0], MINUTES[1]], "severity": ["P1", "P3", "P2"],
                          "incidents": [1, 2, 4]})
    spec = charts.to_vega_lite(charts.incidents_over_time(frame, None, pd.Timedelta(minutes=5)))
    (data,) = spec["datasets"].values()
    assert (data["bucket_end"] - data["bucket"]).eq(pd.Timedelta(minutes=5)).all()
    assert spec["encoding"]["x2"]["field"] == "bucket_end"
    first = data[data["bucket"] == MINUTES[0]].set_index("severity")
    assert (first.loc["P3", "y0"], first.loc["P3", "y1"]) == (0, 2)  # lower severities at the bottom
    assert (first.loc["P1", "y0"], first.loc["P1", "y1"]) == (2, 3)
    assert data[data["bucket"] == MINUTES[1]][["y0", "y1"]].values.tolist() == [[0, 4]]
