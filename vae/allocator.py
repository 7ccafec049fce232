"""glibc's allocator told to keep freed memory for the next training step (commands only)."""

import contextlib
import ctypes
import os

# glibc's mallopt parameters (malloc.h) and the sizes set for them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_BLOCK_LIMIT = 32 * 2**20  # blocks up to this size come from the heap: glibc's own ceiling
KEPT_FREE_HEAP = 512 * 2**20  # free memory at the heap's top is handed back only above this


def keep_freed_memory() -> bool:
    """Fix glibc's heap thresholds so that a step's freed activations are reused, not unmapped.

    By default glibc hands the free top of its heap back to the system, and every training
    step then faults its activations in again, page by page (docs/benchmarks.md has the gain).
    Preloading jemalloc or tcmalloc does the same. A user's own ``MALLOC_*`` or
    ``GLIBC_TUNABLES`` settings win; elsewhere than glibc nothing changes. True if it was set.
    """
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        # Setting either fixes both thresholds, so the trim one is set only if the first held.
        if libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT):
            return bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_HEAP))
    return False
