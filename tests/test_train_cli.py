"""`python -m vae.train` as a user runs it: on the real Fashion-MNIST files, then resumed."""

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import QUICK, RUN_PICTURES, run_module
from vae.module import VAE
from vae.precision import choose_precision

pytestmark = pytest.mark.slow  # commands run as subprocesses, on the real data


def test_events_hold_each_loss_term_and_the_pictures(finished_run: Path):
    events = EventAccumulator(str(finished_run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for stage in ("train", "val", "test"):
        assert {f"{stage}/recon", f"{stage}/kl", f"{stage}/loss"} <= scalars
    assert len(events.Scalars("val/kl")) == 2  # once per epoch
    assert all(event.value > 0 for event in events.Scalars("train/kl"))  # a KL divergence, not its negative
    assert len(events.Scalars("val/active_units")) == 2
    pictures = {"latent/scatter", "samples/prior", "samples/uniform", "reconstructions", "latent/manifold"}
    pictures.add("latent/kl_per_dim")
    assert set(events.Tags()["images"]) == pictures | {"latent/test"}  # the test scatter: once, at the end
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_the_run_folders_pictures_are_tensorboards_last_ones(finished_run: Path):
    events = EventAccumulator(str(finished_run), size_guidance={"images": 0})
    events.Reload()
    for tag in events.Tags()["images"]:
        logged = np.asarray(Image.open(BytesIO(events.Images(tag)[-1].encoded_image_string)))
        saved = np.asarray(Image.open(finished_run / f"{tag.replace('/', '_')}.png"))
        if saved.ndim == 2:  # TensorBoard stores grey grids as RGB
            saved = np.repeat(saved[..., None], 3, axis=2)
        assert logged.shape == saved.shape and (logged == saved).all(), tag


def test_run_folder_has_metrics_pictures_and_a_final_checkpoint(finished_run: Path):
    summary = json.loads((finished_run / "metrics.json").read_text())
    assert summary["settings"]["objective"]["recon"] == "bce" and summary["settings"]["optim"]["lr"] == 1e-3
    assert summary["settings"]["dataset"] == "fashion_mnist" and summary["settings"]["latent_dim"] == 2
    settings = summary["settings"]
    assert (settings["precision"], settings["precision_reason"]) == choose_precision("auto", "cpu")
    assert settings["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["epochs_completed"] == 2 and summary["train_images_per_second"] > 0
    metrics = summary["metrics"]
    for key in ("val/recon", "val/kl", "val/loss", "test/recon", "test/kl", "test/loss"):
        assert metrics[key] > 0, key
    assert metrics["val/active_units"] in (0.0, 1.0, 2.0)  # of the 2 latent dimensions
    # Per-image losses: recon summed over 784 pixels, so hundreds of nats early in training.
    assert 50 < metrics["test/recon"] < 784
    for picture in RUN_PICTURES:
        assert (finished_run / f"{picture}.png").stat().st_size > 1000
    assert (finished_run / ".hydra" / "config.yaml").exists()
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["precision"] == settings["precision"]


def test_checkpoint_reloads_and_samples(finished_run: Path):
    model = VAE.load_from_checkpoint(finished_run / "checkpoints" / "last.ckpt", map_location="cpu")
    samples = model.eval().sample(4)
    assert samples.shape == (4, 1, 28, 28)
    assert 0 <= samples.min() and samples.max() <= 1


def test_a_bad_latent_size_fails_in_one_line_before_training(tmp_path: Path):
    result = run_module("vae.train", "latent_dim=0", f"hydra.run.dir={tmp_path}", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: latent_dim must be at least 1, got 0")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_an_unknown_group_choice_is_one_line_with_the_choices(tmp_path: Path):
    # The messages of every group: test_config's check_arguments cases; here, the command's line.
    result = run_module("vae.train", "model=resnet", f"hydra.run.dir={tmp_path}", data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith("error: unknown model 'resnet'; choose one of ")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.strategy=dpp", "error: You selected an invalid strategy name: `strategy='dpp'`."),
        (
            "trainer.devices=0",
            "error: `Trainer(devices=0)` value is not a valid input using cpu accelerator.",
        ),
    ],
)
def test_device_settings_lightning_refuses_are_one_line_naming_them(
    tmp_path: Path, override: str, expected: str
):
    result = run_module(
        "vae.train", "accelerator=cpu", override, f"hydra.run.dir={tmp_path}", data_dir=tmp_path
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Seed set")]
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr[-3000:]
    assert "accelerator=cpu" in lines[0] and "trainer.devices=auto use what this machine has" in lines[0]
    assert not (tmp_path / "checkpoints").exists()


def test_a_compiled_run_exits_having_trained_the_same_model_as_eager(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A cold compile, as on a user's first run. A plain autoencoder: no random draws, which
    # compiled code makes differently, so the two runs differ only by rounding.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    test_loss = {}
    for compile in ("false", "true"):
        run_dir = tmp_path / f"compile-{compile}"
        result = run_module(
            "vae.train",
            *QUICK,
            "model=mlp",
            "objective.variational=false",
            "epochs=1",
            f"speed.compile={compile}",
            f"hydra.run.dir={run_dir}",
            data_dir=data_dir,
        )  # a run that never exits (torch.compile's thread pool did that) times out here
        assert result.returncode == 0, result.stderr[-3000:]
        test_loss[compile] = json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/loss"]
    assert test_loss["true"] == pytest.approx(test_loss["false"], rel=1e-4)
