"""Airflow test setup: a private AIRFLOW_HOME (SQLite) for the session, set before Airflow is imported."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "airflow" / "dags"

# Airflow reads its configuration when first imported: point it at a throw-away home now.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-test-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    return DAGS


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The metadata database of the session's Airflow home, created once.

    Created in this process (what `airflow db migrate` does on an empty database): a subprocess would
    pay Airflow's import a second time.
    """
    from airflow.utils.db import initdb

    initdb()
    return airflow_home / "airflow.db"
