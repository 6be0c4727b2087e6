"""compose/spark/spark-defaults.conf, the Spark defaults of the Airflow image, on real spark-submit.

The DAG hands spark-submit its own interpreter's absolute path as PYSPARK_PYTHON. In the distributed
stack the executors run in another image, where that path does not exist; the defaults file makes
driver and executors resolve `python3` on their own PATH instead. Checked here by submitting a small
job whose PYSPARK_PYTHON points nowhere: it only succeeds if the file takes precedence (without the
file, the same job fails with "Cannot run program /nonexistent/python3").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from compose_helpers import ROOT

pytestmark = pytest.mark.integration

APP = """
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("python-resolution").getOrCreate()
executors = spark.sparkContext.parallelize(range(2), 2).map(lambda _: __import__("sys").executable).collect()
print("DRIVER", sys.executable)
print("EXECUTORS", sorted(set(executors)))
spark.stop()
"""


def _submit(tmp_path: Path, conf_dir: Path | None) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    bin_dir = Path(sys.executable).parent
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYSPARK_", "SPARK_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYSPARK_DRIVER_PYTHON=sys.executable,
               PYSPARK_PYTHON="/nonexistent/python3")  # what the driver's image path means to an executor
    if conf_dir is not None:
        env["SPARK_CONF_DIR"] = str(conf_dir)
    return subprocess.run([str(bin_dir / "spark-submit"), "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                           str(app)], env=env, capture_output=True, text=True, timeout=180)


def test_executors_find_python_on_their_own_path(tmp_path: Path) -> None:
    result = _submit(tmp_path, ROOT / "compose" / "spark")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    executors = next(line for line in result.stdout.splitlines() if line.startswith("EXECUTORS"))
    assert "/nonexistent" not in executors and str(Path(sys.executable).parent) in executors

