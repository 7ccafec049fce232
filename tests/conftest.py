"""Shared fixtures: where the real data lives for the end-to-end tests."""

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VAE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A writable data folder holding the real MNIST and Fashion-MNIST files.

    ``$VAE_DATA_DIR`` if set, else ``./data`` (git-ignored), seeded with copies of the files
    in ``../shared/data``: that folder is read-only, and torchvision extracts ``.gz`` files
    beside themselves. Where neither has them, torchvision downloads them.
    """
    target = Path(os.environ.get("VAE_DATA_DIR", REPO / "data"))
    for name in ("MNIST", "FashionMNIST"):
        source = SHARED_DATA / name / "raw"
        if source.is_dir():
            (target / name / "raw").mkdir(parents=True, exist_ok=True)
            for file in source.glob("*.gz"):
                copy = target / name / "raw" / file.name
                if not copy.exists():
                    shutil.copyfile(file, copy)
    return target


OBJECTIVE_KEYS = (
    "recon",
    "recon_reduction",
    "mse_scale",
    "kl_reduction",
    "beta",
    "kl_warmup_epochs",
    "variational",
    "eps_std",
    "binarize",
    "lr",
)


@pytest.fixture
def make_vae():
    """Builds a small VAE with the defaults of ``conf/config.yaml``, changed by keyword."""
    from omegaconf import OmegaConf

    from vae.module import VAE

    defaults = OmegaConf.load(REPO / "conf" / "config.yaml")
    options = {key: defaults[key] for key in OBJECTIVE_KEYS}

    def make(image_shape=(1, 4, 4), latent_dim=2, model=None, **changes) -> VAE:
        model = model or {"family": "mlp", "hidden": [16], "activation": "relu"}
        return VAE(image_shape, latent_dim, model, **{**options, **changes})

    return make
