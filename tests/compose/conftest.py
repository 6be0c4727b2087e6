"""Fixtures of the distributed-stack tests: Debian's `docker-compose` parses and resolves the file.

No Docker engine is needed: `docker-compose config` validates and interpolates offline. The static
tests read the configuration as docker-compose resolves it (anchors merged, `${VAR}` substituted from
an env file made the way `make compose-env` makes it), so they check what would actually run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_helpers import COMPOSE_FILE, MISSING_BINARY, ROOT, load_prepare_env, run_compose


@pytest.fixture(scope="session")
def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(MISSING_BINARY, pytrace=False)
    return binary


@pytest.fixture(scope="session")
def compose_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env made from .env.example plus generated secrets, as `make compose-env` makes it."""
    env_file = tmp_path_factory.mktemp("compose-env") / ".env"
    load_prepare_env().prepare(env_file, ROOT / ".env.example")
    return env_file


@pytest.fixture(scope="session")
def resolved(compose_binary: str, compose_env_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """docker-compose.yml as docker-compose resolves it."""
    result = run_compose(compose_binary, compose_env_file, "config", home=tmp_path_factory.mktemp("home"))
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def services(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resolved["services"]


@pytest.fixture(scope="session")
def raw_compose() -> dict[str, Any]:
    """The file as written (anchors merged by YAML, variables not substituted)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())
