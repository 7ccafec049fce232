"""`strategy=ddp` on this CPU: two processes (gloo), sharded batches, reduced metrics, one writer."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_module, run_python
from vae.data import build_datamodule
from vae.data.memory import IndexBatches
from vae.module import VAE, to_unit_interval

pytestmark = pytest.mark.slow  # commands run as subprocesses, on the real data

BATCH, BATCHES = 32, 2


def test_two_cpu_processes_train_on_distinct_shards_and_report_the_mean_over_both(
    data_dir: Path, tmp_path: Path
):
    # A plain autoencoder: its loss has no sampling, so the reported test loss can be recomputed.
    result = run_module(
        "vae.train",
        "accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "model=mlp",
        "objective.variational=false",
        f"batch_size={BATCH}",
        "epochs=2",
        "trainer.limit_train_batches=4",
        f"trainer.limit_val_batches={BATCHES}",
        f"trainer.limit_test_batches={BATCHES}",
        "plots.scatter_points=100",
        f"hydra.run.dir={tmp_path}",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    assert "sync_dist=True" not in result.stderr  # Lightning's advice: the sums are reduced already
    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["best-epoch001.ckpt", "last.ckpt"]  # written once, by rank 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2 * 4  # each process stepped 4 times an epoch, in lockstep

    # The logged test loss is the mean of the two processes' means over their own shards.
    model = VAE.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True).eval()
    dataset = {k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if k != "batch_size"}
    datamodule = build_datamodule(dataset, BATCH)
    datamodule.setup("test")
    shard_means = []
    for rank in (0, 1):
        batches = list(IndexBatches(len(datamodule.test_set), BATCH, False, 0, rank, 2))[:BATCHES]
        images = datamodule.test_set[torch.cat(batches)][0]
        with torch.no_grad():
            shard_means.append(model.losses(to_unit_interval(images))["loss"].mean())
    assert not torch.isclose(shard_means[0], shard_means[1])  # distinct images on each process
    logged = json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test/loss"]
    assert abs(logged - float(sum(shard_means) / 2)) < 1e-3 * logged


# Run as a script by both processes (Lightning relaunches sys.argv for rank 1): only rank 1's
# loss turns NaN, at epoch 1's second step, where the check reads the marks (speed.progress_every=2).
NAN_ON_RANK_1 = """
import runpy
from vae.module import VAE

train_step = VAE.training_step


def training_step(self, batch, batch_idx):
    loss = train_step(self, batch, batch_idx)
    return loss * float("nan") if self.global_rank == 1 and self.global_step == 5 else loss


VAE.training_step = training_step
runpy.run_module("vae.train", run_name="__main__")
"""


def test_a_nan_loss_on_one_process_stops_both_with_one_line_and_keeps_the_last_good_checkpoint(
    data_dir: Path, tmp_path: Path
):
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    run_dir = tmp_path / "run"
    result = run_python(
        str(script),
        "accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "model=mlp",
        f"batch_size={BATCH}",
        "epochs=3",
        "speed.progress_every=2",
        "trainer.limit_train_batches=4",
        f"trainer.limit_val_batches={BATCHES}",
        "plots.scatter_points=100",
        f"hydra.run.dir={run_dir}",
        data_dir=data_dir,
    )

    assert result.returncode != 0
    assert "the training loss became nan at epoch 1, batch 1 (global step 5)" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    kept = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["epoch"] == 0
    assert all(torch.isfinite(value).all() for value in kept["state_dict"].values())
