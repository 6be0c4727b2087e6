"""Migration of a DATA_DIR in the layout before Delta Lake (incident_contracts.table_migration): a realistic
old folder built here with pyarrow (millisecond timestamps, Hive partition folders without the partition
columns in the files, Spark's checksums and markers, the old publisher's _staging with its _journal and a
checkpoint that had not committed the last batch), converted, read back, and migrated a second time."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from delta_spark import SESSION

from incident_contracts.settings import load_settings
from incident_contracts.table_migration import MigrationRefused, migrate
from incident_contracts.table_store import DELTA_LOG, TableLayoutError, TableStore
from incident_contracts.tables import TABLES as ALL_TABLES
from incident_contracts.writer_lock import WriterBusy, writer_lock

# The tables of the layout before Delta Lake (those added later were Delta tables from the start).
TABLES = {name: ALL_TABLES[name] for name in ("events", "incident_updates", "dead_letter", "metrics")}

START = datetime(2026, 11, 30, 22, 0, 0, 123000, tzinfo=UTC)
INGEST_ID = "3f2a9c1e-0000-4000-8000-000000000001"
DETECTION_ID = "77aa01bc-0000-4000-8000-000000000002"
INGEST_TAG, DETECTION_TAG = INGEST_ID.replace("-", "")[:8], DETECTION_ID.replace("-", "")[:8]


def old_schema(table: str, keep_partitions: bool = False, unit: str = "ms", tz: str | None = "UTC") -> pa.Schema:
    """The schema the old job wrote: every column optional (Spark), timestamps in milliseconds, partition
    columns in the folder names only."""
    spec = TABLES[table]
    fields = []
    for f in spec.schema:
        if f.name in spec.partitions and not keep_partitions:
            continue
        kind = pa.timestamp(unit, tz=tz) if pa.types.is_timestamp(f.type) else f.type
        fields.append(pa.field(f.name, kind, nullable=True))
    return pa.schema(fields)


def old_rows(table: str, first: int, n: int, when: datetime, schema: pa.Schema) -> pa.Table:
    """n rows numbered from `first` (in the table's id column), timestamps from `when` in 1.001 s steps."""
    values = {}
    for f in schema:
        if f.name in ("event_id", "incident_id", "query_name"):
            values[f.name] = [f"{table}-{first + i}" for i in range(n)]
        elif pa.types.is_timestamp(f.type):
            values[f.name] = [when + timedelta(seconds=i, milliseconds=i) for i in range(n)]
        elif f.name in ("event_date", "dl_date"):
            values[f.name] = [when.date().isoformat()] * n
        elif f.name == "event_hour":
            values[f.name] = [when.hour] * n
        elif f.name in ("kafka_offset", "batch_id", "update_seq"):
            values[f.name] = [first + i for i in range(n)]
        elif f.name == "attributes":
            values[f.name] = [[("k", str(first + i))] for i in range(n)]
        elif f.name == "top_signatures":
            values[f.name] = [[{"signature": "s", "signature_id": "x", "count": i, "sample": "m"}] for i in range(n)]
        elif f.name in ("raw_value", "key"):
            values[f.name] = [bytes([i % 256]) * 3 for i in range(n)]
        elif pa.types.is_list(f.type):
            values[f.name] = [["a", "b"]] * n
        elif pa.types.is_string(f.type):
            values[f.name] = [f"{f.name}-{first + i}" for i in range(n)]
        elif pa.types.is_boolean(f.type):
            values[f.name] = [i % 2 == 0 for i in range(n)]
        elif pa.types.is_floating(f.type):
            values[f.name] = [i * 1.5 for i in range(n)]
        else:
            values[f.name] = [i for i in range(n)]
    return pa.table(values, schema=schema)


def write_old(folder: Path, name: str, data: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / name, compression="zstd")
    (folder / f".{name}.crc").write_bytes(b"crc")  # Spark's checksum files
    return folder / name


def partition_folder(table: str, when: datetime) -> str:
    return {"events": f"event_date={when.date()}/event_hour={when.hour}", "dead_letter": f"dl_date={when.date()}"} \
        .get(table, "")


def build_old_data_dir(data: Path) -> dict[str, pa.Table]:
    """The old layout with three committed batches per table plus, for events, a fourth batch the checkpoint has
    not committed. Returns the rows each table must hold after migration."""
    expected: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
    for name in TABLES:
        schema = old_schema(name)
        row = 0
        for batch in range(3):
            for hour in (0, 1, 2):  # events cross midnight: two dates, three hours
                when = START + timedelta(hours=hour, minutes=batch)
                rows = old_rows(name, row, 7, when, schema)
                row += 7
                tag = DETECTION_TAG if name == "incident_updates" else INGEST_TAG
                write_old(data / name / partition_folder(name, when), f"part-{tag}-b{batch:012d}-{hour:04d}.parquet",
                          rows)
                expected[name].append(rows)
        (data / name / "_SUCCESS").write_bytes(b"")
    # a hidden Parquet file in a partition folder: not data (a writer's temporary), never converted
    events_hour = data / "events" / partition_folder("events", START)
    pq.write_table(old_rows("events", 900, 5, START, old_schema("events")), events_hour / ".part-tmp.parquet")
    # batch 3 of the ingest query: published into the table, journaled, but not committed by the checkpoint
    replayed = [write_old(events_hour, f"part-{INGEST_TAG}-b{3:012d}-{i:04d}.parquet",
                          old_rows("events", 1000 + 10 * i, 4, START, old_schema("events"))) for i in range(2)]
    journal = data / "_staging" / "_journal"
    (journal / "events").mkdir(parents=True)
    (journal / "events" / f"{INGEST_TAG}-b{3:012d}.json").write_text(json.dumps(
        {"batch_id": 3, "files": [str(p.relative_to(data / "events")) for p in replayed]}))
    (journal / "incident_updates").mkdir(parents=True)  # the last detection batch: committed, its files stay
    (journal / "incident_updates" / f"{DETECTION_TAG}-b{2:012d}.json").write_text(json.dumps(
        {"batch_id": 2, "files": [f"part-{DETECTION_TAG}-b{2:012d}-0000.parquet"]}))
    staged = data / "_staging" / f"events-{INGEST_TAG}-b4-{uuid.uuid4().hex[:8]}" / "event_date=2026-12-01"
    write_old(staged, "part-00000.parquet", old_rows("events", 2000, 3, START, old_schema("events")))
    write_old(data / "_staging", "metrics-0a1b.parquet", old_rows("metrics", 3000, 1, START, old_schema("metrics")))
    for query, query_id, committed in (("ingest", INGEST_ID, 3), ("detection", DETECTION_ID, 3)):
        checkpoint = data / "_checkpoints" / query
        (checkpoint / "commits").mkdir(parents=True)
        (checkpoint / "metadata").write_text(json.dumps({"id": query_id}) + "\n")
        for batch in range(committed):
            (checkpoint / "commits" / str(batch)).write_text("v1\n{}\n")
    return {name: pa.concat_tables(parts) for name, parts in expected.items()}


@pytest.fixture
def settings(isolated_env: Path):
    return load_settings()


KEY = {"events": "event_id", "incident_updates": "incident_id", "metrics": "query_name", "dead_letter": "kafka_offset"}


def read_back(store: TableStore, table: str) -> pa.Table:
    return store.read(table).sort_by(KEY[table])


def as_contract(table: str, rows: pa.Table) -> pa.Table:
    """The old rows as the contract's table: microsecond timestamps, partition columns from the folders."""
    spec = TABLES[table]
    columns = {}
    for f in spec.schema:
        if f.name in rows.column_names:
            columns[f.name] = rows.column(f.name).cast(f.type)
        elif f.name in ("event_date", "dl_date"):
            source = rows.column("event_time" if table == "events" else "detected_at")
            columns[f.name] = pc.strftime(source, "%Y-%m-%d")
        elif f.name == "event_hour":
            columns[f.name] = pc.hour(rows.column("event_time")).cast(pa.int32())
    return pa.table(columns, schema=pa.schema([f.with_nullable(True) for f in spec.schema]))


def test_an_old_data_dir_is_converted_in_place_and_reads_back_the_same_rows(settings):
    data = Path(settings.data_dir)
    expected = build_old_data_dir(data)
    store = TableStore.from_settings(settings)
    with pytest.raises(TableLayoutError, match="make migrate-data"):
        store.open("events")
    original_files = {p for p in (data / "events").rglob("*.parquet") if not p.name.startswith(".")}
    lines: list[str] = []

    migrate(settings, out=lines.append)

    text = "\n".join(lines)
    assert "events: removed 2 files of micro-batch 3" in text
    assert "incident_updates: converted in place: 9 files, 63 rows, nothing rewritten" in text
    assert "removed _staging" in text
    assert not (data / "_staging").exists() and (data / "_checkpoints" / "ingest" / "metadata").exists()
    for name in TABLES:
        dt = store.open(name)
        assert dt.version() == 0 and dt.history()[0]["operation"] == "CONVERT"
        got = read_back(store, name)
        want = as_contract(name, expected[name]).sort_by(KEY[name])
        assert got.num_rows == want.num_rows
        assert got.select(want.column_names).cast(want.schema).equals(want), name  # nullability aside
        assert got.schema.field(got.schema.get_field_index(_ts(name))).type == pa.timestamp("us", tz="UTC")
    # nothing rewritten: the files of the committed batches are the table's files, under their old names
    committed = {Path(uri) for uri in store.open("events").file_uris()}
    assert committed == {p for p in original_files if "-b000000000003-" not in p.name}
    assert all(p.exists() for p in committed)


def _ts(table: str) -> str:
    return {"events": "event_time", "dead_letter": "detected_at", "incident_updates": "update_time",
            "metrics": "timestamp"}[table]


def test_converted_tables_keep_delta_semantics(settings):
    """What Spark's Delta reader relies on: partition values in the log with the contract's types, no hidden
    file named as data, timestamp (not timestamp_ntz) columns, statistics holding the files' true instants."""
    data = Path(settings.data_dir)
    build_old_data_dir(data)
    migrate(settings, out=lambda line: None)
    store = TableStore.from_settings(settings)

    dt = store.open("events")
    assert (dt.protocol().min_reader_version, dt.protocol().min_writer_version) == (1, 2)
    assert dt.metadata().partition_columns == ["event_date", "event_hour"]
    first_commit = (data / "events" / DELTA_LOG / f"{0:020d}.json").read_text().splitlines()
    metadata = next(json.loads(line)["metaData"] for line in first_commit if "metaData" in line)
    log_schema = json.loads(metadata["schemaString"])
    types = {f["name"]: f["type"] for f in log_schema["fields"]}
    assert types["event_time"] == "timestamp" and types["event_hour"] == "integer" and types["event_date"] == "string"
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    for action in actions:
        assert not any(part.startswith((".", "_")) for part in action["path"].split("/"))
        file_rows = pq.read_table(Path(store.uri("events")) / action["path"], columns=["event_time"])
        times = file_rows.column("event_time").cast(pa.timestamp("us", tz="UTC"))
        assert action["min.event_time"] == pc.min(times).as_py() and action["max.event_time"] == pc.max(times).as_py()
        assert str(action["partition.event_hour"]) in action["path"]
    # statistics and partitions prune on the millisecond files and the filter still finds the right rows
    cut = START + timedelta(hours=1, minutes=1)
    dataset = store.dataset("events")
    found = dataset.to_table(filter=pc.field("event_time") >= pa.scalar(cut, pa.timestamp("us", tz="UTC")))
    everything = dataset.to_table()
    assert found.num_rows == pc.sum(pc.greater_equal(everything.column("event_time"),
                                                     pa.scalar(cut, pa.timestamp("us", tz="UTC")))).as_py() > 0
    # the streaming job resumes: its appends (microsecond files) sit beside the converted millisecond files
    more = as_contract("events", old_rows("events", 5000, 3, START, old_schema("events")))
    assert store.append("events", more, app_id="incident-stream-ingest", version=3)
    assert store.dataset("events").count_rows() == everything.num_rows + 3


def test_a_second_run_does_nothing(settings):
    data = Path(settings.data_dir)
    build_old_data_dir(data)
    migrate(settings, out=lambda line: None)
    store = TableStore.from_settings(settings)
    before = {name: (store.open(name).version(), sorted(store.open(name).file_uris())) for name in TABLES}
    lines: list[str] = []

    migrate(settings, out=lines.append)

    assert len(lines) == 1 and "nothing to do" in lines[0]
    assert {name: (store.open(name).version(), sorted(store.open(name).file_uris())) for name in TABLES} == before


def test_files_that_cannot_keep_the_contract_are_rewritten(settings):
    """dead_letter files holding their partition column and nanosecond timestamps without a zone (Spark's INT96):
    a conversion could not give the contract's schema, so the rows are rewritten."""
    data = Path(settings.data_dir)
    schema = old_schema("dead_letter", keep_partitions=True, unit="ns", tz=None)
    parts = []
    for day in range(2):
        when = (START + timedelta(days=day)).replace(tzinfo=None)
        rows = old_rows("dead_letter", 100 * day, 6, when, schema)
        write_old(data / "dead_letter" / f"dl_date={when.date()}", "part-0.parquet", rows)
        parts.append(rows)
    lines: list[str] = []

    migrate(settings, out=lines.append)

    assert any("dead_letter: rewritten through the table store: 2 files, 12 rows" in line
               and "stores the partition column dl_date" in line for line in lines), lines
    store = TableStore.from_settings(settings)
    got = read_back(store, "dead_letter")
    want = pa.concat_tables(parts)
    assert got.column("detected_at").to_pylist() == [t.replace(tzinfo=UTC) for t in
                                                       want.column("detected_at").to_pylist()]
    assert got.column("dl_date").to_pylist() == want.column("dl_date").to_pylist()
    assert not (data / "_migration").exists()
    assert not list((data / "dead_letter").glob("dl_date=*/part-0.parquet"))  # the old files are gone


def test_an_interrupted_rewrite_is_finished(settings):
    data = Path(settings.data_dir)
    work = TableStore(str(data / "_migration"))
    rows = as_contract("metrics", old_rows("metrics", 0, 4, START, old_schema("metrics")))
    work.append("metrics", rows)  # built and verified, then the run stopped between its two renames
    write_old(data / "_migration" / "metrics.old", "part-0.parquet", old_rows("metrics", 0, 4, START,
                                                                                  old_schema("metrics")))
    lines: list[str] = []

    migrate(settings, out=lines.append)

    assert any("metrics: finished the rewrite" in line for line in lines)
    assert TableStore.from_settings(settings).read("metrics").num_rows == 4
    assert not (data / "_migration").exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: write_old(d / "events" / "stray", "part-0.parquet",
                         old_rows("events", 0, 1, START, old_schema("events"))), "outside the partition folders"),
    (lambda d: write_old(d / "events" / "event_date=2026-12-01" / "event_hour=99", "part-0.parquet",
                         old_rows("events", 0, 1, START, old_schema("events"))), "event_hour='99' is not valid"),
    (lambda d: write_old(d / "metrics", "part-0.parquet",
                         old_rows("metrics", 0, 1, START, old_schema("metrics")).append_column(
                             "surprise", pa.array([1]))), "metrics.surprise: not in the contract"),
    (lambda d: (d / "metrics" / "part-9.parquet").write_bytes(b"PAR1 no"), "not a readable Parquet file"),
    (lambda d: write_old(d / "_staging" / "compact-1a2b.old", "part-c.parquet",
                         old_rows("metrics", 0, 1, START, old_schema("metrics"))), "compaction of the old job"),
])
def test_anything_not_understood_is_refused_before_any_change(settings, make, message):
    data = Path(settings.data_dir)
    build_old_data_dir(data)
    make(data)
    listing = sorted(str(p) for p in data.rglob("*"))

    with pytest.raises(MigrationRefused, match=message):
        migrate(settings, out=lambda line: None)

    assert not list(data.rglob(DELTA_LOG))
    assert sorted(str(p) for p in data.rglob("*") if "writer.lock" not in p.name) == \
        [p for p in listing if "writer.lock" not in p]


def test_refused_while_a_streaming_job_holds_the_tables(settings):
    build_old_data_dir(Path(settings.data_dir))
    store = TableStore.from_settings(settings)
    with writer_lock(settings.checkpoint_root, store, "job-run-7"), pytest.raises(WriterBusy, match="job-run-7"):
        migrate(settings, out=lambda line: None)
    assert not (Path(settings.data_dir) / "events" / DELTA_LOG).exists()


def test_cli_prints_what_it_did_and_a_second_run_nothing(settings):
    build_old_data_dir(Path(settings.data_dir))
    command = [sys.executable, "-m", "incident_contracts.table_migration"]
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and "would convert 4 tables" in dry.stdout, dry.stderr
    assert not (Path(settings.data_dir) / "events" / DELTA_LOG).exists()

    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert first.returncode == 0, first.stderr
    assert "events: converted in place" in first.stdout and "done: " in first.stdout
    assert second.returncode == 0 and "nothing to do" in second.stdout


def test_cli_refusal_exits_non_zero_with_the_reason(settings):
    data = Path(settings.data_dir)
    write_old(data / "metrics" / "nested", "part-0.parquet", old_rows("metrics", 0, 1, START, old_schema("metrics")))
    result = subprocess.run([sys.executable, "-m", "incident_contracts.table_migration"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "error:" in result.stderr and "nested/part-0.parquet" in result.stderr


def test_a_journal_whose_checkpoint_is_gone_keeps_its_files(settings):
    """Nothing will run that batch again, so its published rows are the table's."""
    data = Path(settings.data_dir)
    expected = build_old_data_dir(data)
    for path in (data / "_checkpoints" / "ingest").rglob("*"):
        if path.is_file():
            path.unlink()
    lines: list[str] = []

    migrate(settings, out=lines.append)

    assert any("events: micro-batch 3's files stay: the checkpoint that wrote them is gone" in line for line in lines)
    ids = TableStore.from_settings(settings).read("events", columns=["event_id"]).column(0).to_pylist()
    assert len(ids) == expected["events"].num_rows + 8 and {"events-1000", "events-1010"} <= set(ids)


SPARK_READER = SESSION + r"""
root = sys.argv[1]
for name in sys.argv[3:]:
    save(name, spark.sql(f"SELECT * FROM delta.`{root}/{name}`"))
spark.stop()
"""


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_spark_reads_the_converted_millisecond_files_as_pyarrow_does(settings, tmp_path):
    """Spark's Delta reader (delta-spark, the jar set stack/jvm/delta-spark) on the tables converted in place:
    the same rows, timestamps included, as TableStore.dataset reads."""
    import pyarrow.ipc as ipc

    from incident_stack.jars import JAR_SETS

    if "delta-spark" not in JAR_SETS:
        pytest.skip("no delta-spark jar set")
    expected = build_old_data_dir(Path(settings.data_dir))
    migrate(settings, out=lambda line: None)
    store = TableStore.from_settings(settings)
    out = tmp_path / "spark"
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", SPARK_READER, store.root, str(out), *TABLES],
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    for name in TABLES:
        with ipc.open_file(out / f"{name}.arrow") as reader:
            spark = reader.read_all().sort_by(KEY[name])
        arrow = read_back(store, name)
        assert spark.num_rows == arrow.num_rows == expected[name].num_rows, name
        assert spark.schema.field(_ts(name)).type == pa.timestamp("us", tz="UTC"), name
        assert spark.select(arrow.column_names).to_pylist() == arrow.to_pylist(), name
