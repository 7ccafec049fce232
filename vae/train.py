"""`python -m vae.train [key=value ...]`: compose the config, build the pieces, fit, test."""

import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from vae.allocator import keep_freed_memory
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
from vae.errors import UserError, exits_on_user_error
from vae.interrupts import BATCHES_DONE, StopOnSignal, resume_command
from vae.module import VAE
from vae.precision import choose_precision, machine


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
        "precision_requested": cfg.precision,
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


def train(cfg: DictConfig) -> float:
    """Fit and test the model ``cfg`` describes; the best validation loss, for sweepers."""
    validate(cfg)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    precision, reason = choose_precision(cfg.precision, cfg.accelerator)
    rank_zero_only(print)(f"precision={precision}: {reason}")
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
        datamodule.resume_batches = checkpoint.get(BATCHES_DONE, 0)
        inside = f", batch {datamodule.resume_batches} of it" if datamodule.resume_batches else ""
        print(
            f"resuming from {resume} (epoch {checkpoint['epoch']}, global step {checkpoint['global_step']}{inside})"
        )
    model.use_fast_paths(channels_last=cfg.channels_last, compile=cfg.compile)
    settings = {**settings_of(cfg), "precision": precision, "precision_reason": reason, **machine()}
    stop_on_signal = StopOnSignal(
        run_dir / "checkpoints" / "last.ckpt", resume_command(HydraConfig.get().overrides.task, run_dir)
    )
    trainer = build_trainer(cfg, run_dir, precision, settings, stop_on_signal)
    try:
        with warnings.catch_warnings():
            # A run saved inside an epoch resumes at the next batch: the datamodule skips the
            # batches already trained (resume_batches), which Lightning cannot see.
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch")
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        trainer.test(model, datamodule=datamodule)
    except SIGTERMException as error:  # Lightning's own stop, in validation or testing
        raise stop_on_signal.stopped_elsewhere() from error
    best = trainer.checkpoint_callback.best_model_score
    return float("nan") if best is None else float(best)


DEVICE_SETTINGS = ("accelerator", "devices", "strategy", "num_nodes", "precision")


def build_trainer(
    cfg: DictConfig, run_dir: Path, precision: str, settings: dict, stop_on_signal: StopOnSignal
) -> pl.Trainer:
    """Lightning's Trainer as the config asks; device settings this machine cannot meet fail in one line."""
    try:
        return pl.Trainer(
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodules shard their own batches (IndexBatches)
            precision=precision,
            max_epochs=cfg.epochs,
            default_root_dir=run_dir,
            logger=TensorBoardLogger(run_dir, name="", version="", default_hp_metric=False),
            callbacks=[
                *checkpoint_callbacks(run_dir / "checkpoints"),
                StopOnNonFiniteLoss(check_every=cfg.progress_every),
                LatentPictures(**cfg.plots, seed=cfg.seed),
                RunSummary(settings),
                LossProgressBar(refresh_rate=cfg.progress_every),
                stop_on_signal,
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


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="config")
@exits_on_user_error
def run(cfg: DictConfig) -> float:
    return train(cfg)


def main() -> None:
    """``python -m vae.train`` and ``vae-train``: the config's group choices checked, then the run."""
    exits_on_user_error(check_choices)(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
