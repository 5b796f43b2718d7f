"""Keep freed large blocks in the process, so that a training step's temporaries cost no page
faults.

A training step allocates and frees the same large temporaries every time: a convolution's
columns (5 MB for LeNet-5's first layer at batch 64), activations, gradients. glibc's malloc
hands blocks above its mmap threshold (128 KiB, raised only as blocks are freed) to the kernel
and back, and trims the top of its heap past 128 KiB of free space; every new block is then
paid in minor page faults, each page zeroed by the kernel before NumPy writes it again.
Measured on LeNet-5's training step at batch 64: 2 464 page faults per step and 23.5 ms with
glibc's defaults, **0 faults and 18.3 ms** with the settings below (one BLAS thread; with two,
24 ms → 15–16 ms), bitwise the same numbers.

:func:`keep_freed_memory` raises the mmap threshold to :data:`MMAP_THRESHOLD` (32 MiB, glibc's
largest dynamic value) and the trim threshold to :data:`TRIM_THRESHOLD` (128 MiB): blocks up to
32 MiB come from the heap, and up to 128 MiB of freed memory stays with the process for the next
step instead of going back to the kernel. The cost is that much more resident memory after a
peak. ``import chainrule`` calls it once; ``CHAINRULE_MALLOC=keep`` in the environment leaves
the allocator as it is. It does nothing where the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory", "malloc_tuned"]

MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 128 * 2**20
# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_tuned = False


def malloc_tuned() -> bool:
    """Whether :func:`keep_freed_memory` changed the allocator's thresholds in this process."""
    return _tuned


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds (see the module's text); True if done.

    Returns False, changing nothing, when ``CHAINRULE_MALLOC=keep`` is set, off Linux, or when
    the C library has no ``mallopt`` or refuses the values.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get("CHAINRULE_MALLOC", "auto") == "keep" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: the C library's among them
        if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (musl's mallopt does nothing)
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned
