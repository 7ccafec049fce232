"""Datamodules by dataset name. Each yields uint8 batches ``(images [N, C, H, W], labels)``."""

import pytorch_lightning as pl

from vae.data.cartoon import CartoonDataModule
from vae.data.mnist import MNISTDataModule
from vae.errors import UserError

DATAMODULES = {"mnist": MNISTDataModule, "fashion_mnist": MNISTDataModule, "cartoon": CartoonDataModule}


def build_datamodule(dataset: dict, batch_size: int) -> pl.LightningDataModule:
    """The datamodule for a resolved ``dataset`` config (its keys are the class's arguments)."""
    name = dataset.get("name")
    if name not in DATAMODULES:
        raise UserError(f"unknown dataset {name!r}; choose one of {sorted(DATAMODULES)}")
    return DATAMODULES[name](batch_size=batch_size, **dataset)
