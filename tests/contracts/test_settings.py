"""Settings: defaults, validation naming the variable, .env handling, and .env.example completeness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from incident_contracts.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_load_and_directories_are_created(isolated_env: Path) -> None:
    settings = load_settings()
    assert settings.kafka_topic_logs == "logs.events"
    assert settings.kafka_topic_partitions == 2
    assert settings.spark_master == "local[*]"
    assert settings.data_dir == isolated_env / "data" and settings.data_dir.is_dir()
    assert settings.checkpoint_root == settings.data_dir / "_checkpoints"
    assert settings.gemini_api_key is None
    assert not settings.uses_schema_registry


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DASHBOARD_PORT", "70000", "DASHBOARD_PORT"),
        ("AIRFLOW_PORT", "http", "AIRFLOW_PORT"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("STREAM_STARTING_OFFSETS", "middle", "STREAM_STARTING_OFFSETS"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS"),
        ("KAFKA_BOOTSTRAP_SERVERS", "host:99999", "KAFKA_BOOTSTRAP_SERVERS"),
        ("SPARK_MASTER", "mesos://x", "SPARK_MASTER"),
        ("KAFKA_TOPIC_PARTITIONS", "0", "KAFKA_TOPIC_PARTITIONS"),
        ("SCHEMA_REGISTRY_URL", "registry:8081", "SCHEMA_REGISTRY_URL"),
        ("SPARK_DRIVER_MEMORY", "lots", "SPARK_DRIVER_MEMORY"),
        ("KAFKA_COMPRESSION", "brotli", "KAFKA_COMPRESSION"),
        ("KAFKA_MIN_INSYNC_REPLICAS", "2", "KAFKA_MIN_INSYNC_REPLICAS"),  # more than the replication factor (1)
        ("CLUSTER_KAFKA_PORTS", "19092,broker", "CLUSTER_KAFKA_PORTS"),
        ("CLUSTER_SPARK_WORKER_UI_PORTS", "8081,70000", "CLUSTER_SPARK_WORKER_UI_PORTS"),
        ("CLUSTER_SPARK_WORKER_MEMORY", "plenty", "CLUSTER_SPARK_WORKER_MEMORY"),
    ],
)
def test_bad_values_fail_naming_the_variable(isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
                                             variable: str, value: str, expected: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert f"{expected}=" in str(error.value)
    assert ".env.example" in str(error.value)


def test_uncreatable_directory_fails_naming_the_variable(isolated_env: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = isolated_env / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DATA_DIR", str(blocker / "data"))
    with pytest.raises(SettingsError, match=r"DATA_DIR=.*cannot be created"):
        load_settings()


def test_env_file_is_read_and_environment_wins(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = isolated_env / "custom.env"
    env_file.write_text("KAFKA_TOPIC_LOGS=from-file\nDASHBOARD_PORT=9999\nGEMINI_API_KEY=secret-value\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    monkeypatch.setenv("DASHBOARD_PORT", "8600")
    settings = load_settings()
    assert settings.kafka_topic_logs == "from-file"
    assert settings.dashboard_port == 8600
    assert settings.gemini_api_key is not None
    assert "secret-value" not in repr(settings) and "secret-value" not in str(settings)


def test_secret_is_not_echoed_in_errors(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_TIMEOUT_SECONDS", "-1")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-very-secret")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "very-secret" not in str(error.value)


def _example_variables() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            pairs[match.group(1)] = match.group(2)
    return pairs


def test_env_example_lists_every_setting_with_a_comment() -> None:
    listed = _example_variables()
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - set(listed) == set(), "settings missing from .env.example"
    assert set(listed) - fields == set(), ".env.example lists variables no setting reads"
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0]} has no comment line above it"


def test_env_example_values_are_the_defaults(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = isolated_env / "example.env"
    example.write_text((ROOT / ".env.example").read_text())
    monkeypatch.delenv("DATA_DIR")
    monkeypatch.delenv("RUNTIME_DIR")
    monkeypatch.setenv("PROJECT_ROOT", str(isolated_env))
    from_example = Settings(_env_file=str(example))  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_example.model_dump() == defaults.model_dump()
