"""Reading the Delta tables with Apache Spark (delta-spark, the jar set stack/jvm/delta-spark), in a Python
subprocess: the session setup both Spark-reads tests share.

Spark 4.3 with delta-spark 4.4 (built for Spark 4.2): the default connector (V1) cannot load a snapshot on
this Spark, the Kernel-based one (V2) reads; STRICT routes every table to it (stack/jvm/delta-spark/pom.xml).
A script starts with SESSION (which defines `spark`, `os`, `sys`, `json` and `ipc`) and goes on with its own
body; `save(name, frame)` writes a frame's rows as an Arrow file into the folder given as argv[2].
"""

from __future__ import annotations

SESSION = r"""
import json, os, sys
import pyarrow.ipc as ipc
from incident_contracts.settings import Settings
from incident_stack.jars import classpath, fetch
from incident_stream.session import build_session

fetch("delta-spark")
spark = build_session(Settings(_env_file=None), master="local[1]", ui=False, extra={
    "spark.jars": classpath("delta-spark").replace(os.pathsep, ","),
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.databricks.delta.v2.enableMode": "STRICT"})
spark.sparkContext.setLogLevel("ERROR")

def save(name, frame):
    table = frame.toArrow()
    with ipc.new_file(os.path.join(sys.argv[2], name + ".arrow"), table.schema) as writer:
        writer.write_table(table)
"""
