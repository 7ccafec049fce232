"""Loading a trained run back: the model and the data it was trained on, safely."""

from pathlib import Path

import pytorch_lightning as pl
import torch

from vae.data import build_datamodule
from vae.errors import UserError
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


def load_run(
    path: str | Path, batch_size: int, dataset_root: str | None, device: str
) -> tuple[VAE, pl.LightningDataModule, Path]:
    """The model (in eval mode), its datamodule and the checkpoint file.

    Loading uses ``weights_only=True``: a checkpoint that carries pickled code is refused,
    not run. ``dataset_root`` replaces the data folder recorded at training time.
    """
    file = checkpoint_file(path)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
        model = VAE.load_from_checkpoint(file, map_location=device, weights_only=True)
    except Exception as error:  # arbitrary bytes make the unpickler raise almost anything
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{file} is not a loadable vae checkpoint ({first_line})") from error
    dataset = dict(checkpoint.get("datamodule_hyper_parameters", {}))
    if not dataset:
        raise UserError(f"{file} records no dataset; it was not written by python -m vae.train")
    dataset.pop("batch_size", None)
    if dataset_root is not None:
        dataset["root"] = dataset_root
    return model.eval(), build_datamodule(dataset, batch_size), file
