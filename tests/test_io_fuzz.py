"""Property-based fuzzing of the model-file loader (hypothesis; a small budget in CI).

Whatever bytes are on disk, ``cr.load`` either returns a model or raises ``ModelFileError``:
never another exception, never a crash. A longer campaign: ``CHAINRULE_FUZZ_EXAMPLES=20000
pytest tests/test_io_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import os
import struct

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule import nn  # noqa: E402

EXAMPLES = int(os.environ.get("CHAINRULE_FUZZ_EXAMPLES", "300"))


def valid_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "seed.chainrule"
    cr.save(nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 1, rng=1)), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    return valid_bytes(tmp_path_factory)


def check(path, data: bytes) -> None:
    path.write_bytes(data)
    with contextlib.suppress(cr.ModelFileError):
        cr.load(path)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(tmp_path, data):
    check(tmp_path / "f.chainrule", data)


@FUZZ
@given(st.data())
def test_mutated_valid_files(tmp_path, seed_file, data):
    blob = bytearray(seed_file)
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del blob[pos : pos + data.draw(st.integers(1, 64))]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    check(tmp_path / "f.chainrule", bytes(blob))


@FUZZ
@given(
    st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=6),
    st.integers(0, 2**64 - 1),
)
def test_arbitrary_headers(tmp_path, meta, length_word):
    import json

    header = json.dumps({"__metadata__": meta}).encode()
    check(tmp_path / "f.chainrule", struct.pack("<Q", len(header)) + header)
    check(tmp_path / "g.chainrule", struct.pack("<Q", length_word) + header)


def test_atheris_campaign_runs_clean():
    """A short coverage-guided run (libFuzzer via atheris) in a subprocess."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("atheris")
    script = Path(__file__).parent / "fuzz" / "atheris_loader.py"
    proc = subprocess.run(
        [sys.executable, str(script), "-atheris_runs=3000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Done 3000" in proc.stderr
