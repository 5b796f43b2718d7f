"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], margin: float = 0.1):
    """Values of either sign with |x| > margin (kinks of relu, abs, clip sit at 0)."""
    x = rng.normal(size=shape)
    return np.sign(x) * (margin + np.abs(x)) + 0.0 * x


@pytest.fixture(autouse=True)
def _no_leftover_mpi_shared_memory(request):
    """The MPI tests kill and abort ranks on purpose; MPICH then leaves its shared-memory
    segments (``/dev/shm/mpich_shm_*``, 2 MB each) behind, about 17 MB per run of the suite,
    which a small /dev/shm (64 MB in a default Docker container) does not survive for long.
    Every mpiexec of a test has ended when the test ends: what it left is removed."""
    if not request.node.module.__name__.split(".")[-1].startswith("test_distributed"):
        yield
        return
    import contextlib
    import glob
    import os

    pattern = "/dev/shm/mpich_shm_*"
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        with contextlib.suppress(OSError):
            os.unlink(path)
