"""Helpers of the distributed-stack tests: where things are, and running docker-compose offline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

MISSING_BINARY = (
    "docker-compose is not installed, so docker-compose.yml cannot be validated. Install it with "
    "`make test-tools` (or `apt-get install docker-compose`); the test suite needs it, no Docker engine."
)


def load_prepare_env() -> ModuleType:
    """compose/prepare_env.py, a stand-alone script, imported as a module."""
    spec = importlib.util.spec_from_file_location("prepare_env", ROOT / "compose" / "prepare_env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_compose(binary: str, env_file: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """docker-compose with only the given env file as its source of variables (no shell leakage)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run([binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
                           "--env-file", str(env_file), *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
