"""A run stopped by SIGTERM or Ctrl-C saves its state, says how to resume, and exits non-zero."""

import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import SHORT, final_val_loss, run_module, run_python
from vae.interrupts import BATCHES_DONE, resume_command

pytestmark = pytest.mark.slow

# `python -m vae.train` whose process signals itself inside the training step of a chosen
# global step, as `kill -TERM` or Ctrl-C would during that batch.
SIGNALLED_TRAINING = """
import os, runpy, signal, sys
import vae.module

signum, at_step = getattr(signal, sys.argv[1]), int(sys.argv[2])
step = vae.module.VAE.training_step

def signalled_step(self, batch, batch_idx):
    if self.global_step == at_step:
        os.kill(os.getpid(), signum)
    return step(self, batch, batch_idx)

vae.module.VAE.training_step = signalled_step
sys.argv = ["vae.train", *sys.argv[3:]]
runpy.run_module("vae.train", run_name="__main__", alter_sys=True)
"""


def signalled_training(
    name: str, at_step: int, *overrides: str, data_dir: Path
) -> subprocess.CompletedProcess:
    return run_python("-c", SIGNALLED_TRAINING, name, str(at_step), *overrides, data_dir=data_dir)


def test_sigterm_inside_an_epoch_saves_that_batch_and_the_resumed_run_ends_as_if_never_stopped(
    data_dir: Path, tmp_path: Path
):
    whole, stopped, resumed = tmp_path / "whole", tmp_path / "stopped", tmp_path / "resumed"
    result = run_module("vae.train", *SHORT, f"hydra.run.dir={whole}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    # Step 11 is the 4th batch of epoch 2 (8 batches an epoch, counted from 0).
    result = signalled_training("SIGTERM", 11, *SHORT, f"hydra.run.dir={stopped}", data_dir=data_dir)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    checkpoint = stopped / "checkpoints" / "last.ckpt"
    assert last_line.startswith(
        f"stopped: SIGTERM at epoch 2, batch 4 of 8 (global step 12); saved {checkpoint}."
    )
    assert last_line.endswith(resume_command(SHORT, stopped))  # hydra.run.dir= is not a task override
    assert "weights_only" not in result.stdout + result.stderr  # no Lightning notice about its defaults
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["global_step"], saved[BATCHES_DONE]) == (1, 12, 4)
    assert not (stopped / "metrics.json").exists()  # written only by a run that finished

    command = shlex.split(last_line.partition("Resume with: ")[2])
    assert command[:3] == ["python", "-m", "vae.train"]
    overrides = [arg for arg in command[3:] if not arg.startswith("hydra.run.dir=")]
    result = run_module("vae.train", *overrides, f"hydra.run.dir={resumed}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {checkpoint} (epoch 1, global step 12, batch 4 of it)" in result.stdout
    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (2, 24)  # the 4 remaining batches, then epoch 3
    # The same batches, the same draws.
    assert final_val_loss(resumed) == pytest.approx(final_val_loss(whole), rel=1e-5)


def test_ctrl_c_in_an_epochs_last_batch_stops_after_that_epoch_is_saved(data_dir: Path, tmp_path: Path):
    result = signalled_training("SIGINT", 7, *SHORT, f"hydra.run.dir={tmp_path}", data_dir=data_dir)
    assert result.returncode == 128 + signal.SIGINT, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("stopped: SIGINT at the end of epoch 1; saved ")
    assert "weights_only" not in result.stdout + result.stderr
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, 8) and BATCHES_DONE not in saved
    assert not (tmp_path / "metrics.json").exists()
