"""Checkpoint bookkeeping and the pictures logged at validation ends."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.conftest import RUN_PICTURES, quiet_trainer, random_images, uint8_loader
from vae.callbacks import (
    LatentPictures,
    LossProgressBar,
    StopOnNonFiniteLoss,
    checkpoint_callbacks,
    embedding_metadata,
)
from vae.data.memory import InMemoryImages
from vae.errors import UserError
from vae.module import VAE


class WorseEveryEpoch(pl.LightningModule):
    """A model whose validation loss rises every epoch, so only epoch 0 is ever the best."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# Validating every 2nd epoch: the last epoch (the 3rd) has no validation, but is still saved.
@pytest.mark.parametrize("validate_every", [1, 2])
def test_last_checkpoint_holds_the_final_epoch_even_without_improvement(tmp_path: Path, validate_every: int):
    data = DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2)
    trainer = quiet_trainer(
        max_epochs=3, callbacks=checkpoint_callbacks(tmp_path), check_val_every_n_epoch=validate_every
    )
    trainer.fit(WorseEveryEpoch(), data, data)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == 2
    first_validated = validate_every - 1  # val/loss grows every epoch: the first validated one is best
    assert [path.name for path in tmp_path.glob("best-*.ckpt")] == [f"best-epoch{first_validated:03d}.ckpt"]


def pictures_for(make_vae, latent_dim: int) -> tuple[VAE, dict]:
    model = make_vae((1, 28, 28), latent_dim)
    images = random_images(40, (1, 28, 28))
    val_set = InMemoryImages(images, torch.arange(40) % 3)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_set=val_set, class_names=["a", "b", "c"]))
    callback = LatentPictures(scatter_points=30, grid_size=4, manifold_size=5, seed=0)
    callback.setup(trainer, model, "fit")
    model.train()
    return model, callback.render(model, epochs_done=1)


def test_pictures_of_a_2d_latent_space_include_the_manifold(make_vae):
    model, pictures = pictures_for(make_vae, latent_dim=2)
    assert set(pictures) == {
        "latent/scatter",
        "samples/prior",
        "samples/uniform",
        "reconstructions",
        "latent/manifold",
        "latent/kl_per_dim",
    }
    assert pictures["samples/prior"].shape == (1, 2 + 4 * 30, 2 + 4 * 30)  # grey, as the images
    assert pictures["latent/manifold"].shape == (1, 2 + 5 * 30, 2 + 5 * 30)
    assert pictures["reconstructions"].shape == (
        1,
        2 + 8 * 30,
        2 + 4 * 30,
    )  # 4 rows of originals, 4 of reconstructions
    assert model.training  # rendering does not leave the model in eval mode
    legend = pictures["latent/scatter"].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["a", "b", "c"]


def test_the_kl_bars_show_each_dimensions_mean_kl_and_count_the_active_ones(make_vae):
    model = make_vae((1, 28, 28), latent_dim=3).eval()
    with torch.no_grad():  # dim 0's mean varies widely across images, dim 1's not at all
        model.encoder.mean.weight[0].mul_(100)
        model.encoder.mean.weight[1].zero_()
    images = random_images(30, (1, 28, 28), seed=0)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(val_set=InMemoryImages(images, None)))
    callback = LatentPictures(scatter_points=30, grid_size=4, manifold_size=5, seed=0)
    callback.setup(trainer, model, "fit")
    axes = callback.render(model, epochs_done=1)["latent/kl_per_dim"].axes[0]
    with torch.no_grad():
        mu, logvar = model.encode(images.float() / 255)
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).mean(0)  # by hand, averaged over the 30 images
    torch.testing.assert_close(torch.tensor([bar.get_height() for bar in axes.patches]), kl)
    assert mu[:, 0].var() > 0.01 and mu[:, 1].var() < 1e-12
    assert callback.active_units == int((mu.var(0) > 0.01).sum())
    assert axes.get_title().endswith(f"{callback.active_units} of 3 dimensions active")
    colours = [patch.get_facecolor() for patch in axes.patches]
    assert colours[0] != colours[1]  # active in colour, inactive grey


def test_pictures_of_a_larger_latent_space_have_no_manifold(make_vae):
    _, pictures = pictures_for(make_vae, latent_dim=16)
    assert "latent/manifold" not in pictures
    assert "PCA" in pictures["latent/scatter"].axes[0].get_title()


# Steps taken after the last validation (a run stopped mid-epoch, or validating every n
# epochs) change the model: the saved pictures must then be drawn again.
@pytest.mark.parametrize("steps_since_validation", [0, 3])
def test_pictures_saved_at_the_end_are_drawn_again_only_after_more_training(
    make_vae, tmp_path: Path, steps_since_validation: int
):
    model = make_vae((1, 28, 28), latent_dim=2)
    images = InMemoryImages(random_images(40, (1, 28, 28)), torch.arange(40) % 3)
    datamodule = SimpleNamespace(val_set=images, test_set=images, class_names=["a", "b", "c"])
    trainer = SimpleNamespace(
        datamodule=datamodule, sanity_checking=False, is_global_zero=True, loggers=[], current_epoch=0,
        global_step=10, default_root_dir=tmp_path,
    )  # fmt: skip
    callback = LatentPictures(scatter_points=30, grid_size=4, manifold_size=5, seed=0)
    callback.setup(trainer, model, "fit")
    renders = []
    render = callback.render
    callback.render = lambda *args: renders.append(args) or render(*args)
    callback.on_validation_epoch_end(trainer, model)
    trainer.global_step += steps_since_validation
    trainer.current_epoch = 1
    callback.on_train_end(trainer, model)
    assert len(renders) == (1 if steps_since_validation == 0 else 2)
    assert {path.stem for path in tmp_path.glob("*.png")} == RUN_PICTURES


class DivergesAtStep4(WorseEveryEpoch):
    """Trains normally for epoch 0 (steps 0-1) and epoch 1 (2-3), then its loss turns NaN."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step >= 4 else loss


# check_every=100 never reads the mark mid-epoch: the check before validation must catch it.
@pytest.mark.parametrize("check_every", [1, 100])
def test_a_nan_loss_stops_training_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, check_every: int
):
    data = DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2)
    trainer = quiet_trainer(
        max_epochs=5,
        default_root_dir=tmp_path,
        callbacks=[*checkpoint_callbacks(tmp_path / "checkpoints"), StopOnNonFiniteLoss(check_every)],
    )
    with pytest.raises(UserError) as raised:
        trainer.fit(DivergesAtStep4(), data, data)
    message = str(raised.value)
    assert "nan at epoch 2, batch 0 (global step 4)" in message and "last.ckpt" in message
    assert "\n" not in message
    kept = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in kept["state_dict"].values())


def test_the_progress_bar_shows_the_epochs_running_means(make_vae):
    bar = LossProgressBar(refresh_rate=1)
    shown = {}

    class ReadBarAtEpochEnd(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            shown.update(bar.get_metrics(trainer, pl_module))

    trainer = quiet_trainer(
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=True,
        callbacks=[bar, ReadBarAtEpochEnd()],
    )
    trainer.fit(make_vae(), uint8_loader(random_images(12), batch_size=5))  # batches of 5, 5 and 2 images
    for name in ("recon", "kl"):
        assert shown[name] == f"{float(trainer.callback_metrics[f'train/{name}']):.2f}"
    assert "loss" not in shown


def test_a_run_stopped_by_an_error_ends_the_progress_bars_line_first(make_vae, capsys):
    model = make_vae()
    model.training_step = lambda batch, batch_idx: VAE.training_step(model, batch, batch_idx) * float("nan")
    trainer = quiet_trainer(
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=True,
        callbacks=[LossProgressBar(refresh_rate=1), StopOnNonFiniteLoss(check_every=1)],
    )
    with pytest.raises(UserError):
        trainer.fit(model, uint8_loader(random_images(12), batch_size=5))
    assert capsys.readouterr().out.endswith("\n")  # the error line will not follow the bar on its line


def test_the_projectors_metadata_has_label_class_and_every_other_attribute():
    rows, header = embedding_metadata(torch.tensor([2, 0]), ["a", "b", "c"], {"glasses": [1, 0]})
    assert header == ["label", "class", "glasses"]
    assert rows == [["2", "c", "1"], ["0", "a", "0"]]
    assert embedding_metadata(None, None, {}) == (None, None)  # unlabelled images: points only
