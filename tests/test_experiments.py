"""Every tutorial preset composes to the tutorial's settings and trains a few batches."""

import json
import math
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from tests.conftest import CONF, SHARED_DATA
from vae.config import compose_run_config
from vae.errors import UserError
from vae.train import train

EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))

# What each tutorial states (../shared/SEEDS.md), as (config key, value) pairs.
TUTORIAL_SETTINGS = {
    "keras_fashion32": {
        "dataset.name": "fashion_mnist",
        "dataset.pad_to": 32,
        "dataset.val_size": 0,  # trains on all 60k, validates on the test set
        "model.init": "glorot",  # Keras' defaults: init and Adam's epsilon
        "optim.adam_eps": 1e-7,
        "latent_dim": 2,
        "objective.recon": "bce",
        "batch_size": 10,
        "epochs": 30,
    },
    "learnopencv_fashion": {
        "dataset.name": "fashion_mnist",
        "latent_dim": 2,
        "objective.recon": "mse",
        "objective.mse_scale": 1000.0,
        "optim.lr": 5e-4,
        "batch_size": 128,
    },
    "learnopencv_cartoon": {
        "dataset.name": "cartoon",
        "dataset.image_size": 256,
        "latent_dim": 200,
        "objective.recon": "mse",
        "batch_size": 128,
    },
    "lab_mnist_mlp": {
        "dataset.name": "mnist",
        "model.hidden": [512],
        "dataset.val_size": 0,
        "latent_dim": 2,
        "objective.sampler_std": "exp_logvar",
        "objective.recon_reduction": "sum",
        "batch_size": 256,
        "epochs": 10,
    },
    "slides_mnist_conv": {
        "dataset.name": "mnist",
        "model.encoder_dense": [20],
        "objective.recon_reduction": "sum",
        "objective.kl_reduction": "mean",
    },
    "upm_fashion_dense": {
        "dataset.name": "fashion_mnist",
        "model.hidden": [],
        "latent_dim": 256,
        "objective.eps_std": 0.1,
        "objective.sampler_std": "exp_logvar",
        "objective.recon_reduction": "mean",
        "objective.kl_reduction": "mean",
        "epochs": 10,
    },
    "pytorch_examples_mnist": {
        "dataset.name": "mnist",
        "model.hidden": [400],
        "dataset.val_size": 0,
        "latent_dim": 20,
        "optim.lr": 1e-3,
        "batch_size": 128,
        "epochs": 10,
        "seed": 1,
    },
    # Not a tutorial: the likelihood literature's protocol (IWAE paper, pythae).
    "mnist_binarized_conv": {
        "dataset.name": "mnist",
        "objective.binarize": "dynamic",
        "objective.recon": "bce",
        "objective.recon_reduction": "sum",
        "objective.kl_reduction": "sum",
    },
    # Not a tutorial: the same recipe on Fashion-MNIST (the Exemplar VAE paper's benchmark).
    "fashion_binarized_conv": {
        "dataset.name": "fashion_mnist",
        "objective.binarize": "dynamic",
        "objective.recon_reduction": "sum",
        "objective.kl_warmup_epochs": 5,
        "optim.schedule": "cosine",
        "latent_dim": 32,
        "epochs": 150,
    },
    # Not a tutorial: that recipe with the VampPrior (Tomczak & Welling 2018), annealed.
    "fashion_binarized_vamp": {
        "dataset.name": "fashion_mnist",
        "objective.binarize": "dynamic",
        "objective.prior": "vamp",
        "objective.prior_components": 500,
        "optim.schedule": "cosine",
        "latent_dim": 32,
        "epochs": 70,
    },
    # Not a tutorial: the MNIST recipe with the VampPrior, annealed over 60 epochs.
    "mnist_binarized_vamp": {
        "dataset.name": "mnist",
        "objective.binarize": "dynamic",
        "objective.prior": "vamp",
        "objective.prior_components": 500,
        "objective.kl_warmup_epochs": 5,
        "optim.schedule": "cosine",
        "latent_dim": 32,
        "epochs": 60,
    },
    # Not a tutorial: the same protocol on a residual network, with free bits, annealed over 150 epochs.
    "mnist_binarized_resnet": {
        "dataset.name": "mnist",
        "objective.binarize": "dynamic",
        "objective.recon_reduction": "sum",
        "objective.free_bits": 0.05,
        "model.residual_blocks": 1,
        "model.activation": "elu",
        "model.batch_norm": False,
        "optim.schedule": "cosine",
        "latent_dim": 32,
        "epochs": 150,
    },
    # Not a tutorial: that recipe cut to about 2 hours on 2 CPU cores without AMX.
    "mnist_binarized_resnet_cpu": {
        "dataset.name": "mnist",
        "objective.binarize": "dynamic",
        "objective.free_bits": 0.05,
        "model.residual_blocks": 1,
        "model.batch_norm": False,
        "model.decoder_channels": [64, 32, 16],
        "model.decoder_strides": [1, 2, 2],
        "optim.schedule": "cosine",
        "latent_dim": 32,
        "epochs": 100,
    },
    # Not a tutorial: the Cartoon Set's first density baseline (bits per dimension).
    "cartoon_density": {
        "dataset.name": "cartoon",
        "dataset.image_size": 64,
        "objective.recon": "gaussian",
        "latent_dim": 200,
    },
    # Not a tutorial: Higgins et al.'s beta-VAE, beta = 4.
    "beta_vae_fashion": {
        "dataset.name": "fashion_mnist",
        "model.family": "conv",
        "latent_dim": 10,
        "objective.beta": 4.0,
        "objective.recon_reduction": "sum",
    },
}


def composed(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    cfg = compose_run_config(*overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_every_experiment_is_checked_against_its_tutorial():
    assert set(EXPERIMENTS) == set(TUTORIAL_SETTINGS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sets_the_tutorials_values(name: str):
    cfg = composed(f"experiment={name}")
    for key, expected in TUTORIAL_SETTINGS[name].items():
        value = cfg
        for part in key.split("."):
            value = value[part]
        assert value == expected, key


RUNS = [(name, True) for name in EXPERIMENTS] + [
    (name, False) for name in ("keras_fashion32", "learnopencv_fashion")
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "variational"), RUNS, ids=[f"{n}-{'vae' if v else 'ae'}" for n, v in RUNS])
def test_experiment_trains_and_tests_a_few_batches(name, variational, data_dir, tmp_path):
    """The Keras notebook and LearnOpenCV also train their net as a plain autoencoder."""
    overrides = [
        f"experiment={name}",
        f"objective.variational={variational}",
        f"data_dir={data_dir}",
        "accelerator=cpu",
        "+trainer.fast_dev_run=2",
        "plots.scatter_points=64",
        "plots.grid_size=2",
    ]
    if name in ("learnopencv_cartoon", "cartoon_density"):  # 40 real avatars at 64 px, cached in tmp
        overrides += [
            f"dataset.root={SHARED_DATA / 'cartoonset'}",
            f"dataset.cache_dir={tmp_path}",
            "dataset.limit=40",
            "dataset.image_size=64",
        ]
    train(composed(*overrides, run_dir=tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert math.isfinite(metrics["test/loss"])
    assert name == "cartoon_density" or metrics["test/recon"] > 0  # a density's -log p can be negative
    assert ("test/kl" in metrics) == variational
    assert (tmp_path / "reconstructions.png").exists()


@pytest.mark.slow
def test_two_cpu_runs_with_the_same_seed_log_identical_losses(data_dir, tmp_path):
    def losses(run_dir: Path, seed: int) -> dict:
        overrides = [
            "experiment=slides_mnist_conv",
            f"data_dir={data_dir}",
            "accelerator=cpu",
            "epochs=2",
            f"seed={seed}",
        ]
        overrides += [
            "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "plots.scatter_points=64",
        ]
        train(composed(*overrides, run_dir=run_dir))
        return json.loads((run_dir / "metrics.json").read_text())["metrics"]

    first, second, other_seed = (
        losses(tmp_path / "a", 0),
        losses(tmp_path / "b", 0),
        losses(tmp_path / "c", 1),
    )
    assert first == second
    assert first["train/loss"] != other_seed["train/loss"]


def test_an_image_size_the_network_cannot_fit_is_one_line_before_any_data_is_read(tmp_path):
    cfg = composed(
        "dataset=cartoon", "dataset.image_size=48", f"dataset.root={tmp_path / 'absent'}", run_dir=tmp_path
    )
    with pytest.raises(
        UserError,
        match=r"image size 48x48 is not divisible by the decoder's total stride 32; change the strides or the image size \(model=for_cartoon\)",
    ):
        train(cfg)
