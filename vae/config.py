"""Checks of the composed config, so a typo fails before any data is loaded or trained on."""

from pathlib import Path

from omegaconf import DictConfig

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


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key} must be a positive integer, got {value!r}; e.g. {key}=16")


def validate(cfg: DictConfig) -> None:
    """Raise a ``UserError`` naming the first bad top-level value and what to use instead."""
    for key in ("latent_dim", "batch_size", "epochs", "progress_every"):
        _positive_int(cfg, key)
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
    if cfg.binarize != "none" and "binarize" not in cfg.dataset:
        raise UserError(f"binarize={cfg.binarize} is for MNIST-family data, not dataset={cfg.dataset.name}")
