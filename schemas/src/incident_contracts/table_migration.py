"""`python -m incident_contracts.table_migration` (`make migrate-data`): turn a DATA_DIR written before the
tables became Delta Lake tables into Delta tables, rewriting no data where the files allow it.

The old layout: each table a folder of plain Parquet files (``events/event_date=.../event_hour=.../``,
``dead_letter/dl_date=.../``, ``incident_updates/``, ``metrics/``) with millisecond timestamps, and
``_staging``, where the old publisher staged micro-batches and kept a ``_journal`` of the files each batch
moved into the tables. For each table in that layout:

1. Files of a micro-batch its query's checkpoint has not committed are removed. The old publisher made a
   batch's files visible before Spark committed the batch, and replaced them when Spark ran it again; the
   job now commits a batch it runs again as a new Delta commit, so those files would count twice. The
   batch's journal names them; a journal whose checkpoint is gone keeps its files (nothing runs it again).
2. Entries whose names start with '.' or '_' (writer temporaries, checksums, markers) are removed: they are
   not data, and a conversion would read a hidden ``.parquet`` file as data. Other files that are not
   ``.parquet`` are not data either and are left where they are.
3. The data files are checked against the contract (incident_contracts.tables): partition folders, columns
   and types. When they all agree, the folder is converted in place (``deltalake.convert_to_deltalake``
   with the contract's partitioning): one commit naming every file with its statistics, nothing rewritten.
   Millisecond timestamps are valid in a Delta ``timestamp`` column (microseconds): Spark's Parquet reader
   and pyarrow widen them, and the statistics hold the same instants. Otherwise (partition columns stored
   in the files, timestamps without a UTC zone or in nanoseconds, files disagreeing on a type) a conversion
   could not give the contract's schema, so the rows are rewritten through ``TableStore.append`` into a
   table built in ``DATA_DIR/_migration``, which then replaces the folder.
4. ``_staging`` is removed once every table is a Delta table.

A table that already has a Delta log is left alone, so a second run does nothing. Anything the migration
does not understand (Parquet files outside the partition folders, a column the contract lacks, an
unreadable file, a partition folder a compaction left in ``_staging``) stops it before it changes
anything, with a message naming the path. It holds the writer locks while it works: no streaming job can
start meanwhile, and it refuses to start while one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema, convert_to_deltalake
from deltalake.exceptions import DeltaError

from incident_contracts.settings import ObjectLocation, Settings, SettingsError, load_settings
from incident_contracts.table_store import DELTA_LOG, TableStore, conform, fsync_dir
from incident_contracts.tables import TABLES, Table, check_schema
from incident_contracts.writer_lock import WriterBusy, writer_lock

STAGING = "_staging"
JOURNAL = "_journal"
WORK = "_migration"  # under DATA_DIR: rewritten tables being built, and the folders they replace
JOURNAL_NAME = re.compile(r"^(?P<tag>[A-Za-z0-9]+)-b(?P<batch>\d+)\.json$")
REWRITE_CHUNK_ROWS = 1_000_000
UTC_ZONES = {"UTC", "+00:00", "Etc/UTC", "Z"}


class MigrationRefused(RuntimeError):
    """DATA_DIR holds something the migration does not understand; nothing was changed."""


@dataclass
class OldTable:
    """A table folder in the layout before Delta Lake, and what its migration does."""

    name: str
    folder: Path
    data_files: list[Path] = field(default_factory=list)
    rows: int = 0
    hidden: list[Path] = field(default_factory=list)  # not data, removed
    others: list[Path] = field(default_factory=list)  # not data, left in place
    replayed: dict[str, list[Path]] = field(default_factory=dict)  # why -> files of batches run again
    rewrite_reason: str | None = None  # None: converted in place


@dataclass
class Plan:
    data_dir: Path
    tables: list[OldTable] = field(default_factory=list)
    delta: list[str] = field(default_factory=list)  # already Delta tables
    absent: list[str] = field(default_factory=list)  # no folder, or no data in it
    finish_swap: list[str] = field(default_factory=list)  # a rewrite that stopped between its two renames
    leftovers: list[Path] = field(default_factory=list)  # _staging, work folders of finished rewrites
    kept_journals: list[str] = field(default_factory=list)  # journals whose files stay (and why)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.tables or self.finish_swap or self.leftovers)


# --- planning: read everything, change nothing -----------------------------------------------------
def plan(settings: Settings) -> Plan:
    """What the migration of DATA_DIR does; raises MigrationRefused listing every problem found."""
    data_dir = Path(settings.data_dir).resolve()
    result = Plan(data_dir)
    problems: list[str] = []
    journals = _journals(data_dir, settings.checkpoint_root, problems, result)
    work = data_dir / WORK
    for name, spec in TABLES.items():
        folder = data_dir / name
        is_delta = (folder / DELTA_LOG).is_dir()
        if (work / f"{name}.old").exists():
            if is_delta:
                result.leftovers.append(work / f"{name}.old")
            elif not folder.exists() and (work / name / DELTA_LOG).is_dir():
                result.finish_swap.append(name)
                continue
            else:
                problems.append(f"{work / f'{name}.old'}: the folder of {name} an interrupted migration moved aside, "
                                f"while {folder} is not a Delta table: move it back to {folder} and run again")
                continue
        if is_delta:
            result.delta.append(name)
            continue
        table = _scan(spec, folder, journals.get(name, {}), problems)
        if table is None or not table.data_files:
            result.absent.append(name)
            continue
        result.tables.append(table)
    staging = data_dir / STAGING
    if staging.exists():
        for old in sorted(staging.glob("*.old")):
            if any(old.rglob("*.parquet")):
                problems.append(f"{old}: a partition folder's files a compaction of the old job moved aside and did "
                                "not put back; move its files into the partition folder they came from, then run again")
        result.leftovers.append(staging)
    if work.exists() and not result.finish_swap:
        result.leftovers.append(work)
    if problems:
        raise MigrationRefused("The migration changed nothing; it does not understand:\n  - " + "\n  - ".join(problems))
    return result


def _checkpoint_tags(checkpoint_root: Path) -> dict[str, Path]:
    """{file-name tag: checkpoint folder} of the streaming queries' checkpoints (the old job named each file
    of a batch after the first 8 hex digits of its query's checkpoint id)."""
    tags = {}
    if not checkpoint_root.is_dir():
        return tags
    for query in sorted(p for p in checkpoint_root.iterdir() if p.is_dir()):
        try:
            first = (query / "metadata").read_text(encoding="utf-8").splitlines()[0]
            tags[json.loads(first)["id"].replace("-", "")[:8]] = query
        except (OSError, IndexError, ValueError, KeyError, TypeError):
            continue
    return tags


def _journals(data_dir: Path, checkpoint_root: Path, problems: list[str], result: Plan) -> dict[str, dict[str, list]]:
    """{table: {why: [relative paths]}} of the files of micro-batches their checkpoint will run again."""
    root = data_dir / STAGING / JOURNAL
    if not root.is_dir():
        return {}
    tags = _checkpoint_tags(checkpoint_root)
    replayed: dict[str, dict[str, list]] = {}
    for path in sorted(root.glob("*/*")):
        if path.name.startswith((".", "_")):
            continue  # a journal being written when the job stopped: its batch had moved no file yet
        table, match = path.parent.name, JOURNAL_NAME.match(path.name)
        if table not in TABLES or match is None:
            problems.append(f"{path}: not a journal of the old publisher (expected {STAGING}/{JOURNAL}/<table>/"
                            "<tag>-b<batch>.json)")
            continue
        try:
            files = json.loads(path.read_text(encoding="utf-8"))["files"]
            files = [PurePosixPath(f) for f in files]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}: unreadable journal ({exc})")
            continue
        batch, checkpoint = int(match["batch"]), tags.get(match["tag"])
        if checkpoint is None:
            result.kept_journals.append(f"{table}: micro-batch {batch}'s files stay: the checkpoint that wrote them "
                                        "is gone, nothing runs that batch again")
        elif (checkpoint / "commits" / str(batch)).exists():
            continue  # committed: its files are the table's
        else:
            why = (f"micro-batch {batch} (the checkpoint {checkpoint} has not committed it: the job writes it again "
                   "when it resumes)")
            replayed.setdefault(table, {})[why] = files
    return replayed


def _partition_problem(spec: Table, relative: PurePosixPath) -> str | None:
    """Why a data file's folders are not the contract's partition folders (None when they are)."""
    folders = relative.parts[:-1]
    expected = "/".join(f"{p}=..." for p in spec.partitions) or "the table's folder itself"
    if len(folders) != len(spec.partitions):
        return f"Parquet file outside the partition folders (expected {expected})"
    for column, folder in zip(spec.partitions, folders, strict=True):
        key, sep, value = folder.partition("=")
        value = unquote(value)
        if not sep or key != column:
            return f"folder {folder!r} is not a {column}=... partition folder (expected {expected})"
        try:
            if column == "event_hour":
                if not 0 <= int(value) <= 23:
                    raise ValueError
            else:
                date.fromisoformat(value)
        except ValueError:
            return f"partition value {column}={value!r} is not valid (the contract has no null partitions)"
    return None


def _scan(spec: Table, folder: Path, replayed: dict[str, list], problems: list[str]) -> OldTable | None:
    if not folder.is_dir():
        return None
    table = OldTable(spec.name, folder)
    dropped = {folder / p for files in replayed.values() for p in files}
    for why, files in replayed.items():
        present = [folder / p for p in files if (folder / p).exists()]
        if present:
            table.replayed[why] = present
    schemas: dict[Path, pa.Schema] = {}
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        for name in sorted(dirs):
            if name.startswith((".", "_")):
                table.hidden.append(here / name)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            path = here / name
            if name.startswith((".", "_")):
                table.hidden.append(path)
            elif not name.endswith(".parquet"):
                table.others.append(path)
            elif path not in dropped:
                relative = PurePosixPath(path.relative_to(folder).as_posix())
                problem = _partition_problem(spec, relative)
                if problem:
                    problems.append(f"{path}: {problem}")
                    continue
                try:
                    metadata = pq.read_metadata(path)
                    schemas[path] = metadata.schema.to_arrow_schema()
                except Exception as exc:
                    problems.append(f"{path}: not a readable Parquet file ({exc})")
                    continue
                table.data_files.append(path)
                table.rows += metadata.num_rows
    if not table.data_files:
        return table
    for path, schema in schemas.items():
        found = _column_problems(spec, schema)
        problems.extend(f"{path}: {p}" for p in found)
    if not problems:
        table.rewrite_reason = _rewrite_reason(spec, schemas)
    return table


def _column_problems(spec: Table, schema: pa.Schema) -> list[str]:
    """Columns the file lacks or the contract lacks, or values no cast can turn into the contract's types."""
    with_partitions = pa.schema([f for f in schema if f.name not in spec.partitions]
                                + [spec.schema.field(p) for p in spec.partitions])
    return check_schema(spec.name, with_partitions)


def _convertible_type(found: pa.DataType, contract: pa.DataType) -> bool:
    """Whether a file's column can be a contract column of a converted table as it is (no rewrite)."""
    if pa.types.is_timestamp(contract):
        return pa.types.is_timestamp(found) and found.tz in UTC_ZONES and found.unit in ("ms", "us")
    if pa.types.is_list(contract):
        return pa.types.is_list(found) and _convertible_type(found.value_type, contract.value_type)
    if pa.types.is_map(contract):
        return pa.types.is_map(found) and _convertible_type(found.key_type, contract.key_type) and \
            _convertible_type(found.item_type, contract.item_type)
    if pa.types.is_struct(contract):
        return pa.types.is_struct(found) and [f.name for f in found] == [f.name for f in contract] and all(
            _convertible_type(a.type, b.type) for a, b in zip(found, contract, strict=True))
    return found.equals(contract)


def _rewrite_reason(spec: Table, schemas: dict[Path, pa.Schema]) -> str | None:
    """Why the files cannot become the contract's table as they are (None: they can, convert in place)."""
    first_path, first = next(iter(schemas.items()))
    order = [f.name for f in spec.schema if f.name not in spec.partitions]
    for path, schema in schemas.items():
        inside = [p for p in spec.partitions if p in schema.names]
        if inside:
            return (f"{path.name} stores the partition column {inside[0]} in the file; a Delta table keeps partition "
                    "values in its log only")
        for column in schema:
            contract = spec.schema.field(column.name).type
            if not _convertible_type(column.type, contract):
                return (f"{path.name}: column {column.name} is {column.type}, which a conversion cannot make the "
                        f"contract's {contract}")
        if not _same_columns(schema, first):
            return f"{path.name} and {first_path.name} disagree on the columns' types or order"
    if first.names != order:
        return "the files hold the columns in another order than the contract's"
    return None


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return [(f.name, f.type) for f in a] == [(f.name, f.type) for f in b]


# --- executing ---------------------------------------------------------------------------------------
def execute(migration: Plan, settings: Settings, out: Callable[[str], None] = print) -> None:
    """Carry out a plan (made under the same writer lock)."""
    data_dir = migration.data_dir
    for name in migration.finish_swap:
        _swap_in(data_dir, name)
        out(f"{name}: finished the rewrite an earlier run left between its two renames")
    for line in migration.kept_journals:
        out(line)
    for table in migration.tables:
        for why, files in table.replayed.items():
            for path in files:
                path.unlink(missing_ok=True)
            out(f"{table.name}: removed {len(files)} files of {why}")
        for path in table.hidden:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        if table.hidden:
            out(f"{table.name}: removed {len(table.hidden)} entries that are not data (names starting with '.' or "
                f"'_': writer temporaries, checksums, markers), e.g. {table.hidden[0].relative_to(data_dir)}")
        if table.others:
            out(f"{table.name}: left {len(table.others)} files that are not Parquet where they are (not data), e.g. "
                f"{table.others[0].relative_to(data_dir)}")
        reason = table.rewrite_reason
        if reason is None:
            reason = _convert(table, settings)
            if reason is None:
                out(f"{table.name}: converted in place: {len(table.data_files):,} files, {table.rows:,} rows, "
                    "nothing rewritten")
                continue
        _rewrite(table)
        out(f"{table.name}: rewritten through the table store: {len(table.data_files):,} files, {table.rows:,} rows "
            f"(why: {reason})")
    for path in migration.leftovers:
        if path.exists():
            shutil.rmtree(path)
            out(f"removed {path.relative_to(data_dir)} (the old publisher's staged batches and journals)"
                if path.name == STAGING else f"removed {path.relative_to(data_dir)} (left by an earlier migration)")
    shutil.rmtree(data_dir / WORK, ignore_errors=True)  # where this run built rewritten tables
    for name in migration.delta:
        out(f"{name}: already a Delta Lake table, left as it is")


def _verify(table: OldTable, store: TableStore, dt: DeltaTable) -> str | None:
    """Why the Delta table made of the folder does not read as the contract's rows (None when it does)."""
    spec = TABLES[table.name]
    schema = pa.schema(dt.schema().to_arrow())
    problems = check_schema(table.name, schema)
    problems += [f"{f.name} is {f.type}" for f in schema
                 if pa.types.is_timestamp(f.type) and f.type.tz not in UTC_ZONES]
    if list(dt.metadata().partition_columns) != list(spec.partitions):
        problems.append(f"partitioned by {dt.metadata().partition_columns}, the contract by {list(spec.partitions)}")
    if not problems:
        rows = store.dataset(table.name, dt).count_rows()
        if rows != table.rows:
            problems.append(f"{rows} rows read back, {table.rows} in the files")
    return "; ".join(problems) or None


def _convert(table: OldTable, settings: Settings) -> str | None:
    """Convert the folder in place; None when done, else why it must be rewritten (the folder is left as it was)."""
    spec = TABLES[table.name]
    partitions = Schema.from_arrow(pa.schema([spec.schema.field(p) for p in spec.partitions])) \
        if spec.partitions else None
    try:
        convert_to_deltalake(str(table.folder), partition_by=partitions,
                             partition_strategy="hive" if spec.partitions else None, name=table.name)
    except DeltaError as exc:
        return f"the conversion failed: {exc}"
    store = TableStore.from_settings(settings)
    dt = DeltaTable(str(table.folder))
    problem = _verify(table, store, dt)
    if problem:
        shutil.rmtree(table.folder / DELTA_LOG)
        return f"the converted table did not match the contract: {problem}"
    store.make_durable(table.name, dt, since=-1)
    return None


def _rewrite(table: OldTable) -> None:
    """Build the table from the folder's rows in DATA_DIR/_migration, then put it in the folder's place."""
    spec = TABLES[table.name]
    work = table.folder.parent / WORK
    target = work / table.name
    if target.exists():
        shutil.rmtree(target)  # an earlier run stopped while building it
    side = TableStore(str(work))
    side.create(table.name)
    pending: list[pa.Table] = []
    pending_rows = 0
    for path in table.data_files:
        data = pq.ParquetFile(path).read()
        values = dict(part.split("=", 1) for part in path.relative_to(table.folder).parts[:-1])
        for column in spec.partitions:  # the folder's value, as Spark and Delta readers take it
            if column in data.column_names:
                data = data.drop_columns([column])
            value = pa.scalar(unquote(values[column])).cast(spec.schema.field(column).type)
            data = data.append_column(column, pa.array([value.as_py()] * data.num_rows, value.type))
        pending.append(conform(data, spec.schema))
        pending_rows += data.num_rows
        if pending_rows >= REWRITE_CHUNK_ROWS:
            side.append(table.name, pa.concat_tables(pending))
            pending, pending_rows = [], 0
    if pending:
        side.append(table.name, pa.concat_tables(pending))
    problem = _verify(table, side, side.open(table.name))
    if problem:
        raise MigrationRefused(f"{table.name}: the rewritten table in {target} does not read back as the folder's "
                               f"rows ({problem}); the folder {table.folder} is unchanged")
    os.rename(table.folder, work / f"{table.name}.old")
    _swap_in(table.folder.parent, table.name)


def _swap_in(data_dir: Path, name: str) -> None:
    """Put the rewritten table into its folder's place and delete the old folder."""
    work = data_dir / WORK
    os.rename(work / name, data_dir / name)
    fsync_dir(data_dir)
    shutil.rmtree(work / f"{name}.old", ignore_errors=True)


# --- the command -------------------------------------------------------------------------------------
def migrate(settings: Settings, out: Callable[[str], None] = print, dry_run: bool = False) -> Plan | None:
    """Migrate DATA_DIR (see the module's docstring); returns the plan carried out (None: object storage)."""
    if isinstance(settings.data_dir, ObjectLocation):
        out(f"DATA_DIR={settings.data_dir} is object storage: the layout before Delta Lake was only ever written to "
            "a folder, nothing to convert")
        return None
    if dry_run:
        return _announce(plan(settings), out, dry_run=True)
    store = TableStore.from_settings(settings)
    with writer_lock(settings.checkpoint_root, store, "table-migration"):
        migration = _announce(plan(settings), out)
        if not migration.nothing_to_do:
            execute(migration, settings, out)
            out("done: " + ", ".join(f"{t.name} {'rewritten' if t.rewrite_reason else 'converted'}"
                                      for t in migration.tables) if migration.tables else "done")
    return migration


def _announce(migration: Plan, out: Callable[[str], None], dry_run: bool = False) -> Plan:
    if migration.nothing_to_do:
        out(f"{migration.data_dir}: nothing to do: every table is a Delta Lake table or absent "
            f"(Delta: {', '.join(migration.delta) or 'none'}; absent: {', '.join(migration.absent) or 'none'})")
        return migration
    verb = "would convert" if dry_run else "converting"
    out(f"{migration.data_dir}: {verb} {len(migration.tables)} tables from plain Parquet folders to Delta Lake "
        f"tables: {', '.join(t.name for t in migration.tables) or 'none'}")
    if dry_run:
        for table in migration.tables:
            how = f"rewrite ({table.rewrite_reason})" if table.rewrite_reason else "convert in place"
            out(f"{table.name}: {len(table.data_files):,} files, {table.rows:,} rows: {how}; "
                f"{sum(len(f) for f in table.replayed.values())} files of batches run again and "
                f"{len(table.hidden)} hidden entries removed")
        for path in migration.leftovers:
            out(f"{path}: removed")
    return migration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m incident_contracts.table_migration",
        description="Convert the tables under DATA_DIR from plain Parquet folders (the layout before Delta Lake) "
                    "into Delta Lake tables, in place where the files allow it. Idempotent.")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        migrate(settings, dry_run=args.dry_run)
    except (SettingsError, MigrationRefused, WriterBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SettingsError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
