"""The in-process DuckDB database of the table reads: one per data folder, a fresh cursor per query."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd


class Database:
    """An in-memory DuckDB database shared by the threads of one process.

    DuckDB connections are not thread-safe; cursors made from one connection are, and they see the
    same tables. Writes (mirror refreshes) are serialised by ``write_lock``.
    """

    def __init__(self, threads: int = 2, memory_limit: str = "2GB") -> None:
        self._con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")
        self.write_lock = threading.RLock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def df(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None,
           sources: Mapping[str, object] | None = None) -> pd.DataFrame:
        """Run a query and return a pandas DataFrame (timestamps in UTC). ``sources`` names Arrow objects
        (tables, pyarrow datasets) the query reads, visible to this query only."""
        cur = self.cursor()
        try:
            for name, source in (sources or {}).items():
                cur.register(name, source)
            return cur.execute(sql, params).df()
        finally:
            cur.close()

    def rows(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> list[tuple]:
        cur = self.cursor()
        try:
            return cur.execute(sql, params).fetchall()
        finally:
            cur.close()

    def execute(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> None:
        cur = self.cursor()
        try:
            cur.execute(sql, params)
        finally:
            cur.close()

    def close(self) -> None:
        self._con.close()
