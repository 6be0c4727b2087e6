"""What the driver JVM writes to its standard error, passed through the job's own filter.

Spark copies the output of the Python processes it starts on the driver straight to the JVM's
``System.err``, without a logger or a setting in between. One of them prints five lines (and blank lines)
each time the job's query starts with its detector (the stateful operator): pyspark's
``transform_with_state_driver_worker`` announces itself as "Streaming TransformWithStateInPandas Python
worker". :func:`filter_jvm_stderr` points ``System.err`` at a pipe this process reads: those lines go to
the ``incident_stream.spark`` logger at DEBUG, everything else is written to this process's standard
error unchanged. (Under spark-submit this process's output goes back through the JVM's ``System.out``, so
nothing loops.) Spark's own log lines are not affected (log4j's console appender keeps the stream it
opened at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("incident_stream.spark")

# Lines of the Python process Spark starts on the driver when a transformWithStateInPandas query starts.
WORKER_BANNER = "Streaming TransformWithStateInPandas Python worker"


class LineFilter:
    """Decides per line: a worker banner goes to `debug`, any other line to `out`.

    The banners are printed with a trailing newline of their own, so the blank line right after one is
    dropped too."""

    def __init__(self, out: Callable[[str], Any], debug: Callable[[str], Any]):
        self.out, self.debug = out, debug
        self._after_banner = False

    def feed(self, line: str) -> None:
        text = line.rstrip("\r\n")
        if WORKER_BANNER in text:
            self.debug(text)
            self._after_banner = True
            return
        after_banner, self._after_banner = self._after_banner, False
        if after_banner and not text.strip():
            return
        self.out(line if line.endswith("\n") else line + "\n")


def _write_to(stream: TextIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        stream.write(line)
        stream.flush()
    return write


class JvmStderrFilter:
    """The driver JVM's ``System.err`` routed through :class:`LineFilter` into `out`; :meth:`close` gives
    the JVM its own stream back and waits for the last line (call it before the interpreter exits: a
    thread still writing then could stop it with a fatal error)."""

    def __init__(self, jvm: Any, fifo: Path, line_filter: LineFilter):
        self._jvm = jvm
        self._original = jvm.java.lang.System.err
        self._thread = threading.Thread(target=self._read, args=(fifo, line_filter), name="jvm-stderr",
                                        daemon=True)
        self._thread.start()  # opening the pipe to read blocks until the JVM opens it to write
        self._stream = jvm.java.io.PrintStream(jvm.java.io.FileOutputStream(str(fifo)), True, "UTF-8")
        jvm.java.lang.System.setErr(self._stream)

    @staticmethod
    def _read(fifo: Path, line_filter: LineFilter) -> None:
        with open(fifo, "rb") as reader:
            for raw in reader:
                with contextlib.suppress(Exception):  # one bad line must not stop the reading (the JVM would block)
                    line_filter.feed(raw.decode("utf-8", "replace"))

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(Exception):  # the JVM may be gone already: then so is the pipe's writer
            self._jvm.java.lang.System.setErr(self._original)
            self._stream.close()
        self._thread.join(timeout)


def filter_jvm_stderr(spark: Any, out: TextIO | None = None) -> JvmStderrFilter | None:
    """Route the driver JVM's ``System.err`` through :class:`LineFilter` into `out` (this process's standard
    error); None (and nothing changed) when that cannot be done."""
    folder = Path(tempfile.mkdtemp(prefix="incident-stream-stderr-"))
    fifo = folder / "stderr"
    try:
        os.mkfifo(fifo)
        line_filter = LineFilter(_write_to(out or sys.stderr), lambda text: log.debug("%s", text))
        return JvmStderrFilter(spark.sparkContext._jvm, fifo, line_filter)
    except Exception as exc:  # no FIFOs here, or py4j refused: the JVM keeps its stream
        log.debug("the JVM's standard error is not filtered: %s", exc)
        with contextlib.suppress(OSError):  # releases a reader still waiting for the JVM (ENXIO: none waits)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        return None
    finally:
        with contextlib.suppress(OSError):
            fifo.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
