"""PySpark's Python worker daemon, with the job's task modules imported before it forks its workers.

Spark starts one daemon per executor (``spark.python.daemon.module``) and forks a worker from it for each
Python task slot. PySpark's own daemon imports only itself, so every fresh worker imported pyarrow, pandas
and the job's source and detector modules on its first task: about 1.6 s of CPU each, paid by the first
micro-batch after every (re)start, in every reading task and in the detector's task. Imported here once,
they are in every forked worker already.

Forking after these imports is safe: the only threads they start are jemalloc's background threads
(pyarrow) and OpenBLAS's pool (numpy), and both libraries register fork handlers for them.
"""

from __future__ import annotations

import importlib

PRELOADED = (
    "pyarrow",
    "pandas",
    "pyspark.worker",
    "incident_stream.logs_source",
    "incident_stream.detection.processor",
)


def main() -> None:
    for module in PRELOADED:
        importlib.import_module(module)
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
