"""A run stopped by SIGTERM (a cluster's notice before preemption) or Ctrl-C saves its state first."""

import shlex
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl

from vae.errors import RunStopped

# The checkpoint key of a run saved inside an epoch: the batches of that epoch already trained.
BATCHES_DONE = "batches_done_in_epoch"


def resume_command(overrides: list[str], run_dir: Path) -> str:
    """The command that resumes the run made by ``overrides`` from its folder ``run_dir``."""
    kept = [override for override in overrides if not override.startswith("ckpt_path=")]
    return shlex.join(["python", "-m", "vae.train", *kept, f"ckpt_path={run_dir}"])


class StopOnSignal(pl.Callback):
    """Saves ``checkpoint`` at the end of the batch in progress when SIGTERM or SIGINT arrives,
    then stops the run with one line naming the checkpoint and the command that resumes it.

    Lightning notes SIGTERM itself (``trainer.received_sigterm``); Ctrl-C is caught here for the
    length of ``fit``, so that it too ends at a batch boundary, never inside an optimizer step.
    A second Ctrl-C stops at once, as Ctrl-C does by default. A signal in the epoch's last batch
    or its validation stops after the epoch, once its checkpoint is written.
    """

    def __init__(self, checkpoint: Path, resume: str) -> None:
        self.checkpoint = checkpoint
        self.resume = resume
        self.received: str | None = None
        self.batches_done: int | None = None
        self.previous_handler = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGINT, self._receive)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None

    def _receive(self, signum: int, frame: object) -> None:
        if self.received == "SIGINT":
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def _signal(self, trainer: pl.Trainer) -> str | None:
        return self.received or ("SIGTERM" if trainer.received_sigterm else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        received = self._signal(trainer)
        batches = trainer.num_training_batches
        if received is None or batch_idx + 1 >= batches:
            return
        self.batches_done = batch_idx + 1
        self._save(trainer)
        where = f"epoch {trainer.current_epoch + 1}, batch {batch_idx + 1} of {batches}"
        self._stop(received, f"{where} (global step {trainer.global_step})")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        received = self._signal(trainer)
        if received is None:
            return
        self._save(trainer)
        if trainer.current_epoch + 1 < trainer.max_epochs:
            self._stop(received, f"the end of epoch {trainer.current_epoch + 1}")
        raise RunStopped(
            f"{received} after the last epoch, before the test; saved {self.checkpoint}. "
            f"Evaluate it with: python -m vae.evaluate ckpt={self.checkpoint}",
            128 + signal.Signals[received].value,
        )

    def _save(self, trainer: pl.Trainer) -> None:
        """The whole state (optimizer, loops, callbacks) a resume needs; asked for by name, since
        Lightning announces the default it falls back to."""
        trainer.save_checkpoint(self.checkpoint, weights_only=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.batches_done is not None:
            checkpoint[BATCHES_DONE] = self.batches_done

    def _stop(self, received: str, where: str) -> None:
        raise RunStopped(
            f"{received} at {where}; saved {self.checkpoint}. Resume with: {self.resume}",
            128 + signal.Signals[received].value,
        )

    def stopped_elsewhere(self) -> RunStopped:
        """The message for a SIGTERM that Lightning acted on outside a training batch (validation, test)."""
        kept = (
            f"the last checkpoint is {self.checkpoint}" if self.checkpoint.exists() else "no checkpoint yet"
        )
        return RunStopped(
            f"SIGTERM during validation or testing; {kept}. Resume with: {self.resume}",
            128 + signal.SIGTERM.value,
        )
