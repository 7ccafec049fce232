"""Checkpoints: written atomically, found for resuming, and loaded back safely."""

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from vae import schema
from vae.data import build_datamodule
from vae.errors import UserError, first_line
from vae.flows import FlowPrior
from vae.interrupts import BATCHES_DONE
from vae.module import VAE


def device_for(accelerator: str) -> str:
    """'cuda' or 'cpu' for an ``accelerator`` setting (auto | cpu | gpu)."""
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise UserError("accelerator=gpu but no CUDA GPU is visible; use accelerator=cpu or auto")
    if accelerator not in ("auto", "cpu", "gpu"):
        raise UserError(f"accelerator must be auto, cpu or gpu, got {accelerator!r}")
    return "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"


def checkpoint_file(path: str | Path) -> Path:
    """A ``.ckpt`` file itself, or a run directory's ``checkpoints/last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; give a .ckpt file or a run directory under outputs/")
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a hidden temporary file beside it, syncs it, then renames it.

    A crash or a kill -9 during the write leaves the previous ``last.ckpt`` whole: the rename
    is atomic on one filesystem, so the file is either the old checkpoint or the new one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)


def resume_file(ckpt_path: str | None, outputs: Path = Path("outputs")) -> Path | None:
    """The checkpoint ``ckpt_path=`` names: a ``.ckpt`` file, a run directory's ``last.ckpt``,
    or for ``last`` the newest ``checkpoints/last.ckpt`` of the runs under ``outputs/``."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) != "last":
        return checkpoint_file(ckpt_path)
    found = sorted(outputs.glob("**/checkpoints/last.ckpt"), key=lambda file: file.stat().st_mtime)
    if not found:
        raise UserError(
            f"ckpt_path=last, but no run under {outputs.resolve()} has a checkpoints/last.ckpt; "
            "give a .ckpt file or a run directory"
        )
    return found[-1]


def read_checkpoint(file: Path) -> dict:
    """The checkpoint's contents, loaded with ``weights_only=True`` (pickled code is refused)."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes make the unpickler raise almost anything
        raise UserError(f"{file} is not a loadable vae checkpoint ({_load_failure(error)})") from error


def _load_failure(error: Exception) -> str:
    """Why ``torch.load`` refused the file, without torch's advice to retry with weights_only=False.

    That advice would run whatever code the file carries; a vae.train checkpoint holds only
    tensors and plain values, so a file refused here is damaged, not a checkpoint, or unsafe.
    """
    text = str(error)
    if not text.startswith("Weights only load failed"):
        return first_line(error)
    boilerplate = ("Please file an issue", "Check the documentation")
    reasons = [
        line.strip() for line in text.splitlines()[1:] if line.strip() and not line.startswith(boilerplate)
    ]
    return f"it holds more than tensors and plain values: {reasons[0] if reasons else 'unreadable'}"


RESUMABLE = ("epoch", "global_step", "state_dict", "hyper_parameters")
PRIOR_FITTED_AFTER_TRAINING = "prior_fitted_after_training"  # vae.fit_prior's mark: no optimizer state


def check_resumable(checkpoint: Any, model: VAE, epochs: int, file: Path) -> None:
    """Refuse, in one line, a checkpoint this run cannot continue.

    One not written by ``vae.train``, one whose network differs from the one this run built,
    and one that has already trained the ``epochs`` asked for (Lightning would quietly do nothing).
    """
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in RESUMABLE):
        raise UserError(
            f"{file} is not a checkpoint written by python -m vae.train (no {', '.join(RESUMABLE)})"
        )
    if checkpoint.get(PRIOR_FITTED_AFTER_TRAINING):
        raise UserError(
            f"{file} holds a prior fitted after training (python -m vae.fit_prior), for vae.evaluate and "
            "vae.generate; resume from the run's own checkpoint"
        )
    saved = architecture(hyperparameters_of(checkpoint))
    for key, ours in architecture(model.hparams).items():
        theirs = saved[key]
        if ours != theirs:
            raise UserError(
                f"{file} was trained with {key}={theirs}, but this run asks for {key}={ours}; "
                f"resume with the checkpoint's settings, or leave out ckpt_path to start afresh"
            )
    # "epoch" counts from 0: saved at its end, or inside it (BATCHES_DONE) on a signal.
    done = checkpoint["epoch"] + (0 if checkpoint.get(BATCHES_DONE) else 1)
    if done >= epochs:
        raise UserError(
            f"{file} has already trained {done} epochs and this run asks for epochs={epochs}; "
            f"ask for more to train on, or evaluate it: python -m vae.evaluate ckpt={file}"
        )


def architecture(hyperparameters: dict) -> dict:
    """The settings that fix the weights' shapes: a checkpoint can only resume a run that agrees."""
    return {
        "image_shape": list(hyperparameters["image_shape"]),
        "latent_dim": hyperparameters["latent_dim"],
        "model": {"conditional": False, **hyperparameters["model"]},  # older checkpoints: unconditional
        "classes": hyperparameters.get("classes", 0),
        "objective.variational": hyperparameters["objective"].get("variational", True),
    }


def hyperparameters_of(checkpoint: dict) -> dict:
    """The model's arguments a checkpoint holds. One written before the settings had groups
    (``recon``, ``lr``, ... at the top) is regrouped, so older checkpoints still load."""
    saved = dict(checkpoint["hyper_parameters"])
    if "objective" in saved:
        return saved
    groups = {"objective": schema.Objective, "optim": schema.Optim}
    regrouped = {
        group: {item.name: saved.pop(item.name) for item in fields(kind) if item.name in saved}
        for group, kind in groups.items()
    }
    return {**saved, **regrouped}


def load_run(
    path: str | Path, batch_size: int, dataset_root: str | None, device: str
) -> tuple[VAE, pl.LightningDataModule, Path]:
    """The model (in eval mode), its datamodule and the checkpoint file.

    Loading uses ``weights_only=True``: a checkpoint that carries pickled code is refused,
    not run. ``dataset_root`` replaces the data folder recorded at training time.
    """
    file = checkpoint_file(path)
    checkpoint = read_checkpoint(file)
    try:
        model = VAE(**hyperparameters_of(checkpoint))
        model.load_state_dict(checkpoint["state_dict"])
        model.on_load_checkpoint(checkpoint)
    except Exception as error:  # a dict of the wrong shape: not written by vae.train
        raise UserError(f"{file} is not a loadable vae checkpoint ({first_line(error)})") from error
    dataset = dict(checkpoint.get("datamodule_hyper_parameters", {}))
    if not dataset:
        raise UserError(f"{file} records no dataset; it was not written by python -m vae.train")
    dataset.pop("batch_size", None)
    if dataset_root is not None:
        dataset["root"] = dataset_root
    model.use_fast_paths(channels_last=True, compile=False)  # faster conv decoding, same numbers
    return model.to(device).eval(), build_datamodule(dataset, batch_size), file


def with_fitted_prior(checkpoint: dict, flow: FlowPrior, layers: int) -> dict:
    """The checkpoint's model with the flow as its prior; no optimizer state: not to be resumed."""
    hyperparameters = hyperparameters_of(checkpoint)
    hyperparameters["objective"] = {
        **hyperparameters["objective"],
        "prior": "flow",
        "prior_flow_layers": layers,
        "free_bits": 0.0,  # settings of training's loss that a learned prior refuses; training is over
        "kl_reduction": "sum",
    }
    flow_state = {f"prior_flow.{name}": value.cpu() for name, value in flow.state_dict().items()}
    kept = ("epoch", "global_step", "precision", "datamodule_hyper_parameters")
    return {
        **{key: checkpoint[key] for key in kept if key in checkpoint},
        "hyper_parameters": hyperparameters,
        "state_dict": {**checkpoint["state_dict"], **flow_state},
        PRIOR_FITTED_AFTER_TRAINING: True,
    }
