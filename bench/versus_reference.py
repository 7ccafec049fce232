"""The pytorch/examples MLP VAE against ``python -m vae.train``'s preset of it, as separate processes.

Both are timed from launch to exit (start-up, data loading, every test pass and picture
included), because that is what a user waits for. Peak RSS is read from the child's
/proc/<pid>/status while it runs: the rusage of ``wait4`` would count the bench's own
memory too, which Linux carries over from the fork into the child's high-water mark.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TEST_LOSS_LINE = re.compile(r"====> Test set loss: ([0-9.]+)")
# Set to 1 by the Lightning this process imported (bench.speed then sets it to 0 without GPUs);
# a user's shell has neither, and under 1 the script's Adam would look for GPUs through NVML
# every step. Each command gets the environment without it (vae.train sets its own).
LIGHTNING_SETTING = "PYTORCH_NVML_BASED_CUDA_CHECK"


@dataclass(frozen=True)
class ProcessRun:
    """A finished command: wall seconds, peak resident bytes, test loss, exit status."""

    command: str
    wall_seconds: float
    peak_rss_bytes: int | None
    test_loss: float | None
    returncode: int


class ResidentWatch(threading.Thread):
    """Polls a process's VmHWM (its resident high-water mark) until it exits; None without /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.peak: int | None = None

    def run(self) -> None:
        while True:
            try:
                lines = self.status.read_text().splitlines()
            except OSError:  # reaped, or no /proc
                return
            marks = [int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")]
            if not marks and self.peak is not None:  # a zombie has no memory left to report
                return
            self.peak = max([self.peak or 0, *marks]) if marks else self.peak
            time.sleep(0.05)


def run_process(command: list[str]) -> tuple[float, int | None, int, str]:
    """Run ``command`` to completion: (wall seconds, peak RSS bytes, exit code, stdout + stderr)."""
    started = time.perf_counter()
    environment = {name: value for name, value in os.environ.items() if name != LIGHTNING_SETTING}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    watch = ResidentWatch(process.pid)
    watch.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    watch.join()
    return seconds, watch.peak, process.returncode, output


def reference_run(epochs: int) -> ProcessRun:
    """``python -m bench.reference_mlp``, the example's pipeline; its last printed test loss."""
    command = [sys.executable, "-m", "bench.reference_mlp", f"--epochs={epochs}"]
    seconds, peak, code, output = run_process(command)
    losses = TEST_LOSS_LINE.findall(output)
    return ProcessRun(" ".join(command[1:]), seconds, peak, float(losses[-1]) if losses else None, code)


def project_run(epochs: int) -> ProcessRun:
    """``python -m vae.train experiment=pytorch_examples_mnist`` (the example's settings, all 60k
    training images); the test loss from its ``metrics.json``."""
    with tempfile.TemporaryDirectory() as run_dir:
        arguments = ["experiment=pytorch_examples_mnist", f"epochs={epochs}", "accelerator=cpu"]
        command = [sys.executable, "-m", "vae.train", *arguments, f"hydra.run.dir={run_dir}"]
        seconds, peak, code, output = run_process(command)
        metrics_path = Path(run_dir, "metrics.json")
        loss = (
            json.loads(metrics_path.read_text())["metrics"].get("test/loss")
            if metrics_path.is_file()
            else None
        )
    return ProcessRun(" ".join(["-m", "vae.train", *arguments]), seconds, peak, loss, code)
