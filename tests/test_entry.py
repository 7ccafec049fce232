"""A finished command leaves at once, but only after what a normal exit does first."""

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from vae.entry import run_then_exit

    marks = Path(sys.argv[1])
    pool = ThreadPoolExecutor(1)  # never shut down, as torch.compile leaves its compile pool
    atexit.register(lambda: marks.with_suffix(".atexit").write_text("ran"))

    def late_writer():
        time.sleep(0.3)
        marks.with_suffix(".thread").write_text("joined")

    def command():
        threading.Thread(target=late_writer).start()
        pool.submit(print, end="")
        print("buffered output", end="")
        if sys.argv[2] == "fail":
            sys.exit(2)

    run_then_exit(command)
    marks.with_suffix(".after").write_text("not reached")
    """
)


def run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", SCRIPT, str(tmp_path / "marks"), mode]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_finished_command_flushes_joins_and_runs_atexit_handlers_before_it_exits(tmp_path: Path):
    result = run(tmp_path, "ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "buffered output"
    assert (tmp_path / "marks.thread").read_text() == "joined"
    assert (tmp_path / "marks.atexit").read_text() == "ran"
    assert not (tmp_path / "marks.after").exists()


def test_a_failing_command_keeps_its_exit_status(tmp_path: Path):
    result = run(tmp_path, "fail")
    assert result.returncode == 2
    assert (tmp_path / "marks.atexit").read_text() == "ran"


GC_PROBE = textwrap.dedent(
    """
    import gc, sys
    sys.argv[0] = sys.argv[1]  # "-m" is what Python puts there while `python -m` locates a module
    import vae
    from vae.entry import run_then_exit

    print(gc.isenabled(), end=" ")
    run_then_exit(lambda: print(gc.isenabled(), gc.get_freeze_count() > 1000, end=""))
    """
)


def test_collection_pauses_while_a_command_imports_and_resumes_with_the_imports_frozen():
    started = subprocess.run(
        [sys.executable, "-c", GC_PROBE, "-m"], capture_output=True, text=True, timeout=60
    )
    assert started.stdout == "False True True", started.stderr


def test_importing_vae_as_a_library_leaves_collection_alone():
    imported = subprocess.run(
        [sys.executable, "-c", GC_PROBE, "script.py"], capture_output=True, text=True, timeout=60
    )
    assert imported.stdout.startswith("True "), imported.stderr
