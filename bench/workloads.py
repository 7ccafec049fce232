"""The presets the bench times, built from the project's own configs, networks and datasets.

A preset is a list of Hydra overrides composed as ``python -m vae.train`` composes them, so
the bench times the networks users train, not copies of them.
"""

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.datasets import VisionDataset

from vae.config import compose_run_config, validate
from vae.data import build_datamodule
from vae.data.memory import InMemoryImages, batch_loader
from vae.data.mnist import SOURCES, load_split
from vae.errors import UserError
from vae.module import VAE
from vae.train import build_model

BATCH_SIZE = 128  # the baseline's batch for every preset, whatever a tutorial trains with
MNIST_TRAIN_SIZE = 60_000
CARTOON_SET_SIZE = 100_000  # cartoonset100k, the set LearnOpenCV trains on
RANDOM_BATCHES = 16  # random images are cycled: their content does not change a step's time


@dataclass(frozen=True)
class Preset:
    """A network and a dataset, named by Hydra overrides of ``conf/config.yaml``.

    ``steps`` (measured per variant) give each variant a few seconds on a quiet machine.
    ``lightning_rows`` times Lightning's loop too; left out where a step takes so long that
    the loop's few milliseconds cannot show and its rows would only cost minutes.
    """

    name: str
    overrides: tuple[str, ...]
    summary: str
    steps: int
    lightning_rows: bool = True


PRESETS = {
    preset.name: preset
    for preset in (
        Preset("mlp", ("model=mlp", "dataset=mnist"), "conf/model/mlp.yaml, MNIST 28x28", steps=160),
        Preset(
            "conv",
            ("model=conv", "dataset=fashion_mnist"),
            "conf/model/conv.yaml, Fashion-MNIST 28x28",
            steps=24,
        ),
        Preset(
            "keras32",
            ("model=keras_conv32", "dataset=fashion_mnist", "dataset.pad_to=32"),
            "conf/model/keras_conv32.yaml, Fashion-MNIST padded to 32x32",
            steps=32,
        ),
        Preset(
            "cartoon64",
            ("dataset=cartoon", "dataset.image_size=64"),
            "conf/model/cartoon_conv.yaml, random RGB 64x64",
            steps=16,
            lightning_rows=False,
        ),
        Preset(
            "cartoon128",
            ("dataset=cartoon", "dataset.image_size=128"),
            "conf/model/cartoon_conv.yaml, random RGB 128x128",
            steps=8,
            lightning_rows=False,
        ),
    )
}


class PerSampleImages(VisionDataset):
    """uint8 images served as torchvision serves MNIST: one PIL image per sample, then ``transform``."""

    def __init__(self, images: Tensor, transform: transforms.Compose) -> None:
        super().__init__(transform=transform)
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        pixels = np.ascontiguousarray(self.images[index].permute(1, 2, 0).squeeze(2).numpy())
        return self.transform(Image.fromarray(pixels)), 0


@dataclass
class Workload:
    """One preset's config and the same kind of images twice: in memory (fast) and per sample (baseline)."""

    preset: Preset
    config: DictConfig
    image_shape: tuple[int, int, int]
    fast_set: InMemoryImages
    baseline_set: Dataset
    epoch_size: int
    source: str
    val_set: InMemoryImages | None  # the real validation slice; None on random images

    def model(self) -> VAE:
        return build_model(validate(self.config), self.image_shape)

    def fast_loader(self) -> DataLoader:
        """The project's loader: a whole batch per indexing operation, uint8, no collation."""
        return batch_loader(self.fast_set, BATCH_SIZE, shuffle=True)

    def baseline_loader(self) -> DataLoader:
        """The tutorials' loader: per-sample transform and default collation, no workers."""
        return DataLoader(self.baseline_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=0)


def epoch_size(dataset: dict) -> int:
    """Training images per epoch: MNIST minus the validation slice; the Cartoon Set minus val and test."""
    if dataset["name"] in SOURCES:
        return MNIST_TRAIN_SIZE - dataset["val_size"]
    return round(CARTOON_SET_SIZE * (1 - dataset["val_fraction"] - dataset["test_fraction"]))


def per_sample_transform(dataset: dict) -> transforms.Compose:
    """ToTensor, after the zero padding that ``dataset.pad_to`` asks for."""
    margin = ((dataset.get("pad_to") or 28) - 28) // 2
    return transforms.Compose([*([transforms.Pad(margin)] if margin else []), transforms.ToTensor()])


def torchvision_train_split(dataset: dict) -> VisionDataset | None:
    """torchvision's training split with the per-sample transform; None when its files cannot be had.

    Goes through the datamodule's loader, which extracts the ``.gz`` files that are all a fresh
    data folder holds (torchvision's ``download=False`` path wants them extracted already) and,
    as ``vae.train`` would, downloads missing files where a network allows.
    """
    if dataset["name"] not in SOURCES:
        return None
    try:
        split = load_split(dataset["name"], dataset["root"], train=True)
    except UserError:
        return None
    split.transform = per_sample_transform(dataset)
    return split


def random_images(image_shape: tuple[int, int, int]) -> Tensor:
    """Seeded random uint8 images, enough for ``RANDOM_BATCHES`` distinct batches."""
    generator = torch.Generator().manual_seed(0)
    shape = (RANDOM_BATCHES * BATCH_SIZE, *image_shape)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def load_workload(preset: Preset) -> Workload:
    """The preset on its real training split when the files are there, else on random images."""
    config = compose_run_config(*preset.overrides, f"batch_size={BATCH_SIZE}")
    dataset = OmegaConf.to_container(config.dataset, resolve=True)
    datamodule = build_datamodule(dataset, BATCH_SIZE)
    image_shape = tuple(datamodule.image_shape)
    baseline_set = torchvision_train_split(dataset)
    if baseline_set is not None:
        datamodule.setup("fit")
        fast_set, val_set = datamodule.train_set, datamodule.val_set
        source = f"{type(baseline_set).__name__} train split"
    else:
        images = random_images(image_shape)
        fast_set, val_set = InMemoryImages(images, torch.zeros(len(images), dtype=torch.long)), None
        baseline_set = PerSampleImages(images, per_sample_transform(dataset))
        source = "random uint8" + (
            " (MNIST files neither on disk nor downloadable)" if dataset["name"] in SOURCES else ""
        )
    return Workload(preset, config, image_shape, fast_set, baseline_set, epoch_size(dataset), source, val_set)
