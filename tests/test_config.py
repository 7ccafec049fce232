"""Every config group choice composes; bad keys and values are refused in one line before training."""

import pytest

from tests.conftest import CONF
from vae import config, schema
from vae.config import check_arguments, compose_run_config, validate
from vae.errors import UserError


def choices(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("dataset", choices("dataset"))
@pytest.mark.parametrize("model", choices("model"))
def test_every_dataset_and_model_choice_composes_and_validates(dataset: str, model: str):
    cfg = compose_run_config(f"dataset={dataset}", f"model={model}", "data_dir=/somewhere")
    assert cfg.model.family in ("mlp", "conv")
    assert cfg.dataset.name
    assert str(cfg.dataset.root).startswith("/somewhere")
    validate(cfg)


def test_defaults_are_the_fashion_mnist_conv_vae_with_a_2d_latent():
    cfg = compose_run_config()
    assert (cfg.dataset.name, cfg.model.family, cfg.latent_dim) == ("fashion_mnist", "conv", 2)
    assert (cfg.objective.recon, cfg.objective.beta, cfg.trainer.precision) == ("bce", 1.0, "auto")
    assert list(cfg.model.encoder_channels) == [32, 64, 64, 64]  # LearnOpenCV's Fashion-MNIST net


def test_choosing_the_cartoon_set_chooses_its_network_loss_and_latent_size_unless_told_otherwise():
    cfg = compose_run_config("dataset=cartoon")
    assert (cfg.latent_dim, cfg.objective.recon, cfg.batch_size) == (200, "mse", 32)
    assert list(cfg.model.encoder_strides) == [2, 2, 2, 2, 2]  # the cartoon net
    told = compose_run_config("dataset=cartoon", "model=mlp", "latent_dim=16", "objective.recon=bce")
    assert (told.model.family, told.latent_dim, told.objective.recon) == ("mlp", 16, "bce")
    assert compose_run_config("dataset=mnist").latent_dim == 2  # the MNIST family chooses nothing more


def test_data_dir_defaults_to_the_environment_variable(monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", "/from/env")
    assert compose_run_config().dataset.root == "/from/env"
    monkeypatch.delenv("VAE_DATA_DIR")
    assert compose_run_config().dataset.root == "data"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("latent_dim=0", "latent_dim must be at least 1, got 0; e.g. latent_dim=16"),
        ("latent_dim=-3", "latent_dim must be at least 1, got -3"),
        ("latent_dim=abc", "latent_dim must be an integer, got 'abc'"),
        ("latent_dim=2.5", "latent_dim must be an integer, got 2.5"),
        ("batch_size=0", "batch_size must be at least 1"),
        ("epochs=0", "epochs must be at least 1"),
        ("objective.recon=l1", "objective.recon must be one of bce, mse, gaussian, got 'l1'"),
        ("objective.beta=-1", "objective.beta must be at least 0"),
        ("objective.binarize=sometimes", "objective.binarize must be one of none, dynamic, static"),
        ("objective.variational=maybe", "objective.variational must be true or false, got 'maybe'"),
        ("speed.progress_every=0", "speed.progress_every must be at least 1"),
        ("trainer.precision=16-true", "trainer.precision must be one of auto, 32-true, bf16-mixed, 16-mixed"),
        ("objective.eps_std=0", "objective.eps_std must be above 0, got 0"),
        ("optim.lr=0", "optim.lr must be above 0"),
        ("plots.scatter_points=1", "plots.scatter_points must be at least 2"),
        ("model.activation=tanh", "model.activation must be one of relu, leaky_relu, elu, got 'tanh'"),
        ("dataset.val_size=-1", "dataset.val_size must be at least 0"),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_what_it_allows(override: str, message: str):
    with pytest.raises(UserError) as refused:
        validate(compose_run_config(override))
    assert str(refused.value).startswith(message)


def test_binarizing_is_refused_for_data_that_are_not_mnist_like():
    validate(compose_run_config("objective.binarize=static", "dataset=mnist"))
    with pytest.raises(UserError, match="objective.binarize=static is for MNIST-family data"):
        validate(compose_run_config("objective.binarize=static", "dataset=cartoon"))


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("latnt_dim=3", "unknown key latnt_dim; did you mean latent_dim?"),
        ("lr=1e-3", "unknown key lr; did you mean optim.lr?"),  # a key that moved into its group
        ("recon=mse", "unknown key recon; did you mean objective.recon?"),
        (
            "trainer.foo=1",
            "unknown key trainer.foo; add another Lightning Trainer argument with +trainer.foo=1",
        ),
        (
            "dataset=mnist,fashon_mnist",
            "unknown dataset 'fashon_mnist'; choose one of cartoon, fashion_mnist, mnist",
        ),
        ("experiment=seed001_fashion", "unknown experiment 'seed001_fashion'; choose one of "),
    ],
)
def test_unknown_keys_and_choices_on_the_command_line_are_one_line(argument: str, message: str):
    with pytest.raises(UserError) as refused:
        check_arguments([argument])
    assert str(refused.value).startswith(message)


def test_known_keys_sweeps_and_additions_pass_the_command_line_check():
    check_arguments(["dataset=mnist,fashion_mnist", "model=mlp", "latent_dim=2,16", "experiment=null"])
    check_arguments(["model.hidden=[400]", "dataset.image_size=64", "+trainer.max_time=00:01:00", "-m"])
    check_arguments(["hydra.run.dir=/tmp/x", "trainer.gradient_clip_val=1.0", "objective.beta=4"])


def test_every_schema_field_is_documented_and_its_default_is_allowed():
    for group in (schema.Config, schema.Objective, schema.Optim, schema.Trainer, schema.Speed, schema.Plots,
                  *schema.NETWORKS.values(), *schema.DATASETS.values()):  # fmt: skip
        for item in schema.fields(group):
            assert item.metadata.get("help") or schema.is_dataclass(
                schema.get_type_hints(group)[item.name]
            ), item.name
    schema.check(schema.Objective, schema.defaults(schema.Objective))
    schema.check(schema.ConvNet, schema.defaults(schema.ConvNet))


def test_a_users_own_presets_from_config_dir_or_searchpath_are_accepted(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nlatent_dim: 3\n")
    check_arguments(["--config-dir", str(tmp_path), "experiment=mine"])
    check_arguments([f"--config-dir={tmp_path}", "experiment=mine,learnopencv_fashion"])
    check_arguments([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    check_arguments(["hydra.searchpath=[pkg://elsewhere.conf]", "experiment=anything"])  # Hydra decides
    with pytest.raises(UserError, match="unknown experiment 'mine'"):
        check_arguments(["experiment=mine"])
    with pytest.raises(
        UserError,
        match="unknown experiment 'yours'; choose one of beta_vae_fashion, cartoon_density, fashion_binarized_conv, ",
    ):
        check_arguments(["-cd", str(tmp_path), "experiment=yours"])


def test_the_configuration_page_is_the_schemas_own_description():
    page = (CONF.parent / "docs" / "configuration.md").read_text()
    assert page == schema.markdown(), "regenerate it: python -m vae.schema > docs/configuration.md"
    assert all(f"`{key}`" in page for key in schema.known_keys())


@pytest.mark.parametrize("missing", [None, ModuleNotFoundError("No module named 'hydra_plugins'")])
def test_an_optuna_search_without_its_plugin_is_one_line_saying_what_to_install(monkeypatch, missing):
    def find_spec(name):
        if missing:
            raise missing
        return None

    monkeypatch.setattr(config, "find_spec", find_spec)
    with pytest.raises(UserError, match=r"hparams_search=optuna needs Hydra's Optuna sweeper: pip install"):
        check_arguments(["hparams_search=optuna"])
    check_arguments(["hparams_search=null"])
