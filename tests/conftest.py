"""Shared fixtures: where the real data lives for the end-to-end tests."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


SHARED_DATA = Path(os.environ.get("VAE_SHARED_DATA", REPO.parent / "shared" / "data"))


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A writable data folder holding the real MNIST and Fashion-MNIST files.

    ``$VAE_DATA_DIR`` if set, else ``./data`` (git-ignored), seeded with copies of the files
    in ``../shared/data``: that folder is read-only, and torchvision extracts ``.gz`` files
    beside themselves. Without the files the test is skipped, saying where they were looked
    for; under CI (``CI=true``) that is a failure, so a missing folder cannot pass unnoticed.
    """
    target = Path(os.environ.get("VAE_DATA_DIR", REPO / "data"))
    missing = []
    for name in ("MNIST", "FashionMNIST"):
        (target / name / "raw").mkdir(parents=True, exist_ok=True)
        for file in MNIST_FILES:
            copy, source = target / name / "raw" / file, SHARED_DATA / name / "raw" / file
            if not copy.exists() and source.exists():
                shutil.copyfile(source, copy)
            if not copy.exists():
                missing.append(f"{name}/raw/{file}")
    if missing:
        unavailable(
            f"the real MNIST and Fashion-MNIST files are missing ({missing[0]} and {len(missing) - 1} more): "
            f"put ../shared/data beside the repository (or set VAE_SHARED_DATA), or copy them into {target}"
        )
    return target


@pytest.fixture(scope="session")
def shared_cartoons() -> Path:
    """The folder of real Cartoon Set PNGs in ``../shared/data`` (read-only)."""
    folder = SHARED_DATA / "cartoonset"
    if not any(folder.glob("cs*.png")):
        unavailable(f"no Cartoon Set PNGs in {folder}: put ../shared/data beside the repository")
    return folder


def unavailable(reason: str) -> None:
    """Skip a test whose real data (or browser) are missing, saying why; under CI (``CI=true``) fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# The PNG files a finished run of a 2-D latent space leaves in its folder.
RUN_PICTURES = {
    "latent_scatter",
    "latent_test",
    "samples_prior",
    "samples_uniform",
    "reconstructions",
    "latent_manifold",
    "latent_kl_per_dim",
}

# A training run cut to a few batches: enough to exercise every stage and write every file.
QUICK = [
    "accelerator=cpu",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "plots.scatter_points=300",
]


# Fashion-MNIST through the MLP for 3 epochs of 8 batches: seconds per run.
SHORT = [*QUICK, "model=mlp", "trainer.limit_train_batches=8", "epochs=3"]


def run_python(*arguments: str, data_dir: Path) -> subprocess.CompletedProcess:
    """``python <arguments>`` in a process of its own, with ``VAE_DATA_DIR`` set."""
    env = {**os.environ, "VAE_DATA_DIR": str(data_dir)}
    command = [sys.executable, *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def run_module(module: str, *overrides: str, data_dir: Path) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` as a user runs it, with ``VAE_DATA_DIR`` set."""
    return run_python("-m", module, *overrides, data_dir=data_dir)


def final_val_loss(run_dir: Path) -> float:
    """The last validation loss a finished run wrote to its metrics.json."""
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]["val/loss"]


def quick_run(run_dir: Path, *overrides: str, data_dir: Path) -> Path:
    """``run_dir`` after a ``QUICK`` ``python -m vae.train <overrides>`` that must succeed."""
    result = run_module("vae.train", *QUICK, *overrides, f"hydra.run.dir={run_dir}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def finished_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch Fashion-MNIST run of ``python -m vae.train`` on the real files."""
    return quick_run(tmp_path_factory.mktemp("run"), "epochs=2", data_dir=data_dir)


@pytest.fixture
def make_vae():
    """Builds a small VAE with the schema's defaults; keywords change its objective or optim fields."""
    from vae import schema
    from vae.module import VAE

    groups = {"objective": schema.Objective, "optim": schema.Optim}

    def make(image_shape=(1, 4, 4), latent_dim=2, model=None, classes=0, **changes) -> VAE:
        model = model or {"family": "mlp", "hidden": [16], "activation": "relu"}
        values = {name: schema.defaults(kind) for name, kind in groups.items()}
        for key, value in changes.items():
            group = next(name for name, kind in groups.items() if key in schema.defaults(kind))
            values[group][key] = value
        return VAE(image_shape, latent_dim, model, values["objective"], values["optim"], classes)

    return make


def quiet_trainer(**options) -> pl.Trainer:
    """A CPU Trainer without logger, progress bar or model summary; ``options`` override."""
    defaults = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**{**defaults, **options})


def random_images(count: int, shape: tuple[int, ...] = (1, 4, 4), seed: int | None = None) -> torch.Tensor:
    """``count`` random uint8 images, by default 1x4x4 (the size ``make_vae`` builds for);
    with ``seed``, the same ones every time."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=generator)


def uint8_loader(images: torch.Tensor, batch_size: int) -> DataLoader:
    """A DataLoader of ``images`` with zero labels, in order."""
    return DataLoader(TensorDataset(images, torch.zeros(len(images))), batch_size=batch_size)
