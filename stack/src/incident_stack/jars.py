"""JVM jars the project runs (the Kafka broker, connectors), fetched from Maven Central and verified.

Each jar set is a folder under ``stack/jvm/`` holding a ``pom.xml`` (the pinned artifacts) and a
``jars.sha256`` (the SHA-256 of every jar the set resolves to, its exact contents). ``fetch`` asks
Maven to copy the runtime dependencies into ``.jars/<set>`` (Maven's own cache, ``~/.m2``, keeps
the downloads between checkouts) and refuses the set unless the folder holds exactly the listed
jars with the listed digests. A set already in place and verified is not fetched again.

``python -m incident_stack.jars fetch kafka`` is what `make setup` runs;
``python -m incident_stack.jars lock SET`` rewrites a set's ``jars.sha256`` after a version change.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from incident_contracts.settings import project_root

JAR_SETS = ("kafka", "spark-kafka", "delta-spark")
_VERIFIED = ".verified"


class JarsUnavailable(RuntimeError):
    """A jar set could not be fetched or does not match its pinned digests."""


def spec_dir(name: str) -> Path:
    return project_root() / "stack" / "jvm" / name


def jar_dir(name: str) -> Path:
    return project_root() / ".jars" / name


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def pinned(name: str) -> dict[str, str]:
    """{jar file name: sha256} of a set, from its jars.sha256."""
    lock = spec_dir(name) / "jars.sha256"
    entries: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, file_name = line.split()
            entries[file_name] = digest
    return entries


def _mismatches(folder: Path, expected: dict[str, str]) -> list[str]:
    present = {p.name for p in folder.glob("*.jar")} if folder.is_dir() else set()
    problems = [f"missing {n}" for n in sorted(set(expected) - present)]
    problems += [f"unexpected {n}" for n in sorted(present - set(expected))]
    problems += [f"{n}: sha256 differs from the pinned digest" for n in sorted(present & set(expected))
                 if _digest(folder / n) != expected[n]]
    return problems


def _maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsUnavailable("Apache Maven (`mvn`) is needed to fetch the Kafka jars from Maven Central and was "
                              "not found on PATH: install it (apt-get install maven) and run `make setup` again")
    return mvn


def _copy_dependencies(name: str, into: Path) -> None:
    command = [_maven(), "-B", "-q", "-f", str(spec_dir(name) / "pom.xml"), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={into}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise JarsUnavailable(f"Maven could not fetch the {name} jars (exit {result.returncode}); is Maven Central "
                              "reachable? Last lines:\n" + "\n".join(output[-15:]))


def is_ready(name: str) -> bool:
    """Whether the set is in place and was verified against its pinned digests."""
    marker = jar_dir(name) / _VERIFIED
    lock = spec_dir(name) / "jars.sha256"
    return marker.is_file() and marker.read_text() == _digest(lock)


def fetch(name: str) -> Path:
    """The verified folder of a jar set, fetching it first when needed."""
    if name not in JAR_SETS:
        raise JarsUnavailable(f"unknown jar set {name!r}; known: {', '.join(JAR_SETS)}")
    target = jar_dir(name)
    if is_ready(name):
        return target
    expected = pinned(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        print(f"fetching the {name} jars from Maven Central ({len(expected)} jars)...", flush=True)
        _copy_dependencies(name, staging)
        problems = _mismatches(staging, expected)
        if problems:
            raise JarsUnavailable(f"the {name} jars do not match stack/jvm/{name}/jars.sha256: "
                                  + "; ".join(problems[:8]))
        (staging / _VERIFIED).write_text(_digest(spec_dir(name) / "jars.sha256"))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def classpath(name: str) -> str:
    """A Java class path of every jar of a verified set; raises with the command to run when it is absent."""
    if not is_ready(name):
        raise JarsUnavailable(f"the {name} jars are not installed in {jar_dir(name)}; run `make setup`")
    return os.pathsep.join(str(p) for p in sorted(jar_dir(name).glob("*.jar")))


def lock(name: str) -> Path:
    """Resolve a set afresh and write its jars.sha256 (after changing a version in its pom.xml)."""
    with tempfile.TemporaryDirectory() as folder:
        _copy_dependencies(name, Path(folder))
        lines = [f"{_digest(p)}  {p.name}" for p in sorted(Path(folder).glob("*.jar"))]
    path = spec_dir(name) / "jars.sha256"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incident_stack.jars", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("fetch", "lock"))
    parser.add_argument("sets", nargs="+", choices=JAR_SETS)
    args = parser.parse_args(argv)
    try:
        for name in args.sets:
            if args.action == "fetch":
                print(f"{name} jars: {fetch(name)}")
            else:
                print(f"wrote {lock(name)}")
    except JarsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
