"""The fuzz targets: the kept corpus replays clean, and each target fuzzes briefly.

The replay needs nothing but the project: every input a past fuzzing run
kept (and every crash input copied into ``fuzz/corpus/<target>/``) runs
through its target here. The short fuzzing run needs atheris (x86-64 Linux
wheels); ``make fuzz`` runs the same targets for as long as asked.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz import targets

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"


@pytest.fixture(scope="module")
def replay() -> Iterator[None]:
    yield
    targets.close()


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_the_corpus_replays_clean(name: str, replay: None) -> None:
    inputs = sorted((CORPUS / name).iterdir())
    assert inputs, f"fuzz/corpus/{name} has no seeds"
    target = targets.TARGETS[name]
    for path in inputs:
        try:
            target(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"fuzz/corpus/{name}/{path.name}: {exc!r}") from exc


def test_a_target_that_breaks_is_caught() -> None:
    """The tlv target's checks can fail: a decoder that loses bytes would be reported."""
    original = targets.FrameDecoder.feed

    def lossy(self: targets.FrameDecoder, data: bytes) -> list[tuple[int, bytes]]:
        return original(self, data)[:-1] if data else []

    stream = b"".join(targets.encode_frame(k, b"value %d" % k) for k in range(3))
    data = b"\xff\xff\x04" + stream  # frames up to 65535 bytes, fed 5 bytes at a time
    targets.tlv(data)  # the real decoder passes
    targets.FrameDecoder.feed = lossy  # type: ignore[method-assign]
    try:
        with pytest.raises(AssertionError):
            targets.tlv(data)
    finally:
        targets.FrameDecoder.feed = original  # type: ignore[method-assign]


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris not installed (wheels for x86-64 Linux only)",
)
def test_every_target_fuzzes_briefly_without_a_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", "--seconds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in targets.TARGETS:
        assert f"== fuzz {name}" in result.stdout


def test_the_reader_target_catches_a_lost_frame() -> None:
    """The reader target's checks can fail: a reader that drops a frame would be reported."""
    stream = b"".join(targets.encode_frame(9, b"value %d" % k) for k in range(6))
    data = b"\x10\x00" + bytes([0, 0, 0, 0, 5, 1]) + stream  # budgets off, 6-byte pieces
    targets.reader(data)  # the real reader passes
    original = targets.InboundReader.feed

    def lossy(self: targets.InboundReader, data: bytes, now: float | None = None) -> Any:
        frames, refused, pause, broken = original(self, data, now)
        return frames[1:], refused, pause, broken

    targets.InboundReader.feed = lossy  # type: ignore[method-assign]
    try:
        with pytest.raises(AssertionError):
            targets.reader(data)
    finally:
        targets.InboundReader.feed = original  # type: ignore[method-assign]
