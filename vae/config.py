"""Checks of the composed config, so a typo fails before any data is loaded or trained on."""

from importlib.util import find_spec
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import vae.conf
from vae import schema
from vae.errors import UserError

GROUPS = ("dataset", "model", "experiment", "hparams_search")


def _arguments_after(flags: tuple[str, ...], arguments: list[str]) -> list[str]:
    """The values given to ``flags`` (``--config-dir DIR`` or ``--config-dir=DIR``)."""
    values = []
    for position, argument in enumerate(arguments):
        name, assigned, value = argument.partition("=")
        if name in flags:
            values.append(value if assigned else next(iter(arguments[position + 1 : position + 2]), ""))
    return values


def config_folders(arguments: list[str]) -> list[Path] | None:
    """Where Hydra will look for config groups: the package's configs, ``--config-dir`` and
    ``hydra.searchpath``'s ``file://`` folders; None where one cannot be listed from here."""
    if _arguments_after(("--config-path", "-cp"), arguments):
        return None  # another primary config folder: Hydra alone knows what it holds
    folders = [Path(vae.conf.__file__).parent]
    folders += [Path(folder) for folder in _arguments_after(("--config-dir", "-cd"), arguments)]
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key.lstrip("+") == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                scheme, _, folder = entry.strip().strip("'\"").partition("://")
                if scheme != "file":
                    return None
                folders.append(Path(folder))
    return folders


def group_choices(folders: list[Path], group: str) -> list[str]:
    """The config names of ``group`` across ``folders``."""
    return sorted({entry.stem for folder in folders for entry in (folder / group).glob("*.yaml")})


def check_arguments(arguments: list[str]) -> None:
    """Refuse, in one line, an unknown key or an unknown ``dataset=``, ``model=`` or ``experiment=``.

    Runs before Hydra composes the config: Hydra's own errors spread over several lines. Sweeps
    (``dataset=mnist,fashion_mnist``) are checked choice by choice; a user's own configs
    (``--config-dir``, ``hydra.searchpath``) count as choices. Keys that add (``+key=``) or
    delete (``~key``) and Hydra's own (``hydra.*``) are left to Hydra, as are values: the
    schema checks those once the config is composed.
    """
    folders = config_folders(arguments)
    known = schema.known_keys()
    for argument in arguments:
        key, assigned, value = argument.partition("=")
        if not assigned or key.startswith(("+", "~", "-", "hydra.")):
            continue
        if key in GROUPS:
            _check_choice(folders, key, value)
            if key == "hparams_search" and value != "null" and not _optuna_sweeper_installed():
                raise UserError(
                    f"hparams_search={value} needs Hydra's Optuna sweeper: pip install -e '.[sweep]'"
                )
        elif key not in known:
            near = schema.nearest_key(key, known)
            hint = f"; did you mean {near}?" if near else "; the keys: docs/configuration.md"
            if key.startswith("trainer."):
                hint = f"; add another Lightning Trainer argument with +{key}={value}"
            raise UserError(f"unknown key {key}{hint}")


def _optuna_sweeper_installed() -> bool:
    try:  # hydra_plugins, the namespace the plugin lives in, is absent without any Hydra plugin
        return find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:
        return False


def _check_choice(folders: list[Path] | None, group: str, value: str) -> None:
    if folders is None or "(" in value:  # another primary config folder, or a sweep function
        return
    choices = group_choices(folders, group)
    for choice in value.split(","):
        if choice not in choices and choice != "null":
            raise UserError(f"unknown {group} {choice!r}; choose one of {', '.join(choices)}")


def positive_int(cfg: DictConfig, key: str, least: int = 1) -> None:
    """Refuse ``cfg``'s ``key`` (dotted for nested keys) unless it is an integer >= ``least``."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        wanted = "a positive integer" if least == 1 else f"an integer of at least {least}"
        raise UserError(f"{key} must be {wanted}, got {value!r}; e.g. {key}={max(least, 16)}")


def one_of(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    """Refuse ``cfg``'s ``key`` unless it is one of ``choices``, naming them."""
    if cfg[key] not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}, got {cfg[key]!r}")


def require_checkpoint(cfg: DictConfig) -> None:
    """``vae.evaluate``, ``vae.generate`` and ``vae.fit_prior`` need ``ckpt=``: say so in one line, not Hydra's traceback."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise UserError(
            "ckpt= is required: a run directory (its checkpoints/last.ckpt is used) or a .ckpt file"
        )


def register_schema() -> None:
    """Hand Hydra the schema's defaults: the top level's and each dataset and network family's.

    ``conf/config.yaml`` composes ``schema`` first; the dataset and model files start from
    ``<family>_schema`` and list only what differs from it.
    """
    store = ConfigStore.instance()
    store.store(name="schema", node=schema.defaults(schema.Config))
    store.store(group="dataset", name="mnist_schema", node=schema.defaults(schema.MnistData))
    store.store(group="dataset", name="cartoon_schema", node=schema.defaults(schema.CartoonData))
    store.store(group="model", name="conv_schema", node=schema.defaults(schema.ConvNet))
    store.store(group="model", name="mlp_schema", node=schema.defaults(schema.MlpNet))


def compose_run_config(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
    """The config ``python -m vae.train <overrides>`` composes, from the package's configs."""
    register_schema()
    with initialize_config_module("vae.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def validate(cfg: DictConfig) -> dict:
    """The composed config as plain values, checked against the schema; a ``UserError`` names
    the first bad key and what it allows."""
    values = {  # resolved against the whole config; Hydra's own node stays out
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }
    dataset, model = values.pop("dataset"), values.pop("model")
    try:
        schema.check(schema.Config, values)
        schema.check(schema.DATASETS.get(dataset.get("name"), schema.MnistData), dataset, "dataset.")
        schema.check(schema.NETWORKS.get(model.get("family"), schema.ConvNet), model, "model.")
    except ValueError as error:
        raise UserError(str(error)) from error
    binarize = values["objective"]["binarize"]
    if binarize != "none" and "binarize" not in dataset:
        raise UserError(
            f"objective.binarize={binarize} is for MNIST-family data, not dataset={dataset['name']}"
        )
    return {**values, "dataset": dataset, "model": model}
