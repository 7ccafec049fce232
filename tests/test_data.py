"""The MNIST-family datamodule on tiny IDX files written in the real format."""

import gzip
import hashlib
import struct
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torchvision import datasets

from tests.conftest import MNIST_FILES, quiet_trainer
from vae.data import build_datamodule, memory
from vae.data.memory import IndexBatches, InMemoryImages, batch_loader
from vae.data.mnist import MNISTDataModule
from vae.errors import UserError

NOWHERE = ["http://127.0.0.1:9/"]  # a closed local port: a download attempt fails at once


def idx_bytes(array: torch.Tensor) -> bytes:
    """IDX format: zero, zero, type 0x08 (ubyte), number of dims, big-endian int32 sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.numpy().tobytes()


@pytest.fixture
def tiny_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Writes 12 train and 4 test images as the four gzipped IDX files, with their md5s."""
    generator = torch.Generator().manual_seed(1)
    arrays = {
        "train-images-idx3-ubyte": torch.randint(
            0, 256, (12, 28, 28), generator=generator, dtype=torch.uint8
        ),
        "train-labels-idx1-ubyte": torch.arange(12, dtype=torch.uint8) % 10,
        "t10k-images-idx3-ubyte": torch.randint(0, 256, (4, 28, 28), generator=generator, dtype=torch.uint8),
        "t10k-labels-idx1-ubyte": torch.tensor([3, 1, 4, 1], dtype=torch.uint8),
    }
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    resources = []
    for name, array in arrays.items():
        packed = gzip.compress(idx_bytes(array))
        (raw / f"{name}.gz").write_bytes(packed)
        resources.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", NOWHERE)
    return arrays


def datamodule(root: Path, **changes) -> MNISTDataModule:
    options = dict(name="fashion_mnist", root=root, val_size=3, split_seed=0, pad_to=None)
    return build_datamodule({**options, **changes}, batch_size=4)


def prepared(root: Path, **changes) -> MNISTDataModule:
    """``datamodule`` with its files read and split for fitting."""
    module = datamodule(root, **changes)
    module.prepare_data()
    module.setup("fit")
    return module


def test_verified_gz_files_are_extracted_parsed_and_split(tmp_path, tiny_fashion):
    module = prepared(tmp_path)
    assert module.image_shape == (1, 28, 28)
    assert module.class_names[0] == "T-shirt/top"
    assert (len(module.train_set), len(module.val_set)) == (9, 3)
    train, val = module.train_set.head(), module.val_set.head()
    assert train[0].dtype == torch.uint8 and train[0].shape == (9, 1, 28, 28)
    # Train and validation partition the written training images, labels kept alongside.
    written = tiny_fashion["train-images-idx3-ubyte"]
    together = torch.cat([train[0], val[0]]).squeeze(1)
    assert sorted(map(bytes, together.numpy())) == sorted(map(bytes, written.numpy()))
    for images, labels in (train, val):
        for image, label in zip(images, labels, strict=True):
            position = next(i for i, w in enumerate(written) if torch.equal(w, image[0]))
            assert label == tiny_fashion["train-labels-idx1-ubyte"][position]
    torch.testing.assert_close(module.test_set.images.squeeze(1), tiny_fashion["t10k-images-idx3-ubyte"])
    assert module.test_set.labels.tolist() == [3, 1, 4, 1]


def test_each_file_is_parsed_once_across_fit_and_test(tmp_path, tiny_fashion, monkeypatch):
    """Lightning calls prepare_data and setup before fit and again before test."""
    from vae.data import mnist

    parsed, load = [], mnist.load_split
    monkeypatch.setattr(mnist, "load_split", lambda *args: parsed.append(args) or load(*args))
    module = datamodule(tmp_path)
    for stage in ("fit", "test"):
        module.prepare_data()
        module.setup(stage)
    assert sorted(train for _, _, train in parsed) == [False, True]
    assert len(module.train_set) == 9 and len(module.test_set) == 4


def test_batches_are_uint8_images_with_labels(tmp_path, tiny_fashion):
    module = datamodule(tmp_path)
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (4,)
    assert sum(len(batch[0]) for batch in module.val_dataloader()) == 3


def test_validation_slice_depends_on_split_seed_only(tmp_path, tiny_fashion):
    def val_images(split_seed: int) -> torch.Tensor:
        module = datamodule(tmp_path, split_seed=split_seed)
        module.setup("fit")
        return module.val_set.head()[0]

    assert torch.equal(val_images(0), val_images(0))
    assert not torch.equal(val_images(0), val_images(1))


def test_padding_to_32_adds_a_black_border(tmp_path, tiny_fashion):
    module = datamodule(tmp_path, pad_to=32)
    module.setup("test")
    assert module.image_shape == (1, 32, 32)
    images = module.test_set.head()[0]
    assert images.shape == (4, 1, 32, 32)
    torch.testing.assert_close(images[:, 0, 2:30, 2:30], tiny_fashion["t10k-images-idx3-ubyte"])
    assert images[:, :, :2].sum() == 0 and images[:, :, :, 30:].sum() == 0


@pytest.mark.parametrize("folder", ["", "no/such/folder"], ids=["empty folder", "missing folder"])
def test_missing_files_name_the_folder_the_files_and_the_ways_out(tmp_path, monkeypatch, folder):
    monkeypatch.setattr(datasets.MNIST, "mirrors", NOWHERE)
    module = datamodule(tmp_path / folder, name="mnist")
    with pytest.raises(UserError) as raised:
        module.prepare_data()
    message = str(raised.value)
    assert "\n" not in message
    assert str(tmp_path / folder / "MNIST" / "raw") in message
    for file in MNIST_FILES:
        assert file in message
    assert "internet" in message and "VAE_DATA_DIR" in message


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_a_corrupt_gz_is_reported_not_parsed(tmp_path, tiny_fashion, damage):
    damaged = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(damaged.read_bytes())
    if damage == "truncated":
        data = data[:-3]
    else:
        data[-5] ^= 0xFF  # same length, wrong checksum
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match="missing or corrupt"):
        datamodule(tmp_path).setup("fit")


def test_unknown_dataset_and_bad_padding_are_rejected(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        datamodule(tmp_path, name="cifar")
    with pytest.raises(UserError, match="pad_to"):
        datamodule(tmp_path, pad_to=31)


def test_val_size_zero_trains_on_every_image_and_validates_on_the_test_set(tmp_path, tiny_fashion):
    module = prepared(tmp_path, val_size=0)
    assert len(module.train_set) == len(tiny_fashion["train-images-idx3-ubyte"])
    assert module.val_set is module.test_set


@pytest.mark.parametrize("val_size", [-1, 12])
def test_a_val_size_that_leaves_no_training_images_is_one_clear_error(tmp_path, tiny_fashion, val_size):
    with pytest.raises(UserError, match="val_size"):
        prepared(tmp_path, val_size=val_size)


def test_static_binarization_is_one_fixed_bernoulli_draw_of_each_image(tmp_path, tiny_fashion):
    def loaded(**changes) -> MNISTDataModule:
        return prepared(tmp_path, val_size=0, **changes)

    binary, again, grey = loaded(binarize="static"), loaded(binarize="static"), loaded()
    pixels = binary.train_set.head()[0]
    assert set(pixels.unique().tolist()) == {0, 255}
    torch.testing.assert_close(pixels, again.train_set.head()[0])  # the same draw every time
    # Pixels that are 0 or 255 stay so; the others are drawn with probability intensity / 255.
    original = grey.train_set.head()[0]
    assert torch.equal(pixels[original == 0], original[original == 0])
    assert torch.equal(pixels[original == 255], original[original == 255])
    share_on = (pixels == 255).float().mean()
    assert abs(share_on - original.float().mean() / 255) < 0.01
    assert set(binary.test_set.head()[0].unique().tolist()) == {0, 255}


def test_index_batches_depend_on_seed_and_epoch_and_shard_without_overlap():
    def positions(shard: int, shards: int, epoch: int, shuffle: bool = True, size: int = 103) -> list[int]:
        batches = IndexBatches(size, 10, shuffle, seed=7, shard=shard, shards=shards)
        batches.sampler.set_epoch(epoch)  # where Lightning calls it
        assert len(list(batches)) == len(batches)
        return torch.cat(list(batches)).tolist()

    assert positions(0, 1, 0) == positions(0, 1, 0)  # a resumed epoch sees the same batches
    assert positions(0, 1, 0) != positions(0, 1, 1)
    assert sorted(positions(0, 1, 0)) == list(range(103))
    first, second = positions(0, 2, 3), positions(1, 2, 3)
    assert len(first) == len(second) == 51  # equal steps on every process; one image dropped
    assert not set(first) & set(second)
    # Evaluation keeps every image exactly once across processes, in order.
    assert sorted(positions(0, 2, 0, shuffle=False) + positions(1, 2, 0, shuffle=False)) == list(range(103))


@pytest.mark.parametrize(("free", "moved"), [(4 * 96, True), (4 * 96 - 1, False)])
def test_a_split_moves_whole_onto_an_accelerator_only_where_it_fits(monkeypatch, free, moved):
    """A stand-in accelerator (torch's 'meta' device) with ``free`` bytes: 6 images of 16 bytes
    are moved when they take at most a quarter of it, and then every batch is already there."""
    monkeypatch.setattr(memory, "free_bytes", lambda device: free)
    images = torch.arange(10 * 16, dtype=torch.uint8).view(10, 1, 4, 4)
    split = InMemoryImages(images, torch.arange(10)).subset(torch.tensor([7, 1, 3, 5, 0, 2]))
    placed = split.on(torch.device("meta"))
    assert len(placed) == 6
    batch, labels = placed[torch.tensor([0, 1])]
    assert batch.device.type == ("meta" if moved else "cpu") and labels.device == batch.device
    if not moved:
        assert torch.equal(batch, images[[7, 1]]) and placed is split
    assert split.on(torch.device("cpu")) is split


class RecordsLabels(pl.LightningModule):
    """The smallest model Lightning will fit; it keeps the labels of each epoch's batches."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.epochs: list[list[int]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if batch_idx == 0:
            self.epochs.append([])
        self.epochs[-1] += batch[1].tolist()
        return (self.weight - 1) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_each_epoch_of_a_fit_sees_the_images_in_a_new_order():
    """Lightning tells the epoch to ``batch_sampler.sampler``; a sampler it misses shuffles once."""
    images = InMemoryImages(torch.zeros(40, 1, 2, 2, dtype=torch.uint8), torch.arange(40))
    model = RecordsLabels()
    # use_distributed_sampler=False: as vae.train builds its Trainer.
    trainer = quiet_trainer(max_epochs=3, enable_checkpointing=False, use_distributed_sampler=False)
    trainer.fit(model, train_dataloaders=batch_loader(images, 8, shuffle=True, seed=0))
    assert len(model.epochs) == 3
    assert all(sorted(order) == list(range(40)) for order in model.epochs)
    assert len({tuple(order) for order in model.epochs}) == 3
