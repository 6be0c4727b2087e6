"""Run a fuzz target of tests/fuzz_targets.py for a bounded time from a seed corpus; report what it found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from log_generator.replay.parser import ParseOptions, load_formats, parse

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS / "log_generator" / "samples"
# Seconds each target fuzzes in the suite; raise it for a longer hunt (FUZZ_SECONDS=600 make test).
SECONDS = int(os.environ.get("FUZZ_SECONDS", "6"))


def sample_events(limit_per_file: int = 3) -> list[dict]:
    """LogEvents parsed from the log-format samples: realistic seeds for the decoders."""
    formats = load_formats()
    events = []
    for sample in sorted(SAMPLES.glob("*.log")):
        lines = sample.read_text().splitlines()[:20]
        events += parse(lines, sample.stem, ParseOptions(service="seed"), formats).events[:limit_per_file]
    return events


def fuzz(target: str, seeds: Iterable[bytes], corpus: Path) -> str:
    """Fuzz `target` for SECONDS from `seeds`; fail with atheris's report (the crashing input included) if it
    found a failure. Returns atheris's output."""
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    for index, seed in enumerate(seeds):
        (corpus / f"seed-{index}").write_bytes(seed)
    run = subprocess.run([sys.executable, str(TESTS / "fuzz_targets.py"), target, f"-max_total_time={SECONDS}",
                          "-timeout=20", f"-artifact_prefix={corpus.parent}/", str(corpus)],
                         capture_output=True, text=True, timeout=SECONDS + 120, cwd=corpus.parent)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"fuzz target {target} failed:\n{output[-6000:]}"
    # How many inputs a run gets through depends on the machine's load, not on the target: the check is that
    # every seed was run (INITED) and the fuzzer went on to mutated inputs after them.
    done = re.search(r"Done (\d+) runs", output)
    assert "INITED" in output and done and int(done.group(1)) > len(seeds), \
        f"fuzz target {target} never got past its {len(seeds)} seeds:\n{output[-3000:]}"
    return output
