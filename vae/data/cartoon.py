"""Google's Cartoon Set: PNGs decoded and resized once into a uint8 cache, then served from memory.

Decoding a 500x500 PNG costs milliseconds, far more than a training step on a 64 px image, so
each image is composited over white, resized and written once, by all cores, into a ``.npy``
file in ``cache_dir``. Every later setup memory-maps that file and opens no PNG. The cache's
name holds a digest of the file list (with sizes and mtimes), the image size and
``LOADER_VERSION``, so a changed folder, size or loader gets a cache of its own.
"""

import csv
import hashlib
import json
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchvision.transforms import functional as TF
from tqdm import tqdm

from vae.data.memory import InMemoryDataModule, InMemoryImages
from vae.errors import UserError

LOADER_VERSION = 1  # bump whenever decoding changes, so that no stale cache is reused
SOURCE = "Google's Cartoon Set page https://google.github.io/cartoonset/ (CC BY 4.0)"
# What PIL raises for corrupt or truncated PNGs, and int()/csv for a malformed attribute file.
READ_ERRORS = (OSError, SyntaxError, ValueError)

Attributes = dict[str, tuple[int, int]]  # attribute name -> (value, number of variants)


def find_images(root: Path) -> list[Path]:
    """Every ``.png`` under ``root``, subfolders included, in sorted order so ``limit`` is reproducible."""
    return sorted(root.rglob("*.png"))


def decode_image(path: Path, size: int) -> np.ndarray:
    """The PNG as uint8 ``[3, size, size]``, its transparent background made white.

    Compositing comes before resizing, so that invisible pixels' colours never blend into
    the antialiased edges. Palette and grayscale PNGs become RGB; a 16-bit grayscale one is
    scaled to 8 bits (Pillow's own conversion would clip it to white).
    """
    with Image.open(path) as opened:
        if opened.mode.startswith("I"):  # 16-bit grayscale (Pillow opens it as I;16 or I)
            levels = np.asarray(opened).astype(np.uint32) * 255 // 65535
            rgb = Image.fromarray(levels.astype(np.uint8), "L").convert("RGB")
        elif "A" in opened.getbands() or "transparency" in opened.info:
            rgba = opened.convert("RGBA")
            rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
        else:
            rgb = opened.convert("RGB")
    resized = TF.resize(rgb, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1))


def read_attributes(path: Path) -> Attributes:
    """A Cartoon Set ``.csv``: one ``"name", value, variants`` line per attribute."""
    attributes = {}
    with path.open(newline="") as file:
        for row in csv.reader(file, skipinitialspace=True):
            if row:
                name, value, variants = row
                attributes[name] = (int(value), int(variants))
    return attributes


def load_sample(job: tuple[Path, int]) -> tuple[np.ndarray, Attributes] | None:
    """One image and the attributes of the CSV beside it (empty without one); None if unreadable."""
    path, size = job
    try:
        image = decode_image(path, size)
        csv_path = path.with_suffix(".csv")
        return image, read_attributes(csv_path) if csv_path.is_file() else {}
    except READ_ERRORS:
        return None


def cache_key(root: Path, files: Sequence[Path], image_size: int) -> str:
    """A digest that changes with the folder, any file's name, size or mtime, the size or the loader."""
    digest = hashlib.sha256(f"{LOADER_VERSION}|{image_size}|{root.resolve()}".encode())
    for path in files:
        for member in (path, path.with_suffix(".csv")):
            try:
                stat = member.stat()
                digest.update(f"|{member.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            except FileNotFoundError:
                digest.update(f"|{member.relative_to(root)}:absent".encode())
    return digest.hexdigest()[:20]


def cache_paths(cache_dir: Path, image_size: int, key: str) -> tuple[Path, Path]:
    """The images ``.npy`` and the ``.json`` of file names, skipped files and attributes."""
    stem = f"cartoonset-{image_size}px-{key}"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def ensure_cache(root: Path, image_size: int, cache_dir: Path, limit: int | None) -> tuple[Path, Path]:
    """The cache of the first ``limit`` images under ``root`` at ``image_size``, built if missing."""
    files = find_images(root)[:limit]
    if not files:
        raise UserError(
            f"no Cartoon Set PNGs found under {root.resolve()}: download cartoonset10k or "
            f"cartoonset100k from {SOURCE}, unpack it there or point dataset.root= at it"
        )
    images_path, meta_path = cache_paths(cache_dir, image_size, cache_key(root, files, image_size))
    if not (images_path.is_file() and meta_path.is_file()):
        build_cache(root, files, image_size, images_path, meta_path)
    return images_path, meta_path


def build_cache(
    root: Path, files: Sequence[Path], image_size: int, images_path: Path, meta_path: Path
) -> None:
    """Decode ``files`` on all cores into ``images_path``; ``meta_path``, written last, marks it complete."""
    _check_writable(images_path.parent)
    with _scratch(images_path) as rows_path:
        rows = np.lib.format.open_memmap(rows_path, "w+", np.uint8, (len(files), 3, image_size, image_size))
        kept, attributes = _decode_into(rows, files, image_size)
        if not kept:
            raise UserError(
                f"none of the {len(files)} PNGs under {root.resolve()} could be read; get the "
                f"Cartoon Set again from {SOURCE}"
            )
        rows.flush()
        if len(kept) == len(files):
            os.replace(rows_path, images_path)
        else:
            _publish(images_path, lambda temporary: np.save(temporary, rows[: len(kept)]))
    readable = set(kept)
    meta = {
        "files": [path.relative_to(root).as_posix() for path in kept],
        "skipped": [path.relative_to(root).as_posix() for path in files if path not in readable],
        "attributes": attribute_columns(attributes),
    }
    _publish(meta_path, lambda temporary: temporary.write_text(json.dumps(meta)))


def _decode_into(
    rows: np.ndarray, files: Sequence[Path], image_size: int
) -> tuple[list[Path], list[Attributes]]:
    """Fill ``rows`` with the readable images in file order; their paths and attributes."""
    workers = min(len(os.sched_getaffinity(0)), len(files))
    chunk = max(1, min(32, len(files) // (4 * workers)))
    kept: list[Path] = []
    attributes: list[Attributes] = []
    with multiprocessing.Pool(workers) as pool:
        samples = pool.imap(load_sample, [(path, image_size) for path in files], chunksize=chunk)
        progress = tqdm(samples, total=len(files), desc=f"Caching Cartoon Set at {image_size} px", unit="img")
        for path, sample in zip(files, progress, strict=True):
            if sample is not None:
                rows[len(kept)] = sample[0]
                kept.append(path)
                attributes.append(sample[1])
    return kept, attributes


def attribute_columns(per_image: Sequence[Attributes]) -> dict[str, dict]:
    """``{name: {"values": [...], "variants": k}}`` for the attributes that every image has.

    Empty unless every image had a CSV: a colouring that leaves some images out would mislead.
    """
    if not per_image or not all(per_image):
        return {}
    names = set.intersection(*(set(attributes) for attributes in per_image))
    return {
        name: {
            "values": [attributes[name][0] for attributes in per_image],
            "variants": max(attributes[name][1] for attributes in per_image),
        }
        for name in sorted(names)
    }


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise UserError(
            f"cannot write the Cartoon Set cache in {folder}; set dataset.cache_dir= to a writable folder"
        )


@contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    """A new file beside ``target``, so that renaming it over ``target`` is atomic; removed if left."""
    handle, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}"
    )
    os.close(handle)
    os.chmod(name, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _publish(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a scratch file, then rename it over ``target``: readers never see half a file."""
    with _scratch(target) as temporary:
        write(temporary)
        os.replace(temporary, target)


def attribute_labels(
    attributes: dict[str, dict], color_by: str | None
) -> tuple[Tensor | None, list[str] | None]:
    """The ``color_by`` attribute as integer labels and one class name per variant; None without CSVs."""
    if not attributes or color_by is None:
        return None, None
    if color_by not in attributes:
        raise UserError(
            f"dataset.color_by={color_by!r} is not a Cartoon Set attribute; choose one of {sorted(attributes)} or null"
        )
    labels = torch.tensor(attributes[color_by]["values"], dtype=torch.long)
    count = max(attributes[color_by]["variants"], int(labels.max()) + 1)
    return labels, [f"{color_by} {value}" for value in range(count)]


class CartoonSet(InMemoryImages):
    """The Cartoon Set under ``root``, torchvision-style: ``(image, label)`` pairs of uint8 images.

    ``images`` is memory-mapped from the cache (built on first use); ``labels`` is the
    ``color_by`` attribute when every image has a CSV, else None; ``attributes`` holds them all.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        cache_dir: str | Path,
        limit: int | None,
        color_by: str | None,
    ) -> None:
        images_path, meta_path = ensure_cache(Path(root), image_size, Path(cache_dir), limit)
        meta = json.loads(meta_path.read_text())
        if meta["skipped"]:
            rank_zero_warn(
                f"skipped {len(meta['skipped'])} unreadable Cartoon Set file(s) under {root}, "
                f"e.g. {meta['skipped'][0]}; using the other {len(meta['files'])}"
            )
        self.files: list[str] = meta["files"]
        self.attributes: dict[str, dict] = meta["attributes"]
        labels, self.class_names = attribute_labels(self.attributes, color_by)
        # Copy-on-write mapping: writable for torch, yet nothing is ever written back to disk.
        super().__init__(torch.from_numpy(np.load(images_path, mmap_mode="c")), labels)


def split_indices(
    count: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Train, val and test positions: a seeded permutation cut by fractions, each part sorted."""
    val = max(1, round(count * val_fraction))
    test = max(1, round(count * test_fraction))
    if count - val - test < 1:
        raise UserError(
            f"{count} Cartoon Set images are too few for train, val and test; raise dataset.limit"
        )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    train_part, val_part, test_part = order[val + test :], order[:val], order[val : val + test]
    return train_part.sort().values, val_part.sort().values, test_part.sort().values


class CartoonDataModule(InMemoryDataModule):
    """The Cartoon Set at ``image_size`` px, split by ``split_seed``; batches come from memory.

    ``prepare_data`` builds the cache (once, on one process); ``setup`` maps it, and each split
    is a view of the mapping, so no epoch decodes a PNG and no split is copied into memory.
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        cache_dir: str | Path,
        image_size: int,
        limit: int | None,
        val_fraction: float,
        test_fraction: float,
        split_seed: int,
        color_by: str | None,
        batch_size: int,
    ) -> None:
        super().__init__()
        root, cache_dir = str(root), str(cache_dir)  # plain strings: checkpoints load with weights_only=True
        # Recorded in checkpoints, so vae.evaluate and vae.generate can rebuild the same data.
        self.save_hyperparameters()
        for key, value in (("image_size", image_size), ("limit", limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserError(f"dataset.{key} must be a positive integer, got {value!r}")
        if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
            raise UserError(
                "dataset.val_fraction and dataset.test_fraction must be positive and sum to less than 1"
            )
        self.root, self.cache_dir = Path(root), Path(cache_dir)
        self.image_size, self.limit = image_size, limit
        self.fractions, self.split_seed, self.color_by = (val_fraction, test_fraction), split_seed, color_by
        self.batch_size = batch_size
        self.class_names: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def prepare_data(self) -> None:
        ensure_cache(self.root, self.image_size, self.cache_dir, self.limit)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        full = CartoonSet(self.root, self.image_size, self.cache_dir, self.limit, self.color_by)
        self.class_names, self.attributes = full.class_names, full.attributes
        parts = split_indices(len(full), *self.fractions, self.split_seed)
        self.train_set, self.val_set, self.test_set = (full.subset(part) for part in parts)

    def test_attributes(self, count: int) -> dict[str, list[int]]:
        """Every CSV attribute of the first ``count`` test images, by name (TensorBoard's
        projector shows them); empty without CSVs."""
        rows = self.test_set.rows[:count].tolist()
        return {
            name: [attribute["values"][row] for row in rows]
            for name, attribute in sorted(self.attributes.items())
        }
