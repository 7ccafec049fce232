"""The Cartoon Set loader on a small folder in the real distribution format, then end to end."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_module
from vae.data import build_datamodule, cartoon
from vae.data.cartoon import CartoonSet, decode_image, read_attributes
from vae.errors import UserError

HIDDEN = (10, 200, 30)  # the colour under the transparent half: it must never show through
FACE_COLOURS = [(200, 40, 40), (40, 40, 200), (240, 200, 0), (90, 60, 30), (0, 150, 150), (120, 0, 120)]
HAIR_COLOURS = [3, 0, 9, 3, 5, 1]


def write_avatar(path: Path, face: tuple[int, int, int], hair_color: int) -> None:
    """A 40x40 RGBA PNG, left half transparent and right half opaque, with its attribute CSV."""
    pixels = np.zeros((40, 40, 4), dtype=np.uint8)
    pixels[:, :20] = (*HIDDEN, 0)
    pixels[:, 20:] = (*face, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)
    lines = [f'"eye_angle", {hair_color % 3}, 3', f'"hair_color", {hair_color}, 10', '"glasses", 11, 12']
    path.with_suffix(".csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def avatars(tmp_path: Path) -> Path:
    """Six avatars in two subfolders, as cartoonset100k is laid out, plus one truncated PNG."""
    root = tmp_path / "cartoonset"
    for number, (face, hair) in enumerate(zip(FACE_COLOURS, HAIR_COLOURS, strict=True)):
        write_avatar(root / str(number % 2) / f"cs{number}.png", face, hair)
    whole = (root / "0" / "cs0.png").read_bytes()
    (root / "1" / "cs9.png").write_bytes(whole[: len(whole) // 2])
    return root


def load(
    root: Path, cache_dir: Path, image_size: int = 16, color_by: str | None = "hair_color"
) -> CartoonSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CartoonSet(root, image_size, cache_dir, limit=None, color_by=color_by)


def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(avatars):
    image = decode_image(avatars / "0" / "cs0.png", 16)
    assert image.dtype == np.uint8 and image.shape == (3, 16, 16)
    assert image[:, :, :6].tolist() == np.full((3, 16, 6), 255).tolist()
    assert (
        image[:, :, -6:].tolist()
        == np.array(FACE_COLOURS[0]).reshape(3, 1, 1).repeat(16, 1).repeat(6, 2).tolist()
    )


def test_attribute_lines_are_name_value_and_variant_count(avatars):
    attributes = read_attributes(avatars / "1" / "cs3.csv")
    assert attributes == {"eye_angle": (0, 3), "hair_color": (3, 10), "glasses": (11, 12)}


def test_a_corrupt_png_is_skipped_with_one_warning_that_counts_it(avatars, tmp_path):
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable .*cs9\.png.*other 6") as caught:
        cartoons = CartoonSet(avatars, 16, tmp_path / "cache", limit=None, color_by="hair_color")
    assert len([warning for warning in caught if "skipped" in str(warning.message)]) == 1
    assert len(cartoons) == 6 and "1/cs9.png" not in cartoons.files
    assert cartoons.images.shape == (6, 3, 16, 16) and cartoons.images.dtype == torch.uint8


def test_labels_follow_color_by_in_sorted_file_order(avatars, tmp_path):
    cartoons = load(avatars, tmp_path / "cache")
    assert cartoons.files == ["0/cs0.png", "0/cs2.png", "0/cs4.png", "1/cs1.png", "1/cs3.png", "1/cs5.png"]
    expected = [HAIR_COLOURS[int(name[-5])] for name in cartoons.files]
    assert cartoons.labels.tolist() == expected
    assert cartoons.class_names == [f"hair_color {value}" for value in range(10)]
    assert load(avatars, tmp_path / "cache", color_by="eye_angle").labels.tolist() == [
        v % 3 for v in expected
    ]
    with pytest.raises(UserError, match="'hat' is not a Cartoon Set attribute.*glasses"):
        load(avatars, tmp_path / "cache", color_by="hat")


def test_without_csvs_there_are_no_labels(avatars, tmp_path):
    for csv_file in avatars.rglob("*.csv"):
        csv_file.unlink()
    cartoons = load(avatars, tmp_path / "cache")
    assert cartoons.labels is None and cartoons.class_names is None
    images, labels = cartoons.__getitems__([0, 2])
    assert images.shape == (2, 3, 16, 16) and labels is None


def test_the_cache_is_built_once_then_reused_without_decoding(avatars, tmp_path, monkeypatch):
    first = load(avatars, tmp_path / "cache")
    cached = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert [name.rsplit(".", 1)[1] for name in cached] == ["json", "npy"]

    def no_decoding(path, size):
        raise AssertionError(f"{path} decoded again although the cache holds it")

    monkeypatch.setattr(cartoon, "decode_image", no_decoding)
    second = load(avatars, tmp_path / "cache")
    assert torch.equal(second.images, first.images) and second.files == first.files
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == cached
    assert not list(avatars.rglob("*.npy")), "the cache must never be written beside the images"


def test_a_changed_size_or_folder_builds_a_new_cache(avatars, tmp_path):
    small = load(avatars, tmp_path / "cache", image_size=16)
    large = load(avatars, tmp_path / "cache", image_size=32)
    assert large.images.shape == (6, 3, 32, 32)
    write_avatar(avatars / "0" / "cs2.png", (255, 255, 0), 7)  # redrawn in place
    redrawn = load(avatars, tmp_path / "cache", image_size=16)
    assert redrawn.images[1, :, 8, 12].tolist() == [255, 255, 0]
    assert not torch.equal(redrawn.images, small.images)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3


def test_a_missing_folder_says_where_it_looked_and_where_the_set_comes_from(tmp_path):
    with pytest.raises(UserError) as error:
        load(tmp_path / "nowhere", tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "nowhere") in message and "https://google.github.io/cartoonset/" in message
    assert "CC BY 4.0" in message


def test_a_folder_of_only_corrupt_pngs_is_a_user_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cs1.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="none of the 1 PNGs"):
        load(tmp_path / "broken", tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "no half-written cache may be left behind"


def test_the_datamodule_splits_by_seed_and_batches_uint8_images(avatars, tmp_path):
    options = dict(name="cartoon", root=avatars, cache_dir=tmp_path / "cache", image_size=32, limit=5)
    options |= dict(val_fraction=0.2, test_fraction=0.2, split_seed=3, color_by="hair_color")
    module = build_datamodule(options, batch_size=2)
    module.prepare_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the corrupt file is the 7th: limit=5 never reads it
        module.setup("fit")
    assert module.image_shape == (3, 32, 32) and len(module.class_names) == 10
    parts = [module.train_set, module.val_set, module.test_set]
    assert [len(part) for part in parts] == [3, 1, 1]
    # Each split is a view of the one memory-mapped cache, not a copy of its images.
    assert all(part.images is parts[0].images and len(part.images) == 5 for part in parts)
    together = torch.cat([part.head()[0] for part in parts])
    assert sorted(map(bytes, together.numpy())) == sorted(
        map(bytes, load(avatars, tmp_path / "c2", 32).images[:5].numpy())
    )
    again = build_datamodule(options, batch_size=2)
    again.setup("fit")
    assert torch.equal(again.val_set.head()[0], module.val_set.head()[0])
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (2,)
    # Every CSV attribute of the test images, for the projector: the one test image's own.
    attributes = module.test_attributes(10)
    assert sorted(attributes) == ["eye_angle", "glasses", "hair_color"]
    (hair,) = attributes["hair_color"]
    assert attributes["eye_angle"] == [hair % 3] and attributes["glasses"] == [11]
    assert [hair] == module.test_set.head()[1].tolist()


@pytest.mark.slow
def test_training_on_the_shared_cartoons_logs_losses_and_pictures(shared_cartoons, tmp_path):
    result = run_module(
        "vae.train", "dataset=cartoon",
        f"dataset.root={shared_cartoons}", f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.limit=64", "dataset.image_size=64", "epochs=1", "accelerator=cpu",
        "trainer.limit_val_batches=1", "plots.grid_size=2", f"hydra.run.dir={tmp_path / 'run'}",
        data_dir=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert {"train/recon", "train/kl", "val/recon", "val/kl"} <= set(events.Tags()["scalars"])
    assert {"reconstructions", "samples/prior"} <= set(events.Tags()["images"])
    image = events.Images("reconstructions")[-1]
    assert image.width > 64 and image.height > 64
    composed = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")  # dataset=cartoon's defaults
    assert (composed.objective.recon, composed.latent_dim) == ("mse", 200)
    assert list(composed.model.encoder_channels) == [32, 64, 64, 64, 64]
    assert len(list((tmp_path / "cache").glob("cartoonset-64px-*.npy"))) == 1


def write_variants(folder: Path) -> dict[str, Path]:
    """PNGs in the other modes a user's folder may hold, each 8x8 with one known colour."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.png" for name in ("palette", "gray16", "gray8", "not_an_image")}
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)  # index 1 is (200, 40, 40)
    palette.save(paths["palette"])
    Image.fromarray(np.full((8, 8), 128 * 257, dtype=np.uint16)).save(paths["gray16"])  # 16-bit mid-grey
    Image.new("L", (8, 8), 77).save(paths["gray8"])
    paths["not_an_image"].write_text("hair_color, 3, 10\n")
    return paths


def test_palette_16_bit_and_grayscale_pngs_decode_to_their_colours(tmp_path):
    paths = write_variants(tmp_path)
    assert Image.open(paths["gray16"]).mode.startswith("I;16")  # really a 16-bit file
    expected = {"palette": (200, 40, 40), "gray16": (128, 128, 128), "gray8": (77, 77, 77)}
    for name, colour in expected.items():
        image = decode_image(paths[name], 4)
        assert image.shape == (3, 4, 4) and image.dtype == np.uint8, name
        assert image[:, 0, 0].tolist() == list(colour), name


def test_a_folder_of_mixed_pngs_keeps_the_readable_ones_and_names_the_rest(avatars, tmp_path):
    write_variants(avatars / "2")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable Cartoon Set file\(s\)"):
        cartoons = CartoonSet(avatars, 8, tmp_path / "cache", limit=None, color_by=None)
    assert len(cartoons) == 6 + 3  # the six avatars, the palette, 16-bit and 8-bit grey PNGs
    assert sorted(file for file in cartoons.files if file.startswith("2/")) == [
        "2/gray16.png",
        "2/gray8.png",
        "2/palette.png",
    ]
