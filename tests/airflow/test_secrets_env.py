"""Secrets reach only what needs them: spark-submit's environment, the API client's repr, and the embedded
Airflow's admin password (generated before Airflow starts, so Airflow never prints it into its log)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from airflow.exceptions import AirflowException

from incident_airflow.api_client import AirflowApi
from incident_airflow.environment import admin_password, airflow_env, passwords_file
from incident_airflow.spark_job import StreamJobOperator, job_env
from incident_contracts.settings import load_settings

GEMINI_KEY = "gemini-key-" + "7" * 20
AWS_ID = "AKIA" + "Q" * 16
AWS_SECRET = "aws-secret-" + "s" * 29
UNRELATED_TOKEN = "ghp_" + "t" * 36


@pytest.fixture
def secret_settings(isolated_env: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings holding every secret, in a process whose own environment holds them and others too."""
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", UNRELATED_TOKEN)
    monkeypatch.setenv("POSTGRES_PASSWORD", "pg-password-123")
    monkeypatch.setenv("JAVA_HOME", "/opt/java")
    settings = load_settings()
    assert settings.gemini_api_key is not None
    return settings


def test_the_job_environment_has_the_table_credentials_and_no_other_secret(secret_settings) -> None:
    env = job_env(secret_settings)
    assert env["GEMINI_API_KEY"] == ""  # set empty: the job does not read it from .env either
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (AWS_ID, AWS_SECRET)
    values = "\n".join(env.values())
    for secret in (GEMINI_KEY, UNRELATED_TOKEN, "pg-password-123"):
        assert secret not in values
    assert "GITHUB_TOKEN" not in env and "POSTGRES_PASSWORD" not in env
    assert env["JAVA_HOME"] == "/opt/java" and env["HOME"] == os.environ["HOME"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == secret_settings.kafka_bootstrap_servers
    # Nothing from the task's environment beyond the system's, Java's and Spark's basics.
    assert os.environ["AIRFLOW_HOME"] and "AIRFLOW_HOME" not in env
    assert not {k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}


def test_spark_submit_is_started_with_exactly_the_job_environment(secret_settings, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's hook merges its env_vars into this process's environment; the operator's hook must not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = tmp_path / "env.json"
    fake = bin_dir / "spark-submit"  # a real program in spark-submit's place: it records its environment
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, os; "
                    f"json.dump(dict(os.environ), open(\"{dump}\", \"w\"))'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(
        {"conn_type": "spark", "host": "local[1]", "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"}}))
    operator = StreamJobOperator(task_id="process_stream", producer_task_id="produce_logs")
    env = {**job_env(secret_settings), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with pytest.raises(AirflowException, match="summary"):  # the stand-in writes no job summary
        operator._submit(env, tmp_path / "summary.json")
    seen = json.loads(dump.read_text())
    assert seen["GEMINI_API_KEY"] == "" and seen["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET
    assert "GITHUB_TOKEN" not in seen and "POSTGRES_PASSWORD" not in seen
    assert GEMINI_KEY not in json.dumps(seen)
    assert os.environ["GEMINI_API_KEY"] == GEMINI_KEY  # this process still has it: the hook did not pass it on


def test_the_api_clients_repr_hides_its_password() -> None:
    api = AirflowApi("http://127.0.0.1:8070", "admin", "s3cret-admin-password")
    assert "s3cret-admin-password" not in repr(api) and "s3cret-admin-password" not in str(api)
    assert "admin" in repr(api) and "8070" in repr(api)
    assert api.password == "s3cret-admin-password"


def _airflow_start_output(password_file: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> str:
    """What Airflow's simple auth manager writes when it starts (the embedded Airflow's log) for that file."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setattr(SimpleAuthManager, "get_generated_password_file", staticmethod(lambda: str(password_file)))
    capsys.readouterr()
    SimpleAuthManager().init()
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_the_admin_password_is_generated_before_airflow_starts_so_airflow_never_logs_it(
        isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()
    airflow_env(settings)  # what the stack does before starting Airflow (embedded and cluster tier)
    password = admin_password(settings)
    assert password and len(password) >= 16
    assert stat.S_IMODE(passwords_file(settings).stat().st_mode) == 0o600
    airflow_env(settings)
    assert admin_password(settings) == password  # kept across starts
    assert password not in _airflow_start_output(passwords_file(settings), monkeypatch, capsys)
    assert admin_password(settings) == password  # Airflow uses it as it is
    # Without it, Airflow generates one at its first start and prints it: what the log held before.
    fresh = isolated_env / "fresh" / "passwords.json"
    fresh.parent.mkdir()
    printed = _airflow_start_output(fresh, monkeypatch, capsys)
    generated = json.loads(fresh.read_text())["admin"]
    assert generated in printed
