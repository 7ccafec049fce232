"""Lightning's training loop around the same step: what ``python -m vae.train`` adds per batch.

Each turn is a short ``trainer.fit`` of the same model, in this thread (a second thread would
bring a second pool of torch threads to fight the first), timed between the starts of
consecutive batches: hooks, ``self.log``, the progress bar and the next batch's fetch.
"""

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytorch_lightning as pl
import torch

from bench.timing import Step, Variant
from bench.workloads import BATCH_SIZE, Workload
from vae.callbacks import LossProgressBar, StopOnNonFiniteLoss
from vae.precision import choose_precision


class BatchClock(pl.Callback):
    """Stamps the start of every training batch: the gaps are whole loop iterations."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        self.stamps.append(time.perf_counter())


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Keep Lightning's banners, progress bar (it writes to stdout) and warnings out of the report."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def lightning_variants(workload: Workload) -> list[Variant]:
    """The loop as ``vae.train`` runs it with the config's defaults, with a quieter bar, then bf16-mixed."""
    config, conv = workload.config, workload.config.model.family == "conv"
    precision = choose_precision(config.trainer.precision, "cpu")[0]  # what precision=auto picks here
    channels_last = bool(config.speed.channels_last) and conv
    switches = "".join(
        (", channels_last" if channels_last else "", ", compile" if config.speed.compile else "")
    )
    every = config.speed.progress_every
    today = Variant(
        f"Lightning fit as vae.train runs it ({precision}{switches}), bar every {every} steps",
        channels_last=channels_last,
        bf16=precision.startswith("bf16"),
        compile=config.speed.compile,
        lightning=True,
        refresh_rate=every,
    )
    layout = "channels_last + " if conv else ""
    return [
        today,
        replace(today, name=f"Lightning fit ({precision}{switches}), bar every 50 steps", refresh_rate=50),
        Variant(
            f"Lightning fit, {layout}bf16-mixed, bar every 50 steps",
            channels_last=conv,
            bf16=True,
            lightning=True,
            refresh_rate=50,
        ),
    ]


class LightningTrainee:
    """The variant's model trained by ``trainer.fit`` on the fast loader, a few batches per ``run``.

    Like ``vae.train`` without its logger, checkpoints and validation (they run between
    epochs): its progress bar and NaN check, every ``variant.refresh_rate`` steps;
    ``variant.bf16`` becomes ``precision='bf16-mixed'``.
    """

    def __init__(self, variant: Variant, workload: Workload) -> None:
        torch.manual_seed(0)
        self.variant = variant
        self.workload = workload
        self.model = workload.model()
        self.model.use_fast_paths(channels_last=variant.channels_last, compile=variant.compile)

    def run(self, steps: int) -> list[Step]:
        """``steps`` loop iterations, after one untimed batch that sets up the new fit's optimizer."""
        clock = BatchClock()
        with silenced():
            trainer = pl.Trainer(
                accelerator="cpu",
                devices=1,
                precision="bf16-mixed" if self.variant.bf16 else "32-true",
                max_steps=steps + 2,
                limit_val_batches=0,
                num_sanity_val_steps=0,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                callbacks=[
                    clock,
                    StopOnNonFiniteLoss(check_every=self.variant.refresh_rate),
                    LossProgressBar(refresh_rate=self.variant.refresh_rate),
                ],
                log_every_n_steps=self.workload.config.trainer.log_every_n_steps,
            )
            trainer.fit(self.model, train_dataloaders=self.workload.fast_loader())
        gaps = [later - earlier for earlier, later in zip(clock.stamps[1:], clock.stamps[2:], strict=False)]
        return [Step(BATCH_SIZE, 0.0, gap) for gap in gaps]
