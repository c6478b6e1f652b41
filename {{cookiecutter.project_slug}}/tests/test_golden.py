"""Every codec writes today's exact bytes for every catalogue message.

``golden_frames.FRAMES`` was written by the encoders of the pydantic message
layer, before messages became msgspec Structs: existing clients, the browser
client and go-sgs peers depend on these bytes, so an entry never changes.
Each frame must also decode back to the message it came from.

A new message gets its entries with ``python tests/test_golden.py`` (run from
the repository root), which adds missing labels and never rewrites one.
"""

from __future__ import annotations

import pprint
import sys
from pathlib import Path
from typing import Any

import pytest

import fwkit
from golden_frames import FRAMES
from golden_samples import samples

from {{ cookiecutter.package_name }} import (
    messages,
)
from {{ cookiecutter.package_name }}.sgs import (
    Codec,
    get_codec,
)

CATALOGUES = {"game": messages.catalog, "framework-tests": fwkit.catalog}
SAMPLES = samples()
CASES = [(protocol, label, cat, msg) for protocol in fwkit.PROTOCOLS for label, cat, msg in SAMPLES]
_CODECS: dict[tuple[str, str], Codec] = {}


def _codec(protocol: str, catalogue: str) -> Codec:
    key = (protocol, catalogue)
    if key not in _CODECS:
        _CODECS[key] = get_codec(protocol, CATALOGUES[catalogue])
    return _CODECS[key]


def test_every_catalogue_message_has_a_sample() -> None:
    sampled = {type(msg) for _, _, msg in SAMPLES}
    for catalogue in CATALOGUES.values():
        assert set(catalogue) <= sampled, set(catalogue) - sampled


@pytest.mark.parametrize(
    ("protocol", "label", "catalogue", "msg"), CASES, ids=[f"{p}-{lb}" for p, lb, _, _ in CASES]
)
def test_frame_is_byte_identical(protocol: str, label: str, catalogue: str, msg: Any) -> None:
    codec = _codec(protocol, catalogue)
    frame = codec.encode_frame(msg)
    assert frame.hex() == FRAMES[protocol][label]
    assert codec.encode(msg) == frame[8:]
    assert codec.decode(type(msg).__msg_id__, frame[8:]) == msg


def _write_missing(path: Path) -> int:
    """Add the frames of new samples to golden_frames.py; existing ones stay."""
    frames: dict[str, dict[str, str]] = {p: dict(FRAMES.get(p, {})) for p in fwkit.PROTOCOLS}
    added = 0
    for protocol, label, catalogue, msg in CASES:
        if label not in frames[protocol]:
            frames[protocol][label] = _codec(protocol, catalogue).encode_frame(msg).hex()
            added += 1
    header = path.read_text().split("FRAMES", 1)[0]
    body = pprint.pformat(frames, width=100, sort_dicts=False)
    path.write_text(f"{header}FRAMES: dict[str, dict[str, str]] = {body}\n")
    return added


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    print(f"{_write_missing(here / 'golden_frames.py')} frames added", file=sys.stderr)
