"""Keep freed memory in the process instead of handing it back to the OS after every step.

glibc's ``malloc`` gives the top of its heap back to the OS once more than ``M_TRIM_THRESHOLD``
bytes are free there, and serves blocks above a moving ``M_MMAP_THRESHOLD`` with fresh
mappings. Decoding frees and reallocates tensors of the same few sizes at every token (the
growing KV cache, activations, logits), and the env allocates and frees arrays over all users
at every step, so with the defaults much of the time went to returning memory and faulting it
back in: the held-out protocol on three network_optimization worlds took 62.9 s by default and
8.7 s with a fixed mmap threshold (9.7 s with only the trim threshold raised), two cores,
glibc 2.36. PyTorch's CPU tuning guide makes the same point about the allocator (it suggests
jemalloc or tcmalloc); a fixed glibc threshold gets the gain without another library.

The cost: memory freed by the process stays in it (the resident set stays at its peak instead
of shrinking between steps). Only the command line, the benchmarks and the test suite call
:func:`keep_freed_memory`; importing the package changes nothing. Library users who want the
same speed call it once at start-up (or set ``MALLOC_MMAP_THRESHOLD_`` in the environment).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when set, False where the
    C library is not glibc (or offers no ``mallopt``), which is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success, 0 on error (musl's stub always returns 0).
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
