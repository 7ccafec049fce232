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
