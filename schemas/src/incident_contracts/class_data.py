"""The class-data archive of Spark's JVMs (Java's AppCDS): where it is and the options that use it.

A Spark driver starts by loading and verifying some 15,000 classes from the 280 jars of PySpark; on two
cores that is most of the 10 s a session takes to start and of its first job's warm-up. A JVM that maps
a class-data archive takes those classes, already parsed and verified, from one file. `make setup` builds
the archive once per installation (incident_stream.class_data runs a short Spark workload that dumps the
classes it loaded); drivers and executors then start with ``-XX:SharedArchiveFile``.

The archive is only valid for the Java runtime and the jars it was made from, so its file name carries a
fingerprint of both: after an upgrade the old archive is simply not found, and the JVM starts as before.
A JVM whose class path does not match the archive (extra jars in front of Spark's) ignores it silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from incident_contracts.settings import Settings, project_root

ARCHIVE_DIR = Path(".jars") / "class-data"  # under the project root, beside the jars `make setup` fetches
ARCHIVE_PREFIX = "spark-"
# The JVM reports each class it cannot archive (signed jars, generated accessors) as a warning on stdout.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def pyspark_folder() -> Path | None:
    """The installed PySpark package's folder (without importing pyspark), or None when it is not installed.
    A full PySpark is a Spark distribution: jars/ and bin/spark-class are in it."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def spark_jars() -> Path | None:
    """PySpark's jars folder, or None when PySpark is not installed."""
    folder = pyspark_folder()
    jars = folder / "jars" if folder is not None else None
    return jars if jars is not None and jars.is_dir() else None


def java_binary() -> Path | None:
    """The `java` a Spark launch runs: $JAVA_HOME/bin/java, else the one on PATH (symlinks resolved)."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else None
    if found is None or not found.is_file():
        which = shutil.which("java")
        found = Path(which) if which else None
    return found.resolve() if found is not None else None


def fingerprint() -> str | None:
    """A digest of the Java runtime and Spark's jars (names, sizes, modification times); None if either is
    missing."""
    java, jars = java_binary(), spark_jars()
    if java is None or jars is None:
        return None
    digest = hashlib.sha256()
    for path in [java, *sorted(jars.glob("*.jar"))]:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def archive_path(root: Path | None = None) -> Path | None:
    """Where the archive of this Java runtime and these jars is (whether it exists or not)."""
    mark = fingerprint()
    if mark is None:
        return None
    return (root or project_root()) / ARCHIVE_DIR / f"{ARCHIVE_PREFIX}{mark}.jsa"


def java_options(settings: Settings) -> str:
    """JVM options that map the archive, or "" when it is off (SPARK_CLASS_DATA=false) or not built."""
    if not settings.spark_class_data:
        return ""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def spark_java_conf(settings: Settings, driver_options: str) -> dict[str, str]:
    """Spark's JVM options: the driver's `driver_options`, and the archive's for the driver and the executors
    when there is one (an executor entry only then: an empty one would replace a cluster's defaults)."""
    class_data = java_options(settings)
    conf = {"spark.driver.extraJavaOptions": f"{driver_options} {class_data}".strip()}
    if class_data:
        conf["spark.executor.extraJavaOptions"] = class_data
    return conf
