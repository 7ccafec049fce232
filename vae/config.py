"""Checks of the composed config, so a typo fails before any data is loaded or trained on."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import vae.conf
from vae.errors import UserError
from vae.module import BINARIZATIONS, SAMPLER_STDS
from vae.objectives import RECONSTRUCTIONS, REDUCTIONS
from vae.precision import PRECISIONS

GROUPS = ("dataset", "model", "experiment")


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
    names = set()
    for folder in folders:
        if (folder / group).is_dir():
            names |= {
                entry.name[: -len(".yaml")]
                for entry in (folder / group).iterdir()
                if entry.name.endswith(".yaml")
            }
    return sorted(names)


def check_choices(arguments: list[str]) -> None:
    """Refuse an unknown ``dataset=``, ``model=`` or ``experiment=`` in one line.

    Runs before Hydra composes the config: Hydra's own error spreads over several lines.
    Sweeps (``dataset=mnist,fashion_mnist``) are checked choice by choice; a user's own
    configs (``--config-dir``, ``hydra.searchpath``) count as choices.
    """
    folders = config_folders(arguments)
    if folders is None:
        return
    for argument in arguments:
        key, assigned, value = argument.partition("=")
        group = key.lstrip("+~")
        if not assigned or group not in GROUPS or "(" in value:  # leave sweep functions to Hydra
            continue
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


def require_checkpoint(cfg: DictConfig) -> None:
    """``vae.evaluate`` and ``vae.generate`` need ``ckpt=``: say so in one line, not Hydra's traceback."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise UserError(
            "ckpt= is required: a run directory (its checkpoints/last.ckpt is used) or a .ckpt file"
        )


def validate(cfg: DictConfig) -> None:
    """Raise a ``UserError`` naming the first bad top-level value and what to use instead."""
    for key in ("latent_dim", "batch_size", "epochs", "progress_every"):
        positive_int(cfg, key)
    positive_int(cfg, "plots.scatter_points", least=2)  # a principal plane needs two points
    for key, allowed in (
        ("recon", RECONSTRUCTIONS),
        ("recon_reduction", REDUCTIONS),
        ("kl_reduction", REDUCTIONS),
        ("binarize", BINARIZATIONS),
        ("sampler_std", SAMPLER_STDS),
        ("precision", PRECISIONS),
    ):
        if cfg[key] not in allowed:
            raise UserError(f"{key} must be one of {allowed}, got {cfg[key]!r}")
    for key in ("variational", "channels_last", "compile", "data_on_device", "keep_freed_memory"):
        if not isinstance(cfg[key], bool):
            raise UserError(f"{key} must be true or false, got {cfg[key]!r}")
    for key in ("beta", "lr", "adam_eps", "mse_scale", "eps_std", "kl_warmup_epochs"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int | float) or cfg[key] < 0:
            raise UserError(f"{key} must be a non-negative number, got {cfg[key]!r}")
    if cfg.eps_std == 0:  # the KL reads log(eps_std^2) into the posterior's variance
        raise UserError("eps_std must be positive (1 for the textbook sampler, 0.1 for seed 004's), got 0")
    if cfg.binarize != "none" and "binarize" not in cfg.dataset:
        raise UserError(f"binarize={cfg.binarize} is for MNIST-family data, not dataset={cfg.dataset.name}")
