"""docker-compose.yml is accepted by Debian's docker-compose, and refuses to run without its secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from compose_helpers import run_compose


def test_docker_compose_accepts_the_file(compose_binary: str, compose_env_file: Path, tmp_path: Path) -> None:
    result = run_compose(compose_binary, compose_env_file, "config", "--quiet", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, f"docker-compose warned:\n{result.stderr}"


def test_the_generator_profile_is_valid_too(compose_binary: str, compose_env_file: Path, tmp_path: Path) -> None:
    result = run_compose(compose_binary, compose_env_file, "--profile", "generator", "config", "--services",
                         home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "log-generator" in result.stdout.split()


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY",
                                    "AIRFLOW_API_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD", "DASHBOARD_PASSWORD",
                                    "KAFKA_UI_PASSWORD"])
def test_a_missing_secret_stops_compose_with_a_clear_message(compose_binary: str, compose_env_file: Path,
                                                            tmp_path: Path, secret: str) -> None:
    without = tmp_path / ".env"
    without.write_text("".join(line + "\n" for line in compose_env_file.read_text().splitlines()
                               if not line.startswith(f"{secret}=")))
    result = run_compose(compose_binary, without, "config", "--quiet", home=tmp_path)
    assert result.returncode != 0
    assert f"{secret} is not set; run `make compose-env`" in result.stderr


def test_ports_and_settings_follow_the_env_file(compose_binary: str, compose_env_file: Path, tmp_path: Path) -> None:
    custom = tmp_path / ".env"
    custom.write_text(compose_env_file.read_text() + "DASHBOARD_PORT=18501\nKAFKA_UI_PORT=19021\n"
                      "KAFKA_TOPIC_PARTITIONS=6\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092\n")
    result = run_compose(compose_binary, custom, "config", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"published: 18501\s+target: 8501|18501:8501", result.stdout)
    assert "KAFKA_TOPIC_PARTITIONS: '6'" in result.stdout
    assert "KAFKA_UI_URL: http://localhost:19021" in result.stdout
    # The host's broker address (embedded stack) never leaks into the containers (the published port binds
    # to 127.0.0.1:9092 on the host, which is not the containers' business).
    environments = [s.get("environment", {}) for s in yaml.safe_load(result.stdout)["services"].values()]
    assert not [v for env in environments for v in env.values() if "127.0.0.1:9092" in str(v)]

