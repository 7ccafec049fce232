"""`strategy=ddp` on this CPU: two processes (gloo), sharded batches, reduced metrics, one writer."""

import json
from pathlib import Path

import torch

from tests.conftest import run_module
from vae.data import build_datamodule
from vae.data.memory import IndexBatches
from vae.module import VAE, to_unit_interval

BATCH, BATCHES = 32, 2


def test_two_cpu_processes_train_on_distinct_shards_and_report_the_mean_over_both(
    data_dir: Path, tmp_path: Path
):
    # A plain autoencoder: its loss has no sampling, so the reported test loss can be recomputed.
    result = run_module(
        "vae.train",
        "accelerator=cpu",
        "devices=2",
        "strategy=ddp",
        "model=mlp",
        "variational=false",
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
