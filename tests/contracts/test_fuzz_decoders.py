"""The Avro decoders fuzzed from real messages (tests/fuzz_targets.py): no exception but a typed DecodeError,
and the vectorised decoder agrees with the codec on every message."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fuzzing import fuzz, sample_events

from incident_contracts.codec import Codec

SEPARATOR = b"\xff\xfe"  # fuzz_targets.fast_decode splits its input here into a batch of two messages


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    codec = Codec()
    encoded = [codec.encode(event) for event in sample_events()]
    assert len(encoded) >= 20
    return encoded


def test_the_codec_survives_fuzzed_messages(messages: list[bytes], tmp_path: Path) -> None:
    fuzz("codec_decode", messages, tmp_path / "corpus")


def test_the_fast_decoder_agrees_with_the_codec_on_fuzzed_batches(messages: list[bytes], tmp_path: Path) -> None:
    pairs = [a + SEPARATOR + b for a, b in itertools.pairwise(messages)]
    fuzz("fast_decode", pairs, tmp_path / "corpus")
