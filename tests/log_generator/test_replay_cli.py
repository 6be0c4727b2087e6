"""`log-generator --replay`: the file's events on stdout (not generated ones), standard input, and
`--follow` across growth, rotation and truncation (a real growing file, the command in a subprocess)."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from log_generator import cli
from log_generator.replay import LogFileReader

SAMPLES = Path(__file__).resolve().parent / "samples"
COMMAND = str(Path(sys.executable).parent / "log-generator")


def stdout_events(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict], str]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_replay_stdout_streams_the_files_events(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "hdfs.log"
    assert cli.main(["--replay", str(path), "--stdout", "--count", "7"]) == 0
    events, err = stdout_events(capsys)
    expected = list(LogFileReader(path, "hdfs"))[:7]
    assert events == expected
    assert [e["message"] for e in events] == [line.split(": ", 1)[1] for line in
                                              path.read_text().splitlines()[:7]]
    assert {e["service"] for e in events} == {"hdfs"}
    assert "format auto: hdfs" in err
    stats = json.loads(err.strip().splitlines()[-1])["replay"]
    assert stats["format"] == "hdfs" and stats["unparsed"] == 0


def test_replay_without_count_streams_every_event(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "python.log"
    assert cli.main(["--replay", str(path), "--stdout", "--format", "python", "--service", "checkout"]) == 0
    events, _ = stdout_events(capsys)
    assert len(events) == 80 and {e["service"] for e in events} == {"checkout"}
    assert sum("Traceback (most recent call last):" in e["message"] for e in events) == \
        sum(e["level"] == "ERROR" for e in events) > 0


def test_replay_dash_reads_standard_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = (SAMPLES / "klog.log").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert cli.main(["--replay", "-", "--stdout", "--year", "2026"]) == 0
    events, err = stdout_events(capsys)
    assert len(events) == len(data.splitlines()) == 70
    assert events[0]["message"] == data.splitlines()[0].decode().split("] ", 1)[1]
    assert {e["attributes"]["source_file"] for e in events} == {"stdin"} and "format auto: klog" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--follow"], "--follow only applies with --replay FILE"),
    (["--format", "log4j"], "--format only applies with --replay FILE"),
])
def test_replay_options_need_replay(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_unknown_format_and_missing_file_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--replay", str(SAMPLES / "hdfs.log"), "--format", "xml", "--stdout"]) == cli.EXIT_USAGE
    assert "unknown log format 'xml'; choose auto or one of:" in capsys.readouterr().err
    assert cli.main(["--replay", str(tmp_path / "nope.log"), "--stdout"]) == cli.EXIT_USAGE
    assert "nope.log not found" in capsys.readouterr().err


def test_list_formats_names_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list-formats"]) == 0
    out = capsys.readouterr().out
    for name in ("log4j", "zookeeper", "openstack", "bgl", "journald", "cri", "syslog-rfc5424"):
        assert f"\n  {name} " in out


def _line(n: int) -> str:
    return f"2026-11-20 08:00:{n:02d},000 [main] INFO  com.shop.Tail - line {n}\n"


class Lines:
    """The subprocess's stdout lines, read by a thread so the test can wait with a deadline."""

    def __init__(self, stream: io.TextIOBase):
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.queue.put(line) for line in stream], daemon=True).start()

    def messages(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            try:
                out.append(json.loads(self.queue.get(timeout=max(0.01, deadline - time.monotonic())))["message"])
            except queue.Empty:
                break
        return out


def test_follow_tails_growth_rotation_and_truncation(tmp_path: Path) -> None:
    """Integration of the command with a real growing file; about 5 s."""
    path = tmp_path / "tail.log"
    path.write_text(_line(1) + _line(2))
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "RUNTIME_DIR": str(tmp_path / "runtime")}
    process = subprocess.Popen([COMMAND, "--replay", str(path), "--follow", "--stdout", "--format", "log4j"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = Lines(process.stdout)
        assert lines.messages(2, timeout=15) == ["line 1", "line 2"]  # start-up, then the idle flush of line 2
        with open(path, "a") as handle:  # growth, one line written in two pieces
            handle.write(_line(3)[:20])
            handle.flush()
            time.sleep(0.3)
            handle.write(_line(3)[20:] + _line(4))
        assert lines.messages(2) == ["line 3", "line 4"]
        path.rename(tmp_path / "tail.log.1")  # rotation: the writer finishes the old file, then a new one starts
        with open(tmp_path / "tail.log.1", "a") as handle:
            handle.write(_line(5))
        time.sleep(0.3)
        path.write_text(_line(6) + _line(7))
        assert lines.messages(3) == ["line 5", "line 6", "line 7"]
        with open(path, "r+") as handle:  # truncation in place (copytruncate), then a shorter line
            handle.truncate(0)
        time.sleep(0.3)
        with open(path, "a") as handle:
            handle.write("2026-11-20 08:00:08,000 [main] INFO  a.B - l8\n")  # shorter than what was read
        assert lines.messages(1) == ["l8"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    stats = json.loads(err.strip().splitlines()[-1])["replay"]
    assert stats["parsed"] == 8 and stats["unparsed"] == 0
