"""Checkpoints survive kills, resume where they stopped, and refuse what does not fit."""

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import QUICK, SHORT, final_val_loss, run_module, run_python
from vae.checkpoints import AtomicCheckpointIO, hyperparameters_of, resume_file
from vae.errors import UserError
from vae.module import VAE

# `python -m vae.train` with a process that SIGKILLs itself at the chosen write of last.ckpt:
# after the write (`after`), or halfway through its bytes (`inside`). A real kill -9, at a
# deterministic moment.
KILLED_TRAINING = """
import io, os, runpy, signal, sys
import torch
import vae.checkpoints

mode, kill_at = sys.argv[1], int(sys.argv[2])
writes = 0
save, write_file = vae.checkpoints.AtomicCheckpointIO.save_checkpoint, torch.save

def counted_save(self, checkpoint, path, storage_options=None):
    global writes
    writes += os.path.basename(path) == "last.ckpt"
    save(self, checkpoint, path, storage_options)
    if mode == "after" and writes == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def half_written(checkpoint, file):
    if writes == kill_at and mode == "inside":
        data = io.BytesIO()
        write_file(checkpoint, data)
        file.write(data.getvalue()[: len(data.getvalue()) // 2])
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    write_file(checkpoint, file)

vae.checkpoints.AtomicCheckpointIO.save_checkpoint = counted_save
vae.checkpoints.torch.save = half_written
sys.argv = ["vae.train", *sys.argv[3:]]
runpy.run_module("vae.train", run_name="__main__", alter_sys=True)
"""


def killed_training(mode: str, kill_at: int, *overrides: str, data_dir: Path) -> subprocess.CompletedProcess:
    return run_python("-c", KILLED_TRAINING, mode, str(kill_at), *overrides, data_dir=data_dir)


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_resumes_where_it_stopped_and_ends_as_if_never_killed(
    data_dir: Path, tmp_path: Path
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = run_module("vae.train", *SHORT, f"hydra.run.dir={whole}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]

    result = killed_training("after", 2, *SHORT, f"hydra.run.dir={killed}", data_dir=data_dir)
    assert result.returncode == -signal.SIGKILL
    saved = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 16)  # killed after epoch 2 of 3
    assert not (killed / "metrics.json").exists()

    resumed = tmp_path / "resumed"
    result = run_module(
        "vae.train", *SHORT, f"ckpt_path={killed}", f"hydra.run.dir={resumed}", data_dir=data_dir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {killed / 'checkpoints' / 'last.ckpt'} (epoch 1, global step 16)" in result.stdout
    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (2, 24)
    assert final["optimizer_states"][0]["state"]  # Adam's moments came back with the weights
    # The random state is in the checkpoint too, so the resumed epoch draws the same batches
    # and noise: the result equals the uninterrupted run's, not just comes close.
    assert final_val_loss(resumed) == pytest.approx(final_val_loss(whole), rel=1e-5)


@pytest.mark.slow
def test_a_kill_inside_a_checkpoint_write_leaves_the_previous_checkpoint_whole(
    data_dir: Path, tmp_path: Path
):
    result = killed_training("inside", 2, *SHORT, f"hydra.run.dir={tmp_path}", data_dir=data_dir)
    assert result.returncode == -signal.SIGKILL
    folder = tmp_path / "checkpoints"
    assert (folder / ".last.ckpt.partial").stat().st_size > 0  # the half-written file, beside it
    kept = torch.load(folder / "last.ckpt", weights_only=True)
    assert (kept["epoch"], kept["global_step"]) == (0, 8)


def test_ckpt_path_last_resumes_the_newest_run_under_outputs(tmp_path: Path):
    old, new = (tmp_path / "outputs" / day / "checkpoints" for day in ("2026-01-01", "2026-01-02"))
    for folder, age in ((old, 100), (new, 0)):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"")
        os.utime(folder / "last.ckpt", (1e9 - age, 1e9 - age))
    assert resume_file("last", tmp_path / "outputs") == new / "last.ckpt"
    assert resume_file(str(old.parent), tmp_path / "outputs") == old / "last.ckpt"  # a run directory
    assert resume_file(None) is None
    with pytest.raises(UserError, match="no run under"):
        resume_file("last", tmp_path / "elsewhere")
    with pytest.raises(UserError, match="no checkpoint at"):
        resume_file(str(tmp_path / "missing.ckpt"))


def test_the_atomic_writer_replaces_the_file_and_leaves_no_temporary(tmp_path: Path):
    path = tmp_path / "nested" / "last.ckpt"
    for epoch in (0, 1):
        AtomicCheckpointIO().save_checkpoint({"epoch": epoch}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [file.name for file in path.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["latent_dim=16"], "was trained with latent_dim=2, but this run asks for latent_dim=16"),
        (["model=mlp"], "was trained with model="),
        (["ckpt_path={junk}"], "is not a loadable vae checkpoint"),
        (["ckpt_path={missing}"], "no checkpoint at"),
        (["ckpt_path={listing}"], "is not a checkpoint written by python -m vae.train"),
        (["epochs=2"], "has already trained 2 epochs and this run asks for epochs=2"),
    ],
)
def test_a_checkpoint_that_cannot_resume_this_run_is_one_line_and_nothing_is_lost(
    finished_run: Path, data_dir: Path, tmp_path: Path, overrides: list[str], expected: str
):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x80\x02 not a checkpoint")
    listing = tmp_path / "listing.ckpt"
    torch.save([1, 2, 3], listing)  # loads with weights_only=True, but is no checkpoint
    overrides = [
        override.format(junk=junk, missing=tmp_path / "missing.ckpt", listing=listing)
        for override in overrides
    ]
    last = finished_run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    run_dir = tmp_path / "run"
    result = run_module(
        "vae.train",
        *QUICK,
        f"ckpt_path={finished_run}",
        *overrides,
        f"hydra.run.dir={run_dir}",
        data_dir=data_dir,
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and expected in message
    assert "Traceback" not in result.stderr
    assert last.read_bytes() == before
    assert not (run_dir / "checkpoints").exists()


def test_a_checkpoint_from_before_the_settings_had_groups_still_loads(make_vae):
    model = make_vae(recon="mse", mse_scale=12.0, beta=2.0, lr=5e-4)
    saved = dict(model.hparams)
    flat = {  # how vae.train wrote hyperparameters until 2026-12-01: every setting at the top
        "image_shape": saved["image_shape"],
        "latent_dim": saved["latent_dim"],
        "model": saved["model"],
        **saved["objective"],
        **saved["optim"],
    }
    regrouped = hyperparameters_of({"hyper_parameters": flat})
    saved.pop("classes")  # added later with a default: unconditional
    assert regrouped == saved
    loaded = VAE(**regrouped)
    loaded.load_state_dict(model.state_dict())
    assert (loaded.objective.recon, loaded.objective.mse_scale, loaded.optim.lr) == ("mse", 12.0, 5e-4)
