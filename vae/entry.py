"""How a command runs: its imports kept out of garbage collection, and its end without teardown."""

import atexit
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
    the objects made so far frozen: later collections need not scan them again.
    """
    gc.freeze()
    gc.enable()
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
