"""Spark's JVMs start from the class-data archive `make setup` builds (incident_stream.class_data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from incident_contracts.class_data import archive_path
from incident_contracts.settings import Settings
from incident_stream import class_data
from incident_stream.session import spark_conf

pytestmark = pytest.mark.spark

# A session as the job builds it, its JVM also logging where each class came from.
SESSION = """
import sys
from incident_contracts.settings import Settings
from incident_stream.session import build_session, spark_conf
settings = Settings(_env_file=None, spark_master="local[1]")
driver = spark_conf(settings)["spark.driver.extraJavaOptions"] + " -Xlog:class+load=info:file=" + sys.argv[1]
spark = build_session(settings, extra={"spark.ui.enabled": "false", "spark.driver.extraJavaOptions": driver})
spark.range(100).selectExpr("sum(id)").collect()
spark.stop()
"""


def test_the_archive_is_up_to_date_and_the_job_driver_loads_spark_from_it(tmp_path: Path) -> None:
    archive = archive_path()
    assert archive is not None and archive.is_file(), \
        f"no class-data archive at {archive}: `make setup` builds it (python -m incident_stream.class_data)"
    assert class_data.build() == 0  # up to date: kept as it is
    assert f"-XX:SharedArchiveFile={archive}" in spark_conf(Settings(_env_file=None))["spark.driver.extraJavaOptions"]  # type: ignore[call-arg]

    log = tmp_path / "classes.log"
    result = subprocess.run([sys.executable, "-c", SESSION, str(log)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Spark's classes of its jars (lambda proxies are made at run time, never from a jar)
    loads = [line for line in log.read_text().splitlines() if " org.apache.spark." in line and "$$Lambda" not in line]
    shared = [line for line in loads if "source: shared objects file (top)" in line]
    assert any("org.apache.spark.SparkContext " in line for line in shared), loads[:20]
    assert len(shared) > 0.8 * len(loads), f"{len(shared)} of {len(loads)} Spark classes from the archive"
