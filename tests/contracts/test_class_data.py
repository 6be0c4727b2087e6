"""Where the class-data archive of Spark's JVMs is, and when the JVM options name it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from incident_contracts import class_data
from incident_contracts.settings import Settings


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A Java runtime and a PySpark jars folder of their own: (java binary, jars folder)."""
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    jars = tmp_path / "pyspark" / "jars"
    jars.mkdir(parents=True)
    for name in ("spark-core.jar", "spark-sql.jar"):
        (jars / name).write_bytes(b"PK" + name.encode())
    monkeypatch.setenv("JAVA_HOME", str(java.parent.parent))
    monkeypatch.setattr(class_data, "spark_jars", lambda: jars)
    return java, jars


def test_the_archive_is_named_after_the_java_runtime_and_the_jars(installation, tmp_path: Path) -> None:
    java, jars = installation
    first = class_data.archive_path(tmp_path)
    assert first.parent == tmp_path / ".jars" / "class-data" and first.name.startswith("spark-")
    assert class_data.archive_path(tmp_path) == first  # nothing changed: the same archive

    (jars / "spark-sql.jar").write_bytes(b"PK a newer build")  # PySpark upgraded
    after_upgrade = class_data.archive_path(tmp_path)
    assert after_upgrade != first

    os.utime(java, ns=(0, 12345))  # another Java runtime at the same path
    assert class_data.archive_path(tmp_path) not in (first, after_upgrade)

    (jars / "extra.jar").write_bytes(b"PK")
    assert class_data.archive_path(tmp_path) != after_upgrade


def test_options_name_the_archive_only_when_it_exists_and_is_wanted(installation, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(class_data, "project_root", lambda: tmp_path)
    on = Settings(_env_file=None)  # type: ignore[call-arg]
    off = Settings(_env_file=None, spark_class_data=False)  # type: ignore[call-arg]
    assert class_data.java_options(on) == ""  # not built yet: the JVM starts as before

    archive = class_data.archive_path(tmp_path)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    assert class_data.java_options(on).split() == [f"-XX:SharedArchiveFile={archive}", *class_data.QUIET.split()]
    assert class_data.java_options(off) == ""


def test_no_java_or_no_pyspark_means_no_archive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(class_data, "spark_jars", lambda: None)
    assert class_data.fingerprint() is None and class_data.archive_path(tmp_path) is None
    assert class_data.java_options(Settings(_env_file=None)) == ""  # type: ignore[call-arg]


def test_spark_conf_gives_the_archive_to_driver_and_executors_only_when_there_is_one(
        installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(class_data, "project_root", lambda: tmp_path)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert class_data.spark_java_conf(settings, "-Dlog=x") == {"spark.driver.extraJavaOptions": "-Dlog=x"}

    archive = class_data.archive_path(tmp_path)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    options = class_data.java_options(settings)
    assert class_data.spark_java_conf(settings, "-Dlog=x") == {
        "spark.driver.extraJavaOptions": f"-Dlog=x {options}", "spark.executor.extraJavaOptions": options}


def test_pyspark_folder_is_the_installed_distribution() -> None:
    import pyspark

    folder = class_data.pyspark_folder()
    assert folder == Path(pyspark.__file__).resolve().parent
    assert class_data.spark_jars() == folder / "jars" and (folder / "bin" / "spark-class").is_file()
