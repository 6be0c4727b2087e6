"""Static checks of the images' Dockerfiles: pinned bases, non-root, no secrets, and every COPY source
present in the build context (the repository root minus .dockerignore), so a build cannot fail on it."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compose_helpers import ROOT

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|FERNET)", re.IGNORECASE)
NEVER_IN_CONTEXT = (".env", ".venv/bin/python", "data/x.parquet", "runtime/pids/a.pid", ".git/HEAD",
                    "schemas/src/incident_contracts/__pycache__/x.pyc")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negate, re.compile(regex + "(?:/.*)?$")))
    return patterns


def _ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    ignored = False
    for negate, regex in patterns:
        if regex.match(relative):
            ignored = not negate
    return ignored


def _dockerfiles(services: dict[str, Any]) -> dict[str, Path]:
    found = {}
    for service in services.values():
        build = service.get("build")
        if build:
            path = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
            if path.is_file():
                found[str(path.relative_to(ROOT))] = path
    return found


@pytest.fixture(scope="module")
def dockerfiles(services: dict[str, Any]) -> dict[str, Path]:
    found = _dockerfiles(services)
    assert "airflow/Dockerfile" in found
    return found


def test_dockerignore_keeps_secrets_and_local_state_out_of_every_image() -> None:
    patterns = _dockerignore()
    for path in NEVER_IN_CONTEXT:
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ("uv.lock", "pyproject.toml", "schemas/avro/log_event.v1.avsc", "airflow/dags/x.py",
                 "compose/spark/spark-defaults.conf", ".env.example"):
        assert not _ignored(path, patterns), f"{path} is needed by the builds but ignored"


def test_base_images_are_pinned(dockerfiles: dict[str, Path]) -> None:
    for name, path in dockerfiles.items():
        args: dict[str, str] = {}
        stages: set[str] = set()
        for keyword, rest in _instructions(path):
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args.setdefault(key.strip(), value.strip().strip('"'))
            if keyword == "FROM":
                parts = rest.split()
                image = next(p for p in parts if not p.startswith("--"))
                for key, value in args.items():
                    image = image.replace(f"${{{key}}}", value).replace(f"${key}", value)
                if len(parts) >= 3 and parts[-2].upper() == "AS":
                    stages.add(parts[-1])
                if image in stages or image == "scratch":
                    continue
                tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
                assert "@sha256:" in image or re.search(r"\d+\.\d+\.\d+", tag), (
                    f"{name}: base image {image} is not pinned to a release (x.y.z); a tag like 3.11 moves")


def test_images_run_as_a_non_root_user(dockerfiles: dict[str, Path]) -> None:
    for name, path in dockerfiles.items():
        instructions = _instructions(path)
        last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
        users = [rest.split(":")[0] for keyword, rest in instructions[last_from:] if keyword == "USER"]
        assert users, f"{name}: the final stage sets no USER (say which non-root user runs it)"
        assert users[-1] not in ("root", "0"), f"{name}: the image runs as root"


def test_no_secret_is_baked_into_an_image(dockerfiles: dict[str, Path]) -> None:
    for name, path in dockerfiles.items():
        for keyword, rest in _instructions(path):
            if keyword in ("ENV", "ARG"):
                for key, _, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(=|\s+)(\S*)", rest):
                    assert not (SECRET_NAME.search(key) and value.strip('"\'')), f"{name}: {keyword} {key} has a value"
            if keyword in ("COPY", "ADD"):
                assert not re.search(r"(^|\s)\.env(\s|$)", rest), f"{name} copies .env into the image"


def test_every_copied_path_is_in_the_build_context(dockerfiles: dict[str, Path]) -> None:
    patterns = _dockerignore()
    for name, path in dockerfiles.items():
        for keyword, rest in _instructions(path):
            if keyword not in ("COPY", "ADD"):
                continue
            tokens = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            flags = [t for t in tokens if t.startswith("--")]
            if any(flag.startswith("--from") for flag in flags):
                continue
            sources = [t for t in tokens if not t.startswith("--")][:-1]
            for source in sources:
                matches = [p for p in ROOT.glob(source.rstrip("/")) if p.exists()]
                sent = [p for p in matches if not _ignored(str(p.relative_to(ROOT)), patterns)]
                assert sent, f"{name}: {keyword} {source} matches nothing in the build context"


def test_the_airflow_image_is_multi_stage_and_locked() -> None:
    instructions = _instructions(ROOT / "airflow" / "Dockerfile")
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) == 2 and " AS build" in froms[0]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "uv export --frozen" in runs and "--require-hashes" in runs and "--no-deps" in runs


def _uv() -> list[str]:
    if shutil.which("uv"):
        return [str(shutil.which("uv"))]
    for python in ("python3", sys.executable):
        if subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.fail("uv is not installed (`make setup` installs it)", pytrace=False)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Code each image runs besides its own wheels (files copied into the image).
EXTRA_SOURCES = {"airflow/Dockerfile": ["airflow/dags", "spark/submit_stream.py"]}


def _closure_and_sources(dockerfile: Path) -> tuple[set[str], set[str], list[Path]]:
    """(distributions the image installs, first-party packages, source paths) from its uv export and wheels."""
    build = " ".join(rest for keyword, rest in _instructions(dockerfile) if keyword == "RUN" and "uv export" in rest)
    export = shlex.split(build.split("uv export", 1)[1].split("&&", 1)[0])
    if "--output-file" in export:
        del export[export.index("--output-file"):export.index("--output-file") + 2]
    result = subprocess.run([*_uv(), "export", *export, "--no-hashes", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    closure = {_normalise(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", result.stdout, flags=re.MULTILINE)}
    members = re.search(r"for member in ([a-z -]+); do", build)
    assert members, f"the wheel loop of {dockerfile.relative_to(ROOT)} was not found"
    relative = str(dockerfile.relative_to(ROOT))
    sources = [ROOT / extra for extra in EXTRA_SOURCES.get(relative, [])]
    first_party = set()
    for member in members.group(1).split():
        for package in (ROOT / member / "src").iterdir():
            if package.is_dir() and (package / "__init__.py").is_file():
                first_party.add(package.name)
                sources.append(package)
    return closure, first_party, sources


def test_every_image_holds_every_package_its_code_imports(dockerfiles: dict[str, Path]) -> None:
    """Images install only uv.lock's closure of a few workspace packages: every third-party module the
    code they run imports (for Airflow: the tasks, the DAGs, the Spark driver) must come with it."""
    distributions = importlib.metadata.packages_distributions()
    # Images that resolve their packages at build time (pip install ./member) get what pip resolves;
    # this checks the ones that install uv.lock's exported closure.
    locked = {name: path for name, path in dockerfiles.items() if "uv export" in path.read_text()}
    assert "airflow/Dockerfile" in locked
    for name, dockerfile in locked.items():
        closure, first_party, sources = _closure_and_sources(dockerfile)
        imported: dict[str, str] = {}
        for source in sources:
            for path in [source] if source.is_file() else source.rglob("*.py"):
                for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                             [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                             else [])
                    for module in names:
                        imported.setdefault(module.split(".")[0], str(path.relative_to(ROOT)))
        third_party = {m: p for m, p in imported.items()
                       if m not in sys.stdlib_module_names and m not in first_party and m != "__future__"}
        missing = [f"{module} (imported by {path})" for module, path in sorted(third_party.items())
                   if not {_normalise(d) for d in distributions.get(module, [])} & closure]
        assert not missing, f"modules {name} would lack: {missing}"


def _python_minor(dockerfile: Path) -> str:
    """The Python minor version of the final stage's base image."""
    args: dict[str, str] = {}
    base = ""
    for keyword, rest in _instructions(dockerfile):
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key.strip(), value.strip().strip('"'))
        if keyword == "FROM":
            base = rest.split()[0]
            for key, value in args.items():
                base = base.replace(f"${{{key}}}", value)
    match = re.search(r"python:?(\d+\.\d+)", base)
    assert match, f"{dockerfile.relative_to(ROOT)}: cannot tell the Python version of {base}"
    return match.group(1)


def test_driver_and_executors_run_the_same_python() -> None:
    """PySpark refuses executors whose Python minor version differs from the driver's."""
    driver = _python_minor(ROOT / "airflow" / "Dockerfile")
    assert _python_minor(ROOT / "spark" / "Dockerfile") == driver == "3.11"
