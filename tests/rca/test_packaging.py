"""incident-rca's wheel carries the runbook knowledge base where the offline analyzer looks for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted(p.name for p in (ROOT / "rca" / "runbooks").glob("*.md"))


def uv_command() -> list[str]:
    """uv as the Makefile runs it (`$(PYTHON) -m uv`): under this interpreter, the one the environment was
    made from, or python3 on PATH; a `uv` program on PATH last."""
    pythons = dict.fromkeys(p for p in (sys.executable, getattr(sys, "_base_executable", None),
                                        shutil.which("python3")) if p)
    candidates = [[python, "-m", "uv"] for python in pythons]
    if shutil.which("uv"):
        candidates.append([str(shutil.which("uv"))])
    for command in candidates:
        found = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
        if found.returncode == 0:
            return command
    pytest.fail("uv is needed to build the wheel (as the dashboard's and Airflow's Dockerfiles do) and was not "
                f"found: tried {' / '.join(' '.join(c) for c in candidates)}. Install it as `make setup` does: "
                "python3 -m pip install uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --offline: the build backend comes from uv's cache, filled when the environment was installed.
    done = subprocess.run([*uv_command(), "build", "--wheel", "--offline", "--out-dir", str(out), str(ROOT / "rca")],
                          capture_output=True, text=True, timeout=240, check=False)
    if done.returncode != 0 and "offline" in done.stderr.lower() and "hatchling" in done.stderr.lower():
        pytest.fail("the build backend (hatchling) is not in uv's cache and the build runs offline: run "
                    f"`make setup` once with access to the package index to fill the cache. {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("incident_rca-*.whl")
    return built


def test_wheel_contains_every_runbook(wheel: Path) -> None:
    assert RUNBOOKS  # the repository has runbooks to ship
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(Path(n).name for n in archive.namelist() if n.startswith("incident_rca/knowledge_base/"))
        assert shipped == RUNBOOKS
        for name in RUNBOOKS:
            assert archive.read(f"incident_rca/knowledge_base/{name}") == (ROOT / "rca" / "runbooks" /
                                                                           name).read_bytes()


def test_installed_package_finds_its_runbooks(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    # The unpacked wheel first on the path, outside the checkout: the package must not reach rca/runbooks.
    probe = ("import incident_rca; from incident_rca.runbooks import default_runbook_dir, "
             "load_knowledge_base; print(incident_rca.__file__); print(default_runbook_dir()); "
             "print(len(load_knowledge_base().runbooks))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    module, folder, count = done.stdout.split()
    assert module.startswith(str(tmp_path / "site"))
    assert Path(folder) == tmp_path / "site" / "incident_rca" / "knowledge_base"
    assert int(count) == len(RUNBOOKS)
