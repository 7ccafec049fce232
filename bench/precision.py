"""Is bf16 autocast a safe default? The validation loss after the same short training in fp32 and bf16.

The issue's rule: bf16 may be the default only where its val loss at a fixed epoch count is
within 0.5% of fp32's. Each precision trains from the same ``SEEDS``: the gap between two
seeds of one precision shows how much the seed alone moves the loss, so that the 0.5% can
be read against the noise, and the precisions are compared on their means.
"""

import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from bench.workloads import BATCH_SIZE, Workload
from vae.data.memory import InMemoryImages, batch_loader
from vae.module import VAE

SEEDS = (0, 1)
VALIDATION_SEED = 1234  # the sampler draws the same eps for every model validated


@dataclass(frozen=True)
class TrainedRun:
    """One short training: its settings, wall time and validation losses."""

    label: str
    seed: int
    bf16: bool
    batches: int
    train_seconds: float
    val_loss_fp32: float  # the trained weights evaluated in fp32
    val_loss_as_trained: float  # evaluated under the training precision, as Lightning would log it


def train(workload: Workload, seed: int, bf16: bool, batches: int | None) -> tuple[VAE, int, float]:
    """Adam on ``losses(x)['loss'].mean()`` over ``batches`` shuffled batches (None: one epoch), channels_last."""
    torch.manual_seed(seed)  # the initial weights, the shuffling and the sampler's draws
    model = workload.model().train()
    model.use_fast_paths(channels_last=True, compile=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.optim.lr)
    started, done = time.perf_counter(), 0
    for images, _ in workload.fast_loader():
        if done == batches:
            break
        x = model.prepare(images)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.losses(x)["loss"].mean()
        loss.backward()
        optimizer.step()
        done += 1
    return model, done, time.perf_counter() - started


@torch.inference_mode()
def validation_loss(model: VAE, val_set: InMemoryImages, bf16: bool) -> float:
    """The mean per-image loss over ``val_set``, with seeded sampler draws."""
    model.eval()
    torch.manual_seed(VALIDATION_SEED)
    loader: DataLoader = batch_loader(val_set, BATCH_SIZE, shuffle=False)
    total, count = 0.0, 0
    for images, _ in loader:
        x = model.prepare(images)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            total += float(model.losses(x)["loss"].float().sum())
        count += len(x)
    return total / count


def trained_run(
    workload: Workload, val_set: InMemoryImages, label: str, seed: int, bf16: bool, batches: int | None
) -> TrainedRun:
    model, done, seconds = train(workload, seed, bf16, batches)
    return TrainedRun(
        label,
        seed,
        bf16,
        done,
        seconds,
        validation_loss(model, val_set, bf16=False),
        validation_loss(model, val_set, bf16=bf16),
    )


def compare_precisions(workload: Workload, batches: int | None, val_images: int | None) -> list[TrainedRun]:
    """fp32 and bf16 runs from each of ``SEEDS``, validated on the same images with the same draws.

    ``batches=None`` trains one epoch; ``val_images`` limits validation to the first images.
    """
    full = workload.val_set
    val_set = InMemoryImages(full.images[:val_images], full.labels[:val_images])
    return [
        trained_run(workload, val_set, "bf16 autocast" if bf16 else "fp32", seed, bf16, batches)
        for bf16 in (False, True)
        for seed in SEEDS
    ]
