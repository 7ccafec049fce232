"""A finished command leaves at once, but only after what a normal exit does first."""

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path
    from vae.entry import run_then_exit

    marks = Path(sys.argv[1])
    atexit.register(lambda: marks.with_suffix(".atexit").write_text("ran"))

    def late_writer():
        time.sleep(0.3)
        marks.with_suffix(".thread").write_text("joined")

    def command():
        threading.Thread(target=late_writer).start()
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
