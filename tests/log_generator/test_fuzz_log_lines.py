"""The log-format parser fuzzed from the sample files (tests/fuzz_targets.py): no exception in any format,
every line accounted for, every parsed event a valid LogEvent."""

from __future__ import annotations

from pathlib import Path

from fuzzing import SAMPLES, fuzz

from log_generator.replay.parser import load_formats


def test_the_parser_survives_fuzzed_lines_in_every_format(tmp_path: Path) -> None:
    names = ["auto", *sorted(load_formats())]  # the target picks names[first byte % len(names)]
    seeds = [bytes([names.index(sample.stem)]) + b"\n".join(sample.read_bytes().splitlines()[:8])
             for sample in sorted(SAMPLES.glob("*.log")) if sample.stem in names]
    assert len(seeds) >= 20
    fuzz("log_lines", seeds, tmp_path / "corpus")
