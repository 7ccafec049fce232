"""MNIST and Fashion-MNIST: torchvision finds, verifies and parses the files; we keep uint8 tensors."""

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets

from vae.data.memory import InMemoryDataModule, InMemoryImages
from vae.errors import UserError, first_line

SOURCES = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}


def load_split(name: str, root: str | Path, train: bool) -> datasets.MNIST:
    """The torchvision dataset, downloaded into ``root`` when its files are missing.

    With the ``.gz`` files present, torchvision checks their md5 and extracts them without
    touching the network; any failure to get verified files becomes one actionable message.
    """
    source = SOURCES[name]
    try:
        return source(str(root), train=train, download=True)
    except (RuntimeError, OSError) as error:
        raw = Path(root) / source.__name__ / "raw"
        files = ", ".join(file for file, _ in source.resources)
        raise UserError(
            f"{source.__name__} files are missing or corrupt in {raw} and could not be "
            f"downloaded ({first_line(error)}). Expected: {files}. Either connect to the internet so "
            f"torchvision can download them, or copy those files into {raw} "
            f"(or set VAE_DATA_DIR / data_dir= to a folder holding {source.__name__}/raw/)."
        ) from error


class MNISTDataModule(InMemoryDataModule):
    """MNIST or Fashion-MNIST as uint8 tensors in memory; batches are formed by indexing.

    Validation is a fixed slice of the training set chosen by ``split_seed`` (independent of
    the training seed, so every run validates on the same images); test is the official set.
    ``val_size=0`` trains on all 60,000 images and validates on the test set, as the Keras
    tutorials and pytorch/examples do (their reported figures are on that protocol).
    ``pad_to`` zero-pads the 28x28 images (the Keras notebook trains on 32x32). ``binarize="static"``
    replaces every image by one Bernoulli draw of its pixels, fixed by ``split_seed``, made
    once at loading (the fixed binarized MNIST of the likelihood literature); other values
    leave the pixels alone (``dynamic`` binarization happens per batch, in the model).
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        batch_size: int,
        val_size: int,
        split_seed: int,
        pad_to: int | None,
        binarize: str = "none",
    ) -> None:
        super().__init__()
        if name not in SOURCES:
            raise UserError(f"unknown dataset {name!r}; choose one of {sorted(SOURCES)}")
        if val_size < 0:
            raise UserError(f"dataset.val_size must be 0 (validate on the test set) or more, got {val_size}")
        if pad_to is not None and (pad_to < 28 or (pad_to - 28) % 2):
            raise UserError(f"dataset.pad_to must be 28 plus an even number of pixels, got {pad_to}")
        root = str(root)  # a plain string, so the checkpoint loads with weights_only=True
        # Recorded in checkpoints, so vae.evaluate and vae.generate can rebuild the same data.
        self.save_hyperparameters()
        self.name, self.root, self.batch_size = name, root, batch_size
        self.val_size, self.split_seed, self.pad_to = val_size, split_seed, pad_to
        self.binarize = binarize
        self.class_names: list[str] = list(SOURCES[name].classes)
        self._parsed: dict[bool, datasets.MNIST] = {}  # by ``train``: each file parsed once per process

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = self.pad_to or 28
        return (1, side, side)

    def prepare_data(self) -> None:
        """Downloads what is missing; Lightning calls it before ``fit`` and again before ``test``."""
        if not hasattr(self, "train_set"):
            for train in (True, False):
                self._split(train)

    def _split(self, train: bool) -> datasets.MNIST:
        # torchvision parses the whole file whenever a dataset is made (0.1 s for the training
        # images): prepare_data's parse is kept for setup instead of being made again.
        if train not in self._parsed:
            self._parsed[train] = load_split(self.name, self.root, train)
        return self._parsed[train]

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        train_images, train_labels = self._tensors(train=True)
        if self.val_size >= len(train_images):
            raise UserError(
                f"dataset.val_size={self.val_size} leaves no training images (there are {len(train_images)})"
            )
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        train = InMemoryImages(train_images, train_labels)
        self.train_set, self.val_set = train.subset(train_index), train.subset(val_index)
        self.test_set = InMemoryImages(*self._tensors(train=False))
        if not self.val_size:
            self.val_set = self.test_set
        self._parsed.clear()

    def _tensors(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        split = self._split(train)
        images = split.data.unsqueeze(1)
        if self.binarize == "static":
            generator = torch.Generator().manual_seed(self.split_seed + int(not train))
            images = torch.bernoulli(images / 255, generator=generator).to(torch.uint8) * 255
        if self.pad_to:
            margin = (self.pad_to - images.shape[-1]) // 2
            images = F.pad(images, (margin,) * 4)
        return images.contiguous(), split.targets
