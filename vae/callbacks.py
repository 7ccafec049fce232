"""Lightning callbacks that draw, log and save; the pictures themselves come from ``vae.plots``."""

import json
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from vae import plots
from vae.errors import UserError
from vae.evaluation import posterior, posterior_means
from vae.latents import manifold_grid, uniform_within
from vae.metrics import active_dimensions
from vae.module import VAE, to_unit_interval
from vae.objectives import gaussian_kl_per_dim


def checkpoint_callbacks(dirpath: str | Path) -> list[ModelCheckpoint]:
    """``best-epochNNN.ckpt`` by val/loss and a ``last.ckpt`` rewritten after every epoch.

    ``last.ckpt`` has its own unmonitored callback: a monitored ``ModelCheckpoint(save_last=
    True)`` rewrites it only when it also saves a new best (Lightning 2.6), leaving it stale.
    It saves at the end of each training epoch (after that epoch's validation, if any), so
    epochs that ``check_val_every_n_epoch`` leaves unvalidated are saved too.
    """
    best = ModelCheckpoint(
        dirpath=dirpath,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val/loss",
        mode="min",
        save_top_k=1,
    )
    last = ModelCheckpoint(
        dirpath=dirpath, filename="last", enable_version_counter=False, save_on_train_epoch_end=True
    )
    return [best, last]


class StopOnNonFiniteLoss(pl.Callback):
    """Stops at the first NaN or infinite training loss, before any checkpoint can store it.

    Each step only copies its loss into a window on its device (reading it back every step
    would stall a GPU, and one copy is the cheapest step-side work); the window is read every
    ``check_every`` steps, which the progress bar's refresh syncs anyway, and before validation
    and the epoch's checkpoint.
    """

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = check_every

    def on_train_start(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self._reset(pl_module)  # a run resumed inside an epoch starts there, without an epoch start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self._reset(pl_module)

    def _reset(self, pl_module: VAE) -> None:
        self.epoch_start_step: int | None = None
        self.losses = torch.zeros(self.check_every, device=pl_module.device)
        self.held = 0  # losses in the window, from batch index window_start on
        self.window_start = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.epoch_start_step is None:
            self.epoch_start_step = trainer.global_step - batch_idx // trainer.accumulate_grad_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.held == 0:
            self.window_start = batch_idx
        self.losses[self.held] = outputs["loss"].detach()
        self.held += 1
        if self.held == self.check_every:
            self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        # Every process reads every process's window: one that stopped alone would leave the
        # others waiting for it in the next gradient all-reduce.
        if self.held == 0:
            return  # checked at the window's end, just before
        bad = ~torch.isfinite(self.losses[: self.held])
        first = torch.where(bad.any(), bad.int().argmax(), -1)  # on the device: no sync yet
        marks = torch.stack([(first + self.window_start).float(), self.losses[first.clamp(min=0)]])
        marks = marks.where(first >= 0, torch.full_like(marks, -1))  # an empty window marks nothing
        self.held = 0
        marks = trainer.strategy.all_gather(marks).reshape(-1, 2)  # a row per process
        bad = marks[marks[:, 0] >= 0]
        if len(bad) == 0:
            return
        batch, loss = bad[bad[:, 0].argmin()].tolist()
        batch = int(batch)
        step = self.epoch_start_step + batch // trainer.accumulate_grad_batches
        last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise UserError(
            f"the training loss became {loss} at epoch {trainer.current_epoch}, batch {batch} "
            f"(global step {step}); {kept}. Lower lr, or set trainer.gradient_clip_val"
        )


class LossProgressBar(TQDMProgressBar):
    """The progress bar, showing the epoch's running mean of each training loss term.

    The means come from the module's on-device sums, so they are read back only when the
    bar refreshes (every ``refresh_rate`` steps), never per step.
    """

    def on_exception(self, trainer: pl.Trainer, pl_module: VAE, exception: BaseException) -> None:
        # Closing ends the bars' line, so the one-line error is not printed after a bar.
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar):
            if bar is not None:
                bar.close()

    def get_metrics(self, trainer: pl.Trainer, pl_module: VAE) -> dict[str, int | str | float]:
        shown = super().get_metrics(trainer, pl_module)
        if trainer.training:
            running = pl_module.running_means("train")
            shown.update({name: f"{float(value):.2f}" for name, value in running.items() if name != "loss"})
        return shown


class LatentPictures(pl.Callback):
    """After every validation epoch, logs pictures of fixed inputs so epochs are comparable.

    The latent scatter of validation means coloured by class, samples decoded from fixed
    prior draws and from fixed uniform draws inside the box the validation means span
    (LearnOpenCV's second sampler), originals over reconstructions, for 2-D latents the
    decoded manifold over [-3, 3]^2, and each dimension's KL with the count of active ones
    (``val/active_units``), so a collapsing posterior shows as it happens. When training ends
    the same pictures are saved as PNGs in the run folder, with a scatter of the test set's means
    (projected by ``projection`` above 2-D), and above 2-D those means go to TensorBoard's projector.
    """

    def __init__(
        self, scatter_points: int, grid_size: int, manifold_size: int, seed: int, projection: str = "pca"
    ) -> None:
        self.scatter_points = scatter_points
        self.grid_size = grid_size
        self.manifold_size = manifold_size
        self.seed = seed
        self.projection = projection

    def setup(self, trainer: pl.Trainer, pl_module: VAE, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        # labels are None for unlabelled data: one colour
        self.images, self.labels = datamodule.val_set.head(self.scatter_points)
        self.class_names = getattr(datamodule, "class_names", None)
        latent_dim = pl_module.hparams.latent_dim
        self.scatter = plots.LatentScatter(self.labels, self.class_names, latent_dim)
        self.kl_bars = plots.KlPerDimension(latent_dim) if pl_module.closed_form_kl else None
        generator = torch.Generator().manual_seed(self.seed)
        self.prior = torch.randn(self.grid_size**2, latent_dim, generator=generator)
        self.prior_uniform = torch.rand(self.grid_size**2, generator=generator)  # a VampPrior's components
        # A conditional model decodes each row of samples as one class: row r as class r mod classes.
        rows = torch.arange(self.grid_size**2) // self.grid_size
        self.sample_labels = rows % pl_module.classes if pl_module.classes else None
        self.latest: tuple[int, dict[str, np.ndarray]] | None = None  # (global step, pixels by tag)

    @torch.no_grad()
    def render(self, module: VAE, epochs_done: int) -> dict[str, Tensor | Figure]:
        """The pictures of the module as it is now, by TensorBoard tag."""
        was_training = module.training
        module.eval()
        means, logvar = posterior(module, self.images, self.labels)
        means = means.cpu().float()  # uniform_within draws on the CPU
        box = uniform_within(means, self.grid_size**2, torch.Generator().manual_seed(self.seed))
        shown = to_unit_interval(self.images[: self.grid_size**2].to(module.device))
        per_row = min(self.grid_size, len(shown))
        shown_labels = _given(self.labels, module, len(shown))
        draw_labels = _given(self.sample_labels, module, len(self.prior))

        def decoded(z: Tensor) -> Tensor:
            return plots.image_grid(module.decode(z.to(module.device), draw_labels), self.grid_size)

        pictures: dict[str, Tensor | Figure] = {
            "latent/scatter": self.scatter.draw(means, f"validation means after {epochs_done} epochs"),
            "samples/prior": decoded(module.to_prior(self.prior.to(module.device), self.prior_uniform)),
            "samples/uniform": decoded(box),
            "reconstructions": plots.reconstruction_grid(
                shown, module.reconstruct(shown, shown_labels), per_row
            ),
        }
        if module.hparams.latent_dim == 2 and not module.classes:  # one plane per class: vae.generate
            grid = manifold_grid(self.manifold_size, extent=3.0).to(module.device)
            pictures["latent/manifold"] = plots.image_grid(module.decode(grid), self.manifold_size)
        self.active_units = None
        if self.kl_bars is not None:
            kl_per_dim = gaussian_kl_per_dim(means, logvar.cpu().float()).mean(0)
            active = active_dimensions(means)
            self.active_units = int(active.sum())
            title = f"KL per dimension after {epochs_done} epochs"
            pictures["latent/kl_per_dim"] = self.kl_bars.draw(kl_per_dim, active, title)
        module.train(was_training)
        return pictures

    @torch.no_grad()
    def test_means(self, module: VAE, test_set) -> tuple[Tensor, Tensor, Tensor | None]:
        """The first ``scatter_points`` test images, their labels and their posterior means."""
        images, labels = test_set.head(self.scatter_points)
        was_training = module.training
        means = posterior_means(module.eval(), images, labels).float().cpu()
        module.train(was_training)
        return images, means, labels

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        pictures = drawn(self.render(pl_module, trainer.current_epoch + 1))
        _log_pictures(trainer, pictures)
        if self.active_units is not None:
            pl_module.log("val/active_units", float(self.active_units), rank_zero_only=True)
        self.latest = (trainer.global_step, pictures)

    def on_train_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if not trainer.is_global_zero:
            return
        if self.latest is not None and self.latest[0] == trainer.global_step:
            pictures = self.latest[1]  # no step since the last validation: the same pictures
        else:
            pictures = drawn(self.render(pl_module, trainer.current_epoch))
        test_set = getattr(trainer.datamodule, "test_set", None)
        if test_set is not None:
            images, means, labels = self.test_means(pl_module, test_set)
            scatter = plots.latent_scatter(
                means, labels, self.class_names, "test means", self.projection, self.seed
            )
            test = drawn({"latent/test": scatter})
            _log_pictures(trainer, test)
            if means.shape[1] > 2:  # TensorBoard's projector draws no points for 2-D data (its PCA fails)
                attributes = getattr(trainer.datamodule, "test_attributes", None)  # the Cartoon Set's CSVs
                columns = attributes(len(means)) if attributes else {}
                _log_embedding(trainer, means, images, embedding_metadata(labels, self.class_names, columns))
            pictures = {**pictures, **test}
        folder = Path(trainer.default_root_dir)
        for tag, picture in pictures.items():
            (folder / f"{tag.replace('/', '_')}.png").write_bytes(plots.png(picture))


def _given(labels: Tensor | None, module: VAE, count: int) -> Tensor | None:
    """The first ``count`` labels on the module's device, for a conditional module only."""
    return labels[:count].to(module.device) if module.classes and labels is not None else None


def drawn(pictures: dict[str, Tensor | Figure]) -> dict[str, np.ndarray]:
    """Each picture's uint8 pixels, drawn once for TensorBoard and the run folder alike."""
    return {tag: plots.pixels(picture) for tag, picture in pictures.items()}


def _log_pictures(trainer: pl.Trainer, pictures: dict[str, np.ndarray]) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for tag, values in pictures.items():
                formats = "HW" if values.ndim == 2 else "HWC"
                logger.experiment.add_image(tag, values, trainer.global_step, dataformats=formats)


def embedding_metadata(
    labels: Tensor | None, class_names: list[str] | None, columns: dict[str, list[int]]
) -> tuple[list[list[str]] | None, list[str] | None]:
    """The projector's metadata rows and header: label and class name, then any other attributes."""
    header, values = [], []
    if labels is not None:
        names = class_names or [str(label) for label in range(int(labels.max()) + 1)]
        header += ["label", "class"]
        values += [[str(label) for label in labels.tolist()], [names[label] for label in labels.tolist()]]
    header += list(columns)
    values += [[str(value) for value in column] for column in columns.values()]
    if not header:
        return None, None
    return [list(row) for row in zip(*values, strict=True)], header


def _log_embedding(
    trainer: pl.Trainer,
    means: Tensor,
    images: Tensor,
    metadata: tuple[list[list[str]] | None, list[str] | None],
) -> None:
    """The test means to TensorBoard's PROJECTOR tab, with their metadata and a sprite of thumbnails."""
    thumbnails = to_unit_interval(images)
    if thumbnails.shape[-1] > 32:  # a sprite of 2,000 Cartoon Set images at 256 px would be 11k px wide
        thumbnails = torch.nn.functional.interpolate(thumbnails, size=(32, 32), mode="area")
    rows, header = metadata
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_embedding(
                means,
                metadata=rows,
                label_img=thumbnails,
                global_step=trainer.global_step,
                tag="test_means",
                metadata_header=header,
            )


class RunSummary(pl.Callback):
    """Times training, then after testing writes ``metrics.json`` and TensorBoard's HParams.

    ``settings`` (dataset, loss reductions, latent size, seed, ...) go into both, because a
    number without its settings cannot be compared.
    """

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.train_images = 0
        self.validation_seconds = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self.fit_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train_images += len(batch[0]) * trainer.world_size

    def on_validation_start(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self.validation_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if trainer.state.fn == "fit":
            self.validation_seconds += time.perf_counter() - self.validation_started

    def on_fit_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        self.fit_seconds = time.perf_counter() - self.fit_started
        self.fit_metrics = _plain(trainer.callback_metrics)

    def on_test_end(self, trainer: pl.Trainer, pl_module: VAE) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {**self.fit_metrics, **_plain(trainer.callback_metrics)}
        training_seconds = self.fit_seconds - self.validation_seconds
        summary = {
            "settings": self.settings,
            "metrics": metrics,
            "epochs_completed": trainer.current_epoch,
            "wall_time_s": round(self.fit_seconds, 2),
            "train_images_per_second": round(self.train_images / max(training_seconds, 1e-9), 1),
            "note": "losses are per image (recon summed over pixels for bce), averaged over images",
        }
        Path(trainer.default_root_dir, "metrics.json").write_text(json.dumps(summary, indent=2))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                wanted = ("val/recon", "val/kl", "val/loss", "test/recon", "test/kl", "test/loss")
                scores = {
                    f"hparams/{key.replace('/', '_')}": metrics[key] for key in wanted if key in metrics
                }
                logger.log_hyperparams(self.settings, scores)


def _plain(metrics: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items()) if "/" in name}
