"""Checks of the composed config, so a typo fails before any data is loaded or trained on."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vae.errors import UserError
from vae.module import BINARIZATIONS, SAMPLER_STDS
from vae.objectives import RECONSTRUCTIONS, REDUCTIONS

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("dataset", "model", "experiment")
# Lightning's "16-true" and "bf16-true" would meet the loss terms, kept in fp32, with half weights.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def check_choices(overrides: list[str]) -> None:
    """Refuse an unknown ``dataset=``, ``model=`` or ``experiment=`` in one line.

    Runs before Hydra composes the config: Hydra's own error spreads over several lines.
    Sweeps (``dataset=mnist,fashion_mnist``) are checked choice by choice.
    """
    for override in overrides:
        key, assigned, value = override.partition("=")
        group = key.lstrip("+~")
        if not assigned or group not in GROUPS or "(" in value:  # leave sweep functions to Hydra
            continue
        choices = sorted(path.stem for path in (CONF / group).glob("*.yaml"))
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
    for key in ("variational", "channels_last", "compile", "data_on_device"):
        if not isinstance(cfg[key], bool):
            raise UserError(f"{key} must be true or false, got {cfg[key]!r}")
    for key in ("beta", "lr", "adam_eps", "mse_scale", "eps_std", "kl_warmup_epochs"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int | float) or cfg[key] < 0:
            raise UserError(f"{key} must be a non-negative number, got {cfg[key]!r}")
    if cfg.eps_std == 0:  # the KL reads log(eps_std^2) into the posterior's variance
        raise UserError("eps_std must be positive (1 for the textbook sampler, 0.1 for seed 004's), got 0")
    if cfg.binarize != "none" and "binarize" not in cfg.dataset:
        raise UserError(f"binarize={cfg.binarize} is for MNIST-family data, not dataset={cfg.dataset.name}")
