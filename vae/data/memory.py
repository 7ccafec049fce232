"""In-memory uint8 image tensors served a whole batch per indexing operation."""

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


class InMemoryImages(Dataset):
    """uint8 images ``[N, C, H, W]`` and integer labels ``[N]`` (or None: unlabelled) as tensors.

    ``__getitems__`` lets the DataLoader fetch a batch with one tensor index instead of
    one Python call, one PIL image and one ToTensor per sample.
    """

    def __init__(self, images: Tensor, labels: Tensor | None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("expected uint8 images [N, C, H, W]")
        if labels is not None and len(labels) != len(images):
            raise ValueError("expected one label per image")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int | Tensor) -> tuple[Tensor, Tensor | None]:
        return self.images[index], None if self.labels is None else self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor | None]:
        return self[torch.as_tensor(indices)]

    def subset(self, index: Tensor) -> "InMemoryImages":
        """The images (and labels) at ``index``, gathered by one indexing operation."""
        return InMemoryImages(*self[index])


def _batch_as_fetched(batch: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
    return batch


def batch_loader(dataset: InMemoryImages, batch_size: int, shuffle: bool) -> DataLoader:
    """A DataLoader whose batches come from ``__getitems__`` with no per-sample collation."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_batch_as_fetched)


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``train_set``, ``val_set`` and ``test_set`` (``InMemoryImages`` built in ``setup``)."""

    batch_size: int
    train_set: InMemoryImages
    val_set: InMemoryImages
    test_set: InMemoryImages

    def train_dataloader(self) -> DataLoader:
        return batch_loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return batch_loader(self.val_set, self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return batch_loader(self.test_set, self.batch_size, shuffle=False)
