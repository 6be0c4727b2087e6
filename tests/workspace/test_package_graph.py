"""The workspace's package graph: every import of another workspace package is a declared dependency of
the importing package, and Airflow's locked dependency closure holds no Streamlit.

Static checks (pyproject.toml files, uv.lock and the sources' syntax trees); they run in about a second.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution a PEP 508 requirement names: "pandas>=2.2,<3" -> "pandas"."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot read the distribution name of the requirement {requirement!r}")
    return normalise(match.group(1))


@dataclass(frozen=True)
class Member:
    folder: Path
    distribution: str
    imports: frozenset[str]  # the top-level import packages its wheel ships
    dependencies: frozenset[str]


def read_member(folder: Path) -> Member:
    data = tomllib.loads((folder / "pyproject.toml").read_text())
    packages = data.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {}).get(
        "packages", [])
    if not packages:
        raise AssertionError(f"{folder / 'pyproject.toml'}: no [tool.hatch.build.targets.wheel] packages; say which "
                             "import package the member ships")
    return Member(folder=folder, distribution=normalise(data["project"]["name"]),
                  imports=frozenset(Path(p).name for p in packages),
                  dependencies=frozenset(requirement_name(r) for r in data["project"].get("dependencies", [])))


def workspace_members(root: Path) -> list[Member]:
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return [read_member(root / name) for name in data["tool"]["uv"]["workspace"]["members"]]


def imported_modules(path: Path) -> Iterable[tuple[str, int]]:
    """(top-level module, line) of every absolute import in a file, at any depth (functions included)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def sources(member: Member) -> list[Path]:
    """Every Python file of a member: its package, and scripts beside it (DAGs, page scripts, entry files)."""
    return sorted(p for p in member.folder.rglob("*.py")
                  if not {"__pycache__", "build", "dist", ".venv"} & set(p.relative_to(member.folder).parts))


def undeclared_imports(members: list[Member], root: Path) -> list[str]:
    """Imports of another member's package whose distribution the importing member does not declare."""
    owner = {name: m for m in members for name in m.imports}
    problems = []
    for member in members:
        for path in sources(member):
            for module, line in imported_modules(path):
                other = owner.get(module)
                if other is None or other is member or other.distribution in member.dependencies:
                    continue
                problems.append(f"{path.relative_to(root)}:{line} imports {module}, but {member.distribution} does "
                                f"not declare {other.distribution} (add it to {member.folder.name}/pyproject.toml "
                                f"dependencies and [tool.uv.sources])")
    return problems


def locked_closure(lock: dict, start: str) -> set[str]:
    """Every distribution uv.lock installs with `start`, extras followed. Markers are ignored, so the set can
    only be larger than what one platform installs: a package absent from it is absent everywhere."""
    packages: dict[str, list[dict]] = {}
    for package in lock["package"]:
        packages.setdefault(normalise(package["name"]), []).append(package)
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(normalise(start), ())]
    while todo:
        name, extras = todo.pop()
        key = name + "[" + ",".join(extras) + "]"
        if key in seen:
            continue
        seen.add(key)
        for package in packages.get(name, []):
            wanted = list(package.get("dependencies", []))
            for extra in extras:
                wanted += package.get("optional-dependencies", {}).get(extra, [])
            todo += [(normalise(d["name"]), tuple(d.get("extra", ()))) for d in wanted]
    return {key.partition("[")[0] for key in seen}


@pytest.fixture(scope="module")
def members() -> list[Member]:
    return workspace_members(ROOT)


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def test_every_cross_package_import_is_a_declared_dependency(members: list[Member]) -> None:
    assert {m.distribution for m in members} >= {"incident-contracts", "incident-rca", "incident-dashboard",
                                                 "incident-airflow", "incident-stack", "log-generator"}
    problems = undeclared_imports(members, ROOT)
    assert not problems, "\n".join(problems)


def test_an_undeclared_import_is_reported_with_its_place(tmp_path: Path) -> None:
    """The scan itself: a lazy import of a package the member does not declare is found, a declared one is not."""
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["a", "b"]\n')
    for name, deps in (("a", []), ("b", ["a-pkg>=1"])):
        (tmp_path / name / "src" / f"pkg_{name}").mkdir(parents=True)
        (tmp_path / name / "pyproject.toml").write_text(
            f'[project]\nname = "{name}-pkg"\ndependencies = {deps!r}\n'
            f'[tool.hatch.build.targets.wheel]\npackages = ["src/pkg_{name}"]\n'.replace("'", '"'))
    (tmp_path / "a" / "src" / "pkg_a" / "x.py").write_text("import os\n\ndef f():\n    from pkg_b.y import z\n")
    (tmp_path / "b" / "src" / "pkg_b" / "y.py").write_text("import pkg_a.x\nz = 1\n")
    problems = undeclared_imports(workspace_members(tmp_path), tmp_path)
    assert problems == ["a/src/pkg_a/x.py:4 imports pkg_b, but a-pkg does not declare b-pkg (add it to "
                        "a/pyproject.toml dependencies and [tool.uv.sources])"]


def test_the_analysis_package_imports_neither_streamlit_nor_the_dashboard(members: list[Member]) -> None:
    (rca,) = [m for m in members if m.distribution == "incident-rca"]
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}" for path in sources(rca)
             for module, line in imported_modules(path) if module in ("streamlit", "incident_dashboard")]
    assert not found, found


def test_airflow_installs_no_streamlit(lock: dict) -> None:
    """Airflow's locked closure (what its image and venv install) has the analysis but not Streamlit."""
    airflow = locked_closure(lock, "incident-airflow")
    assert {"incident-rca", "google-genai", "apache-airflow", "incident-contracts"} <= airflow
    assert "incident-dashboard" not in airflow
    assert "streamlit" not in airflow, "a dependency of incident-airflow pulls in streamlit (see uv.lock)"
    # The walk does reach Streamlit where it is a dependency: the dashboard's closure.
    assert "streamlit" in locked_closure(lock, "incident-dashboard")


def test_extras_are_followed_in_the_locked_closure() -> None:
    lock = {"package": [
        {"name": "app", "dependencies": [{"name": "lib", "extra": ["ui"]}]},
        {"name": "lib", "dependencies": [{"name": "core"}], "optional-dependencies": {"ui": [{"name": "Stream_Lit"}]}},
        {"name": "core"}, {"name": "stream-lit"}, {"name": "other"}]}
    assert locked_closure(lock, "app") == {"app", "lib", "core", "stream-lit"}
    assert locked_closure(lock, "lib") == {"lib", "core"}
