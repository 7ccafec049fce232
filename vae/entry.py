"""How a command runs: imports kept out of garbage collection, freed memory kept for reuse, no teardown."""

import atexit
import contextlib
import ctypes
import gc
import os
import sys
import threading
from collections.abc import Callable


def run_then_exit(command: Callable[[], object]) -> None:
    """Run ``command``; when it returns, end the process with status 0 straight away.

    With torch's CUDA libraries, Lightning and triton loaded, Python's teardown (freeing
    every module after the work is done) takes 1.2-1.5 s on the 2-core CPU:
    ``python -c "import pytorch_lightning"`` takes 4.3 s, and 3.1 s when it ends with
    ``os._exit``. What a normal exit does before that teardown still happens here: open
    thread pools are stopped and other threads joined, the atexit handlers run (logging's
    flush and close among them) and the streams are flushed. An exception or ``sys.exit``
    (a UserError's status 2) leaves the normal way.

    Collection, paused while the command imported (``vae/__init__.py``), resumes here, with
    the objects made so far frozen: later collections need not scan them again. Freed memory
    is kept for the next training step (``keep_freed_memory``).
    """
    gc.freeze()
    gc.enable()
    keep_freed_memory()
    try:
        command()
    except BaseException:
        gc.unfreeze()  # the teardown's last collection frees them (nanobind reports leaks otherwise)
        raise
    # What the interpreter itself calls first on exit: it stops thread pools left open (those
    # of concurrent.futures, such as torch.compile's), then joins the non-daemon threads.
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# glibc's mallopt parameters (malloc.h) and the sizes set for them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap: glibc's own ceiling for its moving threshold.
HEAP_BLOCK_LIMIT = 32 * 2**20
KEPT_FREE_HEAP = 512 * 2**20  # free memory at the heap's top is handed back only above this


def keep_freed_memory() -> None:
    """Keep freed tensors' memory at hand for the next training step instead of handing it back.

    glibc returns the free top of its heap to the system once it outgrows twice the largest
    block seen, so every step maps its activations afresh and the kernel zero-fills each page
    at first touch: 15-30% of a conv step on this project's CPU (README, Speed). Fixing both
    thresholds keeps that memory, as preloading jemalloc or tcmalloc would. A user's own
    ``MALLOC_*_`` or ``GLIBC_TUNABLES`` settings win; elsewhere than glibc nothing changes.
    """
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        # Setting either fixes both thresholds, so the trim one is set only if the first held.
        if libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT):
            libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_HEAP)
