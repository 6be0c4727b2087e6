"""compose/prepare_env.py (`make compose-env`): creates .env, fills in the secrets, keeps what is set."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from compose_helpers import ROOT, load_prepare_env

prepare_env = load_prepare_env()
SCRIPT = ROOT / "compose" / "prepare_env.py"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / ".env.example"
    path.write_text("# Log level.\nLOG_LEVEL=INFO\n# Postgres password.\n# POSTGRES_PASSWORD=\n")
    return path


def test_creates_env_from_the_example_with_every_secret(tmp_path: Path, example: Path) -> None:
    env = tmp_path / ".env"
    added = prepare_env.prepare(env, example)
    assert added == list(prepare_env.SECRETS)
    values = prepare_env.read_values(env.read_text())
    assert values["LOG_LEVEL"] == "INFO"
    for name in prepare_env.SECRETS:
        assert len(values[name]) >= 16, f"{name} is too short to be a secret"
    assert len(set(values[n] for n in prepare_env.SECRETS)) == len(prepare_env.SECRETS), "secrets must differ"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_the_fernet_key_is_what_airflow_accepts(tmp_path: Path, example: Path) -> None:
    from cryptography.fernet import Fernet

    env = tmp_path / ".env"
    prepare_env.prepare(env, example)
    key = prepare_env.read_values(env.read_text())["AIRFLOW_FERNET_KEY"]
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"connection")) == b"connection"


def test_keeps_existing_values_and_fills_empty_ones_in_place(tmp_path: Path, example: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=mine\nAIRFLOW_JWT_SECRET=\nGEMINI_API_KEY=abc\n")
    added = prepare_env.prepare(env, example)
    assert "POSTGRES_PASSWORD" not in added and "AIRFLOW_JWT_SECRET" in added
    lines = env.read_text().splitlines()
    assert lines[0] == "POSTGRES_PASSWORD=mine" and lines[2] == "GEMINI_API_KEY=abc"
    assert lines[1].startswith("AIRFLOW_JWT_SECRET=") and len(lines[1]) > 30
    assert sum(line.startswith("AIRFLOW_JWT_SECRET=") for line in lines) == 1
    before = env.read_text()
    assert prepare_env.prepare(env, example) == []
    assert env.read_text() == before, "a second run must change nothing"


def test_the_command_never_prints_a_secret(tmp_path: Path, example: Path) -> None:
    env = tmp_path / ".env"
    result = subprocess.run([sys.executable, str(SCRIPT), "--env-file", str(env), "--example", str(example)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "generated POSTGRES_PASSWORD" in result.stdout
    for name, value in prepare_env.read_values(env.read_text()).items():
        if name in prepare_env.SECRETS:
            assert value not in result.stdout + result.stderr


def test_a_missing_example_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--env-file", str(tmp_path / ".env"),
                             "--example", str(tmp_path / "nope")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "run this from the project's root folder" in result.stderr
