"""Every config group choice composes, and bad top-level values are refused before training."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from vae.config import check_choices, validate
from vae.errors import UserError
from vae.nets import FAMILIES

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def choices(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", choices("dataset"))
@pytest.mark.parametrize("model", choices("model"))
def test_every_dataset_and_model_choice_composes_and_validates(dataset: str, model: str):
    cfg = composed(f"dataset={dataset}", f"model={model}", "data_dir=/somewhere")
    assert cfg.model.family in FAMILIES
    assert cfg.dataset.name
    assert str(cfg.dataset.root).startswith("/somewhere")
    validate(cfg)


def test_defaults_are_the_fashion_mnist_conv_vae_with_a_2d_latent():
    cfg = composed()
    assert (cfg.dataset.name, cfg.model.family, cfg.latent_dim, cfg.recon, cfg.beta) == (
        "fashion_mnist",
        "conv",
        2,
        "bce",
        1.0,
    )


def test_data_dir_defaults_to_the_environment_variable(monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", "/from/env")
    assert composed().dataset.root == "/from/env"
    monkeypatch.delenv("VAE_DATA_DIR")
    assert composed().dataset.root == "data"


@pytest.mark.parametrize(
    "override",
    [
        "latent_dim=0",
        "latent_dim=-3",
        "latent_dim=abc",
        "latent_dim=2.5",
        "batch_size=0",
        "epochs=0",
        "recon=l1",
        "beta=-1",
        "binarize=sometimes",
        "progress_every=0",
        "precision=16-true",
        "precision=bf16-true",
        "eps_std=0",
        "plots.scatter_points=1",
    ],
)
def test_bad_values_are_refused_with_the_key_named(override: str):
    key = override.split("=")[0]
    with pytest.raises(UserError, match=key):
        validate(composed(override))


def test_binarizing_is_refused_for_data_that_are_not_mnist_like():
    validate(composed("binarize=static", "dataset=mnist"))
    with pytest.raises(UserError, match="binarize=static is for MNIST-family data"):
        validate(composed("binarize=static", "dataset=cartoon"))


def test_group_choices_are_checked_one_by_one_in_sweeps():
    check_choices(["dataset=mnist,fashion_mnist", "model=mlp", "latent_dim=3", "experiment=null"])
    with pytest.raises(
        UserError, match="unknown dataset 'fashon_mnist'; choose one of cartoon, fashion_mnist, mnist"
    ):
        check_choices(["dataset=mnist,fashon_mnist"])


def test_a_users_own_presets_from_config_dir_or_searchpath_are_accepted(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nlatent_dim: 3\n")
    check_choices(["--config-dir", str(tmp_path), "experiment=mine"])
    check_choices([f"--config-dir={tmp_path}", "experiment=mine,seed001_fashion"])
    check_choices([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    check_choices(["hydra.searchpath=[pkg://elsewhere.conf]", "experiment=anything"])  # Hydra decides
    with pytest.raises(UserError, match="unknown experiment 'mine'"):
        check_choices(["experiment=mine"])
    with pytest.raises(UserError, match="unknown experiment 'yours'; choose one of mine, "):
        check_choices(["-cd", str(tmp_path), "experiment=yours"])
