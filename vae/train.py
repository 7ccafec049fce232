"""`python -m vae.train [key=value ...]`: compose the config, build the pieces, fit, test."""

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
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
from vae.config import check_arguments, compose_run_config, register_schema, validate
from vae.data import build_datamodule
from vae.errors import UserError, exits_on_user_error
from vae.interrupts import BATCHES_DONE, StopOnSignal, resume_command
from vae.module import VAE
from vae.precision import choose_precision, machine


def settings_of(values: dict, precision: str, reason: str) -> dict:
    """The settings a reported number depends on, as plain values (metrics.json, TensorBoard's HParams)."""
    choices = HydraConfig.get().runtime.choices
    return {
        "dataset": values["dataset"]["name"],
        "model": choices.get("model"),
        "experiment": choices.get("experiment"),
        **{key: values[key] for key in ("latent_dim", "batch_size", "epochs", "seed")},
        "objective": values["objective"],
        "optim": values["optim"],
        "precision": precision,
        "precision_reason": reason,
        **machine(),
    }


def build_model(values: dict, image_shape: tuple[int, int, int], classes: int = 0) -> VAE:
    """The model a validated config describes (``vae.config.validate``'s plain values)."""
    args = (values["latent_dim"], values["model"], values["objective"], values["optim"])
    return VAE(image_shape, *args, classes=classes)


def label_classes(values: dict, datamodule: pl.LightningDataModule) -> int:
    """How many classes a conditional model's labels have (0 for an unconditional one)."""
    if not values["model"].get("conditional"):
        return 0
    datamodule.prepare_data()  # the Cartoon Set's classes are known once its CSVs are read
    datamodule.setup("fit")
    return len(datamodule.class_names or [])


def train(cfg: DictConfig, run_dir: Path | None = None) -> float:
    """Fit and test the model ``cfg`` describes in ``run_dir`` (Hydra's output folder unless
    given); the best validation loss, for sweepers."""
    values = validate(cfg)
    speed = values["speed"]
    if speed["keep_freed_memory"]:
        keep_freed_memory()
    precision, reason = choose_precision(values["trainer"]["precision"], values["accelerator"])
    rank_zero_only(print)(f"precision={precision}: {reason}")
    resume = resume_file(values["ckpt_path"])
    pl.seed_everything(values["seed"], workers=True)
    run_dir = run_dir or Path(HydraConfig.get().runtime.output_dir)
    datamodule = build_datamodule(values["dataset"], values["batch_size"])
    datamodule.data_on_device = speed["data_on_device"]
    try:
        model = build_model(values, datamodule.image_shape, label_classes(values, datamodule))
    except ValueError as error:  # a network the image size cannot fit, ...
        raise UserError(f"{error} (model={HydraConfig.get().runtime.choices.get('model')})") from error
    if resume is not None:
        checkpoint = read_checkpoint(resume)
        check_resumable(checkpoint, model, values["epochs"], resume)
        datamodule.resume_batches = checkpoint.get(BATCHES_DONE, 0)
        inside = f", batch {datamodule.resume_batches} of it" if datamodule.resume_batches else ""
        print(
            f"resuming from {resume} (epoch {checkpoint['epoch']}, global step {checkpoint['global_step']}{inside})"
        )
    model.use_fast_paths(channels_last=speed["channels_last"], compile=speed["compile"])
    stop_on_signal = StopOnSignal(
        run_dir / "checkpoints" / "last.ckpt", resume_command(HydraConfig.get().overrides.task, run_dir)
    )
    callbacks = [
        *checkpoint_callbacks(run_dir / "checkpoints"),
        StopOnNonFiniteLoss(check_every=speed["progress_every"]),
        LatentPictures(**values["plots"], seed=values["seed"]),
        RunSummary(settings_of(values, precision, reason)),
        LossProgressBar(refresh_rate=speed["progress_every"]),
        stop_on_signal,
    ]
    trainer = build_trainer(values, run_dir, precision, callbacks)
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


def build_trainer(values: dict, run_dir: Path, precision: str, callbacks: list[pl.Callback]) -> pl.Trainer:
    """Lightning's Trainer as the config asks; device settings this machine cannot meet fail in one line."""
    options = {**values["trainer"], "precision": precision}
    try:
        return pl.Trainer(
            accelerator=values["accelerator"],
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodules shard their own batches (IndexBatches)
            max_epochs=values["epochs"],
            default_root_dir=run_dir,
            logger=TensorBoardLogger(run_dir, name="", version="", default_hp_metric=False),
            callbacks=callbacks,
            **options,
        )
    except (
        MisconfigurationException,
        ValueError,
        ModuleNotFoundError,
    ) as error:  # no GPU, a typo, no torch_xla
        trainer = values["trainer"]
        asked = ", ".join(
            [f"accelerator={values['accelerator']}"]
            + [f"trainer.{key}={trainer[key]}" for key in ("devices", "strategy", "num_nodes", "precision")]
        )
        raise UserError(
            f"{' '.join(str(error).split())} ({asked}); accelerator=auto trainer.devices=auto use what this machine has"
        ) from error


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="config")
@exits_on_user_error
def run(cfg: DictConfig) -> float:
    return train(cfg)


def fit_and_test(overrides: Sequence[str], run_dir: str | Path) -> Path:
    """What ``python -m vae.train <overrides>`` does, from Python (a notebook, a script):
    the run's files go to ``run_dir``, which it returns."""
    check_arguments(list(overrides))
    cfg = compose_run_config(*overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the choices and overrides a run records
    with open_dict(cfg):
        del cfg["hydra"]
    train(cfg, Path(run_dir))
    return Path(run_dir)


def main() -> None:
    """``python -m vae.train`` and ``vae-train``: the command line's keys checked, then the run."""
    register_schema()
    exits_on_user_error(check_arguments)(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
