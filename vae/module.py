"""The LightningModule: an encoder, a reparameterized sampler and a decoder, trained on the ELBO."""

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from vae import schema
from vae.flows import FlowPrior
from vae.nets import build_networks
from vae.objectives import (
    at_least_float32,
    cyclical_weight,
    dequantize,
    free_bits,
    gaussian_kl_per_dim,
    log_normal,
    log_standard_normal,
    mixture_log_density,
    reconstruction,
    reduce_per_image,
    reparameterize,
)


def to_unit_interval(images: Tensor) -> Tensor:
    """uint8 pixels (as the datamodules yield them) to floats in [0, 1], on their device."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


@contextmanager
def running_batch_norm(module: nn.Module) -> Iterator[None]:
    """Inside, ``module``'s batch norm layers normalise with their running statistics and
    leave them unchanged (as in eval mode); gradients still flow through them."""
    norms = [layer for layer in module.modules() if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d)]
    modes = [layer.training for layer in norms]
    for layer in norms:
        layer.eval()
    try:
        yield
    finally:
        for layer, mode in zip(norms, modes, strict=True):
            layer.train(mode)


class Sampler(nn.Module):
    """Draws z ~ q(z|x) by reparameterization, from the encoder's mean and log-variance heads.

    ``eps_std`` below 1 shrinks the noise, reproducing the UPM notebook's eps ~ N(0, 0.1^2).
    ``std="exp_logvar"`` draws with std exp(logvar) instead of exp(logvar / 2), as the lab exercise
    and the UPM notebook write it, while their KL still reads the head as a log-variance: the loss they
    report is then not the ELBO of the posterior actually sampled (docs/presets.md).
    """

    def __init__(self, eps_std: float, std: str = "exp_half_logvar") -> None:
        super().__init__()
        self.eps_std = eps_std
        self.logvar_factor = 2.0 if std == "exp_logvar" else 1.0

    def posterior_logvar(self, logvar: Tensor) -> Tensor:
        """The log-variance of the Gaussian the draws actually come from, given the head's."""
        return self.logvar_factor * logvar + 2 * math.log(self.eps_std)

    def forward(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return reparameterize(mu, self.posterior_logvar(logvar), torch.randn_like(mu))


class EpochSums:
    """Per-image loss terms summed over an epoch on their device.

    ``self.log`` in every step costs a noticeable share of a small MLP's step and reads each
    value back to the host; adding into one tensor costs microseconds and no host sync, and
    the epoch's means are logged once at its end.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.names: tuple[str, ...] = ()
        self.sums: Tensor | None = None  # one sum per name, then the image count

    def add(self, terms: dict[str, Tensor]) -> None:
        """Adds a batch's per-image ``terms`` (each of shape ``[batch]``)."""
        sums = [value.detach().float().sum() for value in terms.values()]
        count = sums[0].new_full((), len(next(iter(terms.values()))))  # a fill on the device, no copy
        batch = torch.stack([*sums, count])
        self.names = tuple(terms)
        self.sums = batch if self.sums is None else self.sums + batch

    def means(self, reduce: Callable[..., Tensor] | None = None) -> dict[str, Tensor]:
        """This process's means; with ``reduce`` (the strategy's all-reduce), every process's."""
        if self.sums is None:
            return {}
        sums = self.sums if reduce is None else reduce(self.sums, reduce_op="sum")
        return dict(zip(self.names, sums[:-1] / sums[-1], strict=True))


class VAE(pl.LightningModule):
    """A Gaussian-latent VAE whose loss per image is recon + beta * KL(q(z|x) || N(0, I)).

    ``objective["variational"]=False`` makes it the plain autoencoder of the same network (no
    sampler, no KL), the tutorials' baseline; ``model["conditional"]`` with ``classes`` labels a
    conditional VAE of p(x|y), whose every call takes the labels too. The arguments are plain
    values, checked against ``vae.schema``, so a checkpoint holds only tensors and plain containers.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        model: dict,
        objective: dict,
        optim: dict,
        classes: int = 0,
    ) -> None:
        super().__init__()
        for group, values, prefix in (
            (schema.NETWORKS.get(model.get("family"), schema.ConvNet), model, "model."),
            (schema.Objective, objective, "objective."),
            (schema.Optim, optim, "optim."),
        ):
            schema.check(group, values, prefix)
        self.save_hyperparameters()
        self.objective = schema.Objective(**objective)
        if self.objective.kl_warmup_epochs and self.objective.kl_cycles:
            raise ValueError(
                "objective.kl_warmup_epochs and objective.kl_cycles are two schedules of beta; set one"
            )
        self.optim = schema.Optim(**optim)
        variational = self.objective.variational
        self.encoder, self.decoder = build_networks(
            tuple(image_shape), latent_dim, variational, classes=classes, **model
        )
        self.classes = self.encoder.classes  # 0 unless conditional
        self.sampler = Sampler(self.objective.eps_std, self.objective.sampler_std) if variational else None
        # recon=gaussian learns its variance, one per channel (the other terms have none).
        self.log_variance = (
            nn.Parameter(torch.full((image_shape[0], 1, 1), -2.0))
            if self.objective.recon == "gaussian"
            else None
        )
        if self.objective.prior != "normal":
            self._check_learned_prior(model)
        self.pseudo_inputs = None  # the VampPrior's, as logits of pixels in (0, 1)
        if self.objective.prior == "vamp":
            shape = (self.objective.prior_components, *image_shape)
            self.pseudo_inputs = nn.Parameter(0.01 * torch.randn(shape))
        self.prior_flow = (
            FlowPrior(latent_dim, self.objective.prior_flow_layers)
            if self.objective.prior == "flow"
            else None
        )
        self.memory_format = torch.contiguous_format
        self._resumed_rng_states: dict | None = None  # set by on_load_checkpoint, used once
        self.trained_precision: str | None = None  # a loaded checkpoint's, for vae.evaluate
        self._epoch_sums = {stage: EpochSums() for stage in ("train", "val", "test")}

    def _check_learned_prior(self, model: dict) -> None:
        hp = self.objective
        for broken, why in (
            (not hp.variational, "an autoencoder has no prior"),
            (
                hp.kl_reduction != "sum",
                "its KL is a Monte Carlo estimate of the whole KL: objective.kl_reduction=sum",
            ),
            (hp.free_bits > 0, "free bits need a KL per dimension, which a learned prior has not"),
            (model.get("conditional"), "a conditional learned prior is not implemented"),
        ):
            if broken:
                raise ValueError(f"objective.prior={hp.prior}: {why}")

    @property
    def closed_form_kl(self) -> bool:
        """Whether the KL has a closed form (a VAE with N(0, I)); a learned prior's is estimated from draws."""
        return self.objective.variational and self.objective.prior == "normal"

    def prior_name(self) -> str:
        """The prior in words, for reports and picture titles."""
        if self.pseudo_inputs is not None:
            return f"the VampPrior ({len(self.pseudo_inputs)} pseudo-inputs)"
        if self.prior_flow is not None:
            return f"a flow prior ({len(self.prior_flow.couplings)} affine couplings)"
        return "N(0, I)"

    def prior_components(self) -> tuple[Tensor, Tensor]:
        """The VampPrior's component means and log-variances: q(z|u_k) of the pseudo-inputs.

        Batch norm layers encode them with their running statistics, in training too: batch
        statistics of the pseudo-inputs would make training's prior another than evaluation's,
        and would move the statistics the images are normalised with.
        """
        pseudo_images = torch.sigmoid(self.pseudo_inputs).contiguous(memory_format=self.memory_format)
        with running_batch_norm(self.encoder):
            mu, logvar = self.encoder(pseudo_images)
        return at_least_float32(mu), self.sampler.posterior_logvar(at_least_float32(logvar))

    def log_prior(self, z: Tensor, components: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """log p(z), summed over the last dimension: N(0, I), the flow's, or the VampPrior's mixture
        (``components`` from ``prior_components``, computed here if not given)."""
        if self.prior_flow is not None:
            return self.prior_flow.log_prob(z)
        if self.pseudo_inputs is None:
            return log_standard_normal(z)
        return mixture_log_density(z, *(components or self.prior_components()))

    def to_prior(self, eps: Tensor, uniform: Tensor) -> Tensor:
        """Fixed draws ``eps`` ~ N(0, I) ``[N, D]`` and ``uniform`` ~ U(0, 1) ``[N]`` as draws of the
        prior: ``eps`` itself for N(0, I); the flow's inverse of ``eps``; for the VampPrior, from
        component floor(uniform x K)."""
        if self.prior_flow is not None:
            return self.prior_flow.sample_from(eps.to(self.device))
        if self.pseudo_inputs is None:
            return eps
        mu, logvar = self.prior_components()
        pick = (uniform * len(mu)).long().clamp_max(len(mu) - 1).to(mu.device)
        return reparameterize(mu[pick], logvar[pick], eps.to(mu.device))

    def use_fast_paths(self, channels_last: bool, compile: bool) -> None:
        """Speed-only switches (measured in ``bench/``); weights and checkpoints stay the same.

        ``channels_last`` stores conv weights and inputs NHWC, which CPU and GPU convolution
        kernels prefer; ``compile`` hands the loss computation to ``torch.compile``.
        """
        if channels_last and any(isinstance(layer, nn.Conv2d) for layer in self.modules()):
            self.memory_format = torch.channels_last
            self.to(memory_format=self.memory_format)
        if compile:
            self.losses = torch.compile(self.losses)

    # The public API, for notebooks and the other entry points. ``labels`` (integer classes)
    # only for a conditional model, which needs them.
    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Images in [0, 1] to the mean and log-variance of q(z|x) (the code and None for an AE)."""
        return self.encoder(x, labels)

    def decoder_logits(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The decoder's logits for latent codes (given their labels, if conditional)."""
        return self.decoder(z, labels) if self.classes else self.decoder(z)

    @torch.no_grad()
    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Latent codes to images in [0, 1] (the decoder's mean), without gradients: for pictures."""
        return torch.sigmoid(self.decoder_logits(z, labels))

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """``n`` images decoded from draws of the model's prior (``to_prior``)."""
        eps = torch.randn(n, self.hparams.latent_dim, generator=generator, device=self.device)
        uniform = torch.rand(n, generator=generator, device=self.device)
        with torch.no_grad():
            return self.decode(self.to_prior(eps, uniform), labels)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images decoded from the posterior means, without gradients: deterministic, as users expect of a preview."""
        return self.decode(self.encode(x, labels)[0], labels)

    def prepare(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Batch pixels to the model's input: floats in [0, 1], binarized, or dequantized for
        recon=gaussian; the evaluation passes a ``generator`` to fix the draw."""
        if self.objective.recon == "gaussian" and images.dtype == torch.uint8:
            return dequantize(images, generator).contiguous(memory_format=self.memory_format)
        x = to_unit_interval(images).contiguous(memory_format=self.memory_format)
        return torch.bernoulli(x, generator=generator) if self.objective.binarize == "dynamic" else x

    def losses(
        self, x: Tensor, kl_weight: float | None = None, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Per-image ``recon``, ``kl`` and ``loss`` (= recon + kl_weight * kl) of inputs in [0, 1].

        ``kl_weight`` defaults to ``beta``; an autoencoder has no ``kl`` and its loss is recon.
        In training mode with ``free_bits`` the loss floors each dimension's KL; ``kl`` stays the true KL.
        """
        hp = self.objective
        mu, logvar = self.encoder(x, labels)
        if hp.variational:  # the draw and the KL in float32 (the heads may run in bf16)
            mu, logvar = at_least_float32(mu), at_least_float32(logvar)
        z = self.sampler(mu, logvar) if hp.variational else mu
        logits = self.decoder_logits(z, labels)
        recon = reconstruction(hp.recon, logits, x, hp.recon_reduction, hp.mse_scale, self.log_variance)
        if not hp.variational:
            return {"recon": recon, "loss": recon}
        if not self.closed_form_kl:  # a learned prior: the one-draw estimate log q(z|x) - log p(z)
            kl = penalty = log_normal(z, mu, self.sampler.posterior_logvar(logvar)) - self.log_prior(z)
        else:
            kl_per_dim = gaussian_kl_per_dim(mu, logvar)
            kl = penalty = reduce_per_image(kl_per_dim, hp.kl_reduction)
            if hp.free_bits and self.training:
                penalty = reduce_per_image(free_bits(kl_per_dim, hp.free_bits), hp.kl_reduction)
        weight = hp.beta if kl_weight is None else kl_weight
        return {"recon": recon, "kl": kl, "loss": recon + weight * penalty}

    def kl_weight(self, step: int | None = None) -> float:
        """beta, ramped up linearly over the first ``kl_warmup_epochs`` epochs, or in ``kl_cycles`` cycles.

        ``step`` is a 0-based optimizer step, by default the one about to run; with
        ``accumulate_grad_batches`` an epoch has that many times fewer of them than batches.
        """
        hp, trainer = self.objective, self.trainer
        if not (hp.kl_warmup_epochs or hp.kl_cycles):
            return hp.beta
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        step = self.global_step if step is None else step
        if hp.kl_cycles:
            return hp.beta * cyclical_weight(step, trainer.max_epochs * steps_per_epoch, hp.kl_cycles)
        return hp.beta * min(1.0, (step + 1) / (hp.kl_warmup_epochs * steps_per_epoch))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x = self.prepare(batch[0])
        weight = self.kl_weight() if stage == "train" else None
        terms = self.losses(x, weight, batch[1] if self.classes else None)
        self._epoch_sums[stage].add(terms)
        return terms["loss"].mean()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def running_means(self, stage: str) -> dict[str, Tensor]:
        """This epoch's means so far (this process's images only), for the progress bar."""
        return self._epoch_sums[stage].means()

    def _log_epoch(self, stage: str) -> None:
        # Once per epoch: the only host sync (and, under ddp, the only all-reduce) of the losses.
        totals = self._epoch_sums[stage].means(self.trainer.strategy.reduce)
        # sync_dist: the values are already reduced, so the mean over processes changes nothing;
        # it is what tells Lightning so (it warns about unsynced epoch values otherwise).
        logged = {f"{stage}/{name}": value for name, value in totals.items()}
        if stage == "train" and (self.objective.kl_warmup_epochs or self.objective.kl_cycles):
            logged["train/beta"] = self.kl_weight(self.global_step - 1)  # the epoch's last step
        if stage == "train" and self.optim.schedule != "constant":
            logged["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]  # the next epoch's first
        self.log_dict(logged, on_epoch=True, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_sums["train"].reset()

    def on_validation_epoch_start(self) -> None:
        self._epoch_sums["val"].reset()

    def on_test_epoch_start(self) -> None:
        self._epoch_sums["test"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The random state too: a resumed run then shuffles and samples as the uninterrupted one.
        checkpoint["rng_states"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["precision"] = str(self.trainer.precision)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng_states = checkpoint.get("rng_states")
        self.trained_precision = checkpoint.get("precision")  # None before 2026-12-03

    def on_train_start(self) -> None:
        # Restored here, after the sanity check's draws, where the interrupted run stood.
        states = self._resumed_rng_states
        if states:
            torch.set_rng_state(states["cpu"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
            self._resumed_rng_states = None

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        # fused: one kernel for all parameters, faster on CPU and GPU. It unscales fp16
        # gradients inside its own step, so Lightning cannot clip them before it; with
        # gradient clipping the optimizer is the plain (foreach) Adam.
        clipping = bool(self.trainer.gradient_clip_val)
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.optim.lr, eps=self.optim.adam_eps, fused=not clipping
        )
        if self.optim.schedule == "constant":
            return optimizer
        # Stepped per batch over the whole run (SGDR without restarts, Loshchilov & Hutter
        # 2017), so any number of epochs ends at 0; its state resumes with the checkpoint.
        steps = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
