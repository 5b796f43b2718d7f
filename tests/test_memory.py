"""The allocator setting of ``import chainrule`` (``chainrule._memory``): a step's freed
temporaries are reused without page faults, ``CHAINRULE_MALLOC=keep`` leaves glibc's defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only"
)

# A "step" that allocates, writes and frees the same temporaries (2-8 MB, as a convolution's
# columns and activations; 30 MB live at its peak) 30 times; prints the minor page faults of
# the last 20 steps.
_STEP = """
import json, resource, sys
import numpy as np
import chainrule, chainrule._memory as m
def step():
    a = np.ones((2_000_000,), np.float32)     # 8 MB
    b = a * 2
    c = np.concatenate([a[:1_000_000], b[:500_000]])
    d = b + c[:1] + a
    return float(d[-1])
for _ in range(10):
    step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults": (f1 - f0) / 20, "tuned": m.malloc_tuned()}))
"""


def _run(malloc: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["CHAINRULE_MALLOC"] = malloc
    out = subprocess.run(
        [sys.executable, "-c", _STEP], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _glibc() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not _glibc(), reason="the C library is not glibc")
def test_import_keeps_freed_blocks_so_repeated_steps_fault_no_pages() -> None:
    tuned, default = _run("auto"), _run("keep")
    assert tuned["tuned"] is True and default["tuned"] is False
    # glibc's defaults hand each 8 MB block back to the kernel: ~2 000 faults a step (4 KiB
    # pages, zeroed by the kernel); kept, the step reuses its memory
    assert default["faults"] > 500, default
    assert tuned["faults"] < 20, tuned


def test_keep_freed_memory_is_idempotent_and_reports_its_state() -> None:
    from chainrule import _memory

    first = _memory.malloc_tuned()
    assert _memory.keep_freed_memory() is first or os.environ.get("CHAINRULE_MALLOC") == "keep"
    assert _memory.malloc_tuned() is first
