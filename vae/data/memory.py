"""Image tensors (in memory or memory-mapped) served a whole batch per indexing operation."""

import math

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class InMemoryImages(Dataset):
    """uint8 images ``[N, C, H, W]`` and integer labels ``[N]`` (or None: unlabelled), seen
    through ``rows`` (None: all of them).

    A subset is a view, not a copy: a memory-mapped Cartoon Set cache stays on disk, and only
    the batches read from it come into memory. ``__getitems__`` lets the DataLoader fetch a
    batch with one tensor index instead of one Python call and one ToTensor per sample.
    """

    def __init__(self, images: Tensor, labels: Tensor | None, rows: Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("expected uint8 images [N, C, H, W]")
        if labels is not None and len(labels) != len(images):
            raise ValueError("expected one label per image")
        self.images = images
        self.labels = labels
        self.rows = rows

    def __len__(self) -> int:
        return len(self.images) if self.rows is None else len(self.rows)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, Tensor | None]:
        """The images and labels at a 1-D tensor of positions.

        ``index_select``, because advanced indexing of a uint8 ``[N, 1, 28, 28]`` tensor takes
        about ten times as long, a few percent of an MLP step.
        """
        rows = index if self.rows is None else self.rows.index_select(0, index)
        rows = rows.to(self.images.device)  # positions come from the CPU, images may be on a GPU
        labels = None if self.labels is None else self.labels.index_select(0, rows)
        return self.images.index_select(0, rows), labels

    def __getitems__(self, indices: list[int] | Tensor) -> tuple[Tensor, Tensor | None]:
        return self[torch.as_tensor(indices)]

    def subset(self, index: Tensor) -> "InMemoryImages":
        """The images (and labels) at ``index``, as a view of the same storage."""
        return InMemoryImages(self.images, self.labels, index if self.rows is None else self.rows[index])

    def head(self, count: int | None = None) -> tuple[Tensor, Tensor | None]:
        """The first ``count`` images (all when None) and their labels, gathered into memory."""
        return self[torch.arange(len(self) if count is None else min(count, len(self)))]

    def on(self, device: torch.device) -> "InMemoryImages":
        """These images gathered onto an accelerator, so that no batch is copied from the host.

        Itself on the CPU, or where the images would take more than a quarter of the device's
        free memory (the model and its activations need the rest).
        """
        if device.type == "cpu" or len(self) * self.images[0].numel() > free_bytes(device) // 4:
            return self
        images, labels = self.head()
        return InMemoryImages(images.to(device), None if labels is None else labels.to(device))


def free_bytes(device: torch.device) -> int:
    """Free memory on an accelerator; 0 where torch cannot say (then nothing is moved there)."""
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0


class EpochPositions(Sampler[int]):
    """One process's dataset positions for an epoch: one permutation per epoch (or 0..N-1).

    The permutation depends only on ``seed`` and the epoch Lightning passes to ``set_epoch``,
    so a run resumed from a checkpoint sees the batches the uninterrupted run would have.
    With ``shards`` processes (ddp) each takes every ``shards``-th position from ``shard``;
    training shards are cut to equal length so every process steps the same number of times.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, shard: int = 0, shards: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.shard, self.shards = shard, shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.shard, self.size, self.shards)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return order[: self.size - self.size % self.shards][self.shard :: self.shards]

    def __iter__(self):
        return iter(self.positions().tolist())

    def __len__(self) -> int:
        if self.shuffle:
            return self.size // self.shards
        return len(range(self.shard, self.size, self.shards))


class IndexBatches(Sampler[Tensor]):
    """``EpochPositions`` cut into batches, each one tensor of positions.

    The positions are this batch sampler's ``sampler`` because that is where Lightning looks
    for ``set_epoch`` at the start of every epoch (``batch_sampler.sampler``).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        shard: int = 0,
        shards: int = 1,
        skip_first: int = 0,
    ) -> None:
        self.sampler = EpochPositions(size, shuffle, seed, shard, shards)
        self.batch_size = batch_size
        self.skip_first = skip_first  # batches the first epoch leaves out: a run resumed inside it

    def __iter__(self):
        # A generator: the positions are drawn at the first batch, not when the iterator is
        # made; Lightning makes a resumed run's iterator before it sets that epoch.
        skip, self.skip_first = self.skip_first, 0
        yield from self.sampler.positions().split(self.batch_size)[skip:]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


def _batch_as_fetched(batch: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
    return batch


def batch_loader(
    dataset: InMemoryImages,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    shard: int = 0,
    shards: int = 1,
    skip_first: int = 0,
) -> DataLoader:
    """A DataLoader whose batches come from ``__getitems__`` with no per-sample collation.

    Its own generator keeps the global random state untouched when an epoch's iterator is
    made (wherever Lightning makes it), so the model's noise draws resume exactly.
    """
    batches = IndexBatches(len(dataset), batch_size, shuffle, seed, shard, shards, skip_first)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=_batch_as_fetched, generator=generator)


class InMemoryDataModule(pl.LightningDataModule):
    """Serves ``train_set``, ``val_set`` and ``test_set`` (``InMemoryImages`` built in ``setup``).

    Under ddp each process reads its own shard of every split; the shuffle is seeded by the
    run's seed (``torch.initial_seed()``, which ``seed_everything`` sets on every process).
    """

    batch_size: int
    data_on_device: bool = True  # on an accelerator, hold each split there (``InMemoryImages.on``)
    resume_batches: int = 0  # batches of the first epoch already trained by a run resumed inside it
    train_set: InMemoryImages
    val_set: InMemoryImages
    test_set: InMemoryImages

    def _loader(self, dataset: InMemoryImages, shuffle: bool, skip_first: int = 0) -> DataLoader:
        shard, shards = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.trainer is not None and self.data_on_device:
            dataset = dataset.on(self.trainer.strategy.root_device)
        seed = torch.initial_seed()
        return batch_loader(dataset, self.batch_size, shuffle, seed, shard, shards, skip_first)

    def train_dataloader(self) -> DataLoader:
        skip, self.resume_batches = self.resume_batches, 0
        return self._loader(self.train_set, shuffle=True, skip_first=skip)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
