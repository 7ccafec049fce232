"""`python -m vae.train [key=value ...]`: compose the config, build the pieces, fit, test."""

import os
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from vae.callbacks import (
    LatentPictures,
    LossProgressBar,
    RunSummary,
    StopOnNonFiniteLoss,
    checkpoint_callbacks,
)
from vae.checkpoints import AtomicCheckpointIO, check_resumable, read_checkpoint, resume_file
from vae.config import check_choices, validate
from vae.data import build_datamodule
from vae.entry import run_then_exit
from vae.errors import UserError, exits_on_user_error
from vae.module import VAE


def settings_of(cfg: DictConfig) -> dict:
    """The settings a reported number depends on, as plain values."""
    choices = HydraConfig.get().runtime.choices
    recon = f"bce, {cfg.recon_reduction} over pixels" if cfg.recon == "bce" else f"{cfg.mse_scale} x mse"
    return {
        "dataset": cfg.dataset.name,
        "model": choices.get("model"),
        "experiment": choices.get("experiment"),
        "variational": cfg.variational,
        "latent_dim": cfg.latent_dim,
        "recon": recon,
        "kl_reduction": f"{cfg.kl_reduction} over latent dims",
        "binarize": cfg.binarize,
        "beta": cfg.beta,
        "kl_warmup_epochs": cfg.kl_warmup_epochs,
        "eps_std": cfg.eps_std,
        "sampler_std": cfg.sampler_std,
        "lr": cfg.lr,
        "adam_eps": cfg.adam_eps,
        "batch_size": cfg.batch_size,
        "epochs": cfg.epochs,
        "precision": cfg.precision,
        "seed": cfg.seed,
    }


def build_model(cfg: DictConfig, image_shape: tuple[int, int, int]) -> VAE:
    return VAE(
        image_shape=image_shape,
        latent_dim=cfg.latent_dim,
        model=OmegaConf.to_container(cfg.model, resolve=True),
        recon=cfg.recon,
        recon_reduction=cfg.recon_reduction,
        mse_scale=cfg.mse_scale,
        kl_reduction=cfg.kl_reduction,
        beta=cfg.beta,
        kl_warmup_epochs=cfg.kl_warmup_epochs,
        variational=cfg.variational,
        eps_std=cfg.eps_std,
        sampler_std=cfg.sampler_std,
        binarize=cfg.binarize,
        lr=cfg.lr,
        adam_eps=cfg.adam_eps,
    )


def train(cfg: DictConfig) -> None:
    validate(cfg)
    resume = resume_file(cfg.ckpt_path)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    datamodule = build_datamodule(OmegaConf.to_container(cfg.dataset, resolve=True), cfg.batch_size)
    datamodule.data_on_device = cfg.data_on_device
    try:
        model = build_model(cfg, datamodule.image_shape)
    except ValueError as error:  # a network the image size cannot fit, an unknown activation, ...
        raise UserError(f"{error} (model={HydraConfig.get().runtime.choices.get('model')})") from error
    if resume is not None:
        checkpoint = read_checkpoint(resume)
        check_resumable(checkpoint, model, cfg.epochs, resume)
        print(
            f"resuming from {resume} (epoch {checkpoint['epoch']}, global step {checkpoint['global_step']})"
        )
    model.use_fast_paths(channels_last=cfg.channels_last, compile=cfg.compile)
    trainer = build_trainer(cfg, run_dir)
    use_cached_gpu_check_without_gpus()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    trainer.test(model, datamodule=datamodule)


def use_cached_gpu_check_without_gpus() -> None:
    """On a machine without GPUs, lets ``torch.cuda.is_available()`` use its cached answer.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` at import, so that looking for GPUs
    does not start CUDA before processes fork. torch's Adam looks at every step, and where
    the NVML library is missing that look tries to load it again each time before falling
    back to CUDA's own (cached) count: 0.2-0.36 ms a step here, 5-7% of the bf16 MLP step of
    ``pytorch_examples_mnist``. Without a GPU there is no CUDA to start, so nothing is lost.
    """
    if torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


DEVICE_SETTINGS = ("accelerator", "devices", "strategy", "num_nodes", "precision")


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    """Lightning's Trainer as the config asks; device settings this machine cannot meet fail in one line."""
    try:
        return pl.Trainer(
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodules shard their own batches (IndexBatches)
            precision=cfg.precision,
            max_epochs=cfg.epochs,
            default_root_dir=run_dir,
            logger=TensorBoardLogger(run_dir, name="", version="", default_hp_metric=False),
            callbacks=[
                *checkpoint_callbacks(run_dir / "checkpoints"),
                StopOnNonFiniteLoss(check_every=cfg.progress_every),
                LatentPictures(**cfg.plots, seed=cfg.seed),
                RunSummary(settings_of(cfg)),
                LossProgressBar(refresh_rate=cfg.progress_every),
            ],
            **cfg.trainer,
        )
    except (
        MisconfigurationException,
        ValueError,
        ModuleNotFoundError,
    ) as error:  # no GPU, a typo, no torch_xla
        asked = ", ".join(f"{key}={cfg[key]}" for key in DEVICE_SETTINGS)
        raise UserError(
            f"{' '.join(str(error).split())} ({asked}); accelerator=auto devices=auto use what this machine has"
        ) from error


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@exits_on_user_error
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    exits_on_user_error(check_choices)(sys.argv[1:])
    run_then_exit(main)
