"""A finished command leaves at once, but only after what a normal exit does first."""

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


FREED_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from torch import nn
    from vae.entry import run_then_exit

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.LeakyReLU(), nn.Conv2d(32, 1, 3, padding=1))
    optimizer = torch.optim.Adam(net.parameters())
    images = torch.rand(128, 1, 28, 28)

    def step():
        optimizer.zero_grad()
        net(images).square().mean().backward()
        optimizer.step()

    def train():
        for _ in range(5):  # the heap grows to its working size in the first steps
            step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            step()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    if sys.argv[1] == "plain":
        train()
    else:
        run_then_exit(train)
    """
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's allocator; others keep their own")
def test_commands_let_later_steps_reuse_freed_pages_instead_of_faulting_them_in() -> None:
    def page_faults(mode: str) -> int:
        command = [sys.executable, "-c", FREED_MEMORY_SCRIPT, mode]
        environment = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
        environment.pop("GLIBC_TUNABLES", None)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=True, env=environment
        )
        return int(done.stdout)

    activation_pages = 128 * 32 * 28 * 28 * 4 // 4096  # one 32-channel activation of the batch, fp32
    # Measured: 34,000-125,000 faults in 5 steps by glibc's default (it hands the memory back and
    # each step faults it in again), 0 or one activation's worth under run_then_exit.
    assert page_faults("plain") > 4 * activation_pages
    assert page_faults("command") < 2 * activation_pages
