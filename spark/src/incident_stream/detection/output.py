"""The incident_updates contract as a Spark schema, and detector rows as a pandas frame of it."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T

from incident_contracts.detector_counters import COUNTER_QUERY_PREFIX
from incident_contracts.tables import INCIDENT_UPDATES

TIMESTAMP_COLUMNS = tuple(f.name for f in INCIDENT_UPDATES if pa.types.is_timestamp(f.type))
# Columns whose values are Python objects (strings, lists, structs): a frame where every row lacks one (a batch
# of counter rows only) would otherwise hold float NaN there, which Spark's Arrow conversion cannot read.
OBJECT_COLUMNS = tuple(f.name for f in INCIDENT_UPDATES if not (pa.types.is_integer(f.type)
                                                                 or pa.types.is_floating(f.type)
                                                                 or pa.types.is_timestamp(f.type)))
INTEGER_COLUMNS = frozenset(f.name for f in INCIDENT_UPDATES if pa.types.is_integer(f.type))


def spark_type(arrow_type: pa.DataType) -> T.DataType:
    """Spark type of a contract column (the types the contract uses)."""
    simple = {pa.string(): T.StringType(), pa.int32(): T.IntegerType(), pa.int64(): T.LongType(),
              pa.float64(): T.DoubleType(), pa.bool_(): T.BooleanType(), pa.binary(): T.BinaryType()}
    if pa.types.is_timestamp(arrow_type):
        return T.TimestampType()
    if pa.types.is_list(arrow_type):
        return T.ArrayType(spark_type(arrow_type.value_type), True)
    if pa.types.is_struct(arrow_type):
        return T.StructType([T.StructField(f.name, spark_type(f.type), True) for f in arrow_type])
    if pa.types.is_map(arrow_type):
        return T.MapType(spark_type(arrow_type.key_type), spark_type(arrow_type.item_type), True)
    for arrow, spark in simple.items():
        if arrow_type.equals(arrow):
            return spark
    raise TypeError(f"no Spark type for contract type {arrow_type}")


def incident_updates_schema() -> T.StructType:
    return T.StructType([T.StructField(f.name, spark_type(f.type), True) for f in INCIDENT_UPDATES])


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """Detector rows (timestamps in epoch ms) as a frame with the contract's columns, in order. Built column
    by column (a frame of dicts then fixed up column by column cost tens of milliseconds per micro-batch)."""
    columns = {}
    for name in INCIDENT_UPDATES.names:
        values = [row.get(name) for row in rows]
        if name in TIMESTAMP_COLUMNS:
            columns[name] = pd.to_datetime(pd.Series(values, dtype="float64"), unit="ms", utc=True)
        elif name in OBJECT_COLUMNS:
            columns[name] = pd.Series([None if isinstance(v, float) and v != v else v for v in values], dtype=object)
        else:  # numbers: a missing one is NaN
            columns[name] = pd.Series(values, dtype="int64" if name in INTEGER_COLUMNS and None not in values
                                      else "float64")
    frame = pd.DataFrame(columns)
    frame["update_seq"] = frame["update_seq"].astype("int32")
    for column in ("event_count", "error_count"):
        frame[column] = frame[column].astype("int64")
    return frame


# Detector counters (late events per service, environment-wide silences) leave the stateful operator with
# its incident rows, in the same shape, so they commit exactly once with them; the job's sink moves them
# to the metrics table (counter_metric_rows) and never writes them to incident_updates.
COUNTER_UPDATE = "detector_counter"


def counter_rows(environment: str, counters: list[tuple[str, str, int]], now_ms: int) -> list[dict]:
    """Counter rows in the incident_updates shape: update_type COUNTER_UPDATE, `trigger` the counter,
    `service` the service ("" for the environment), `event_count` the amount."""
    return [{"incident_id": f"{COUNTER_UPDATE}:{environment}:{service}:{counter}", "update_seq": 0,
             "update_type": COUNTER_UPDATE, "status": COUNTER_UPDATE, "update_time": now_ms, "service": service,
             "environment": environment, "severity": "", "trigger": counter, "opened_at": now_ms,
             "first_seen": now_ms, "last_seen": now_ms, "event_count": amount, "error_count": 0}
            for counter, service, amount in counters]


def counter_metric_rows(rows: list[dict], batch_id: int, run_id: str | None) -> list[dict]:
    """Metrics rows (incident_contracts.tables.METRICS) of counter rows: query_name "counter:<counter>",
    query_id "<environment>/<service>" (no service: the environment alone), num_input_rows the amount,
    one row per counter, environment and service."""
    out = []
    for r in rows:
        where = r["environment"] if not r["service"] else f"{r['environment']}/{r['service']}"
        out.append({"query_name": COUNTER_QUERY_PREFIX + r["trigger"], "query_id": where, "run_id": run_id,
                    "batch_id": batch_id, "timestamp": r["update_time"], "num_input_rows": int(r["event_count"])})
    return out
