"""Per-image test measures of a trained model: ELBO, importance-weighted bound, latent usage.

Whatever reductions a model was trained with, these are the textbook quantities: the
reconstruction term summed over pixels as a normalised log-likelihood, the KL summed over
latent dimensions, both in nats per image.
"""

import torch
from torch import Tensor

from vae.data.memory import InMemoryDataModule, InMemoryImages
from vae.module import VAE, to_unit_interval
from vae.objectives import (
    at_least_float32,
    gaussian_kl_per_dim,
    iwae_nll,
    log_likelihood,
    log_normal,
    reparameterize,
)


def loaded_test_set(datamodule: InMemoryDataModule) -> InMemoryImages:
    """A run's datamodule's test split (uint8 images, labels), its files fetched if needed."""
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.test_set


@torch.no_grad()
def posterior(
    model: VAE, images: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None]:
    """The mean and log-variance of q(z|x) as the sampler draws it (an autoencoder: its code and
    None) of uint8 ``images``, grey, or with a ``generator`` as the model's input (binarized by a
    seeded draw). About 262k input values per forward pass: a conv net's first layers hold
    32-64x their input, so larger passes would raise a run's peak memory for no gain."""
    chunk = max(1, 2**18 // images[0].numel())
    labels = labels if model.classes else None
    as_input = to_unit_interval if generator is None else lambda x: model.prepare(x, generator)
    heads = [
        model.encode(
            as_input(images[start : start + chunk].to(model.device)),
            None if labels is None else labels[start : start + chunk].to(model.device),
        )
        for start in range(0, len(images), chunk)
    ]
    means = at_least_float32(torch.cat([mu for mu, _ in heads]))  # bf16 under autocast
    if model.sampler is None:
        return means, None
    logvar = at_least_float32(torch.cat([logvar for _, logvar in heads]))
    return means, model.sampler.posterior_logvar(logvar)


def posterior_means(model: VAE, images: Tensor, labels: Tensor | None = None) -> Tensor:
    """E[z|x] (an autoencoder's code) of uint8 ``images`` (E[z|x, y] for a conditional model)."""
    return posterior(model, images, labels)[0]


@torch.no_grad()
def bounds(
    model: VAE, x: Tensor, k: int, chunk: int, generator: torch.Generator, labels: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-image ``recon``, ``kl``, ``negative_elbo`` and ``iwae_nll`` from ``k`` posterior draws.

    The draws are decoded ``chunk`` at a time, batched over images, so the cost is the
    decoder's FLOPs. The proposal is the model's own q(z|x) as its sampler draws it (a reduced
    ``eps_std``, ``sampler_std=exp_logvar``), so the KL here is that posterior's true KL.
    With a conditional model's ``labels`` every term is conditioned on y: a bound of -log p(x|y).
    """
    hp = model.objective
    mu, logvar = (at_least_float32(head) for head in model.encode(x, labels))  # bf16 under autocast
    logvar = model.sampler.posterior_logvar(logvar)
    components = model.prior_components() if model.pseudo_inputs is not None else None
    log_weights, recon = [], torch.zeros(len(x), device=x.device)
    # E_q[log q(z|x) - log p(z)] over the draws: the KL of a prior without a closed form.
    kl_estimate = torch.zeros(len(x), device=x.device)
    for start in range(0, k, chunk):
        draws = min(chunk, k - start)
        eps = torch.randn((draws, *mu.shape), generator=generator, device=mu.device)
        z = reparameterize(mu, logvar, eps)  # [draws, images, D]
        logits = model.decoder_logits(z.flatten(0, 1), None if labels is None else labels.repeat(draws))
        targets = x.expand(draws, *x.shape).flatten(0, 1)
        log_px = log_likelihood(hp.recon, logits, targets, hp.mse_scale, model.log_variance).view(
            draws, len(x)
        )
        log_pz = model.log_prior(z, components)
        log_qz = log_normal(z, mu, logvar)
        log_weights.append(log_px + log_pz - log_qz)
        recon -= log_px.sum(0)
        kl_estimate += (log_qz - log_pz).sum(0)
    log_weights = torch.cat(log_weights)
    recon /= k
    measures = {"recon": recon, "iwae_nll": iwae_nll(log_weights), "means": mu}
    if not model.closed_form_kl:  # a learned prior: the KL averaged over the same k draws
        kl = kl_estimate / k
    else:
        measures["kl_per_dim"] = gaussian_kl_per_dim(mu, logvar)
        kl = measures["kl_per_dim"].sum(1)
    return {**measures, "kl": kl, "negative_elbo": recon + kl}


@torch.no_grad()
def reconstruction_error(model: VAE, x: Tensor, labels: Tensor | None = None) -> Tensor:
    """-log p(x | code) per image, for a plain autoencoder (no posterior to average over)."""
    hp = model.objective
    return -log_likelihood(
        hp.recon,
        model.decoder_logits(model.encode(x, labels)[0], labels),
        x,
        hp.mse_scale,
        model.log_variance,
    )


def evaluation_streams(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The pixels' and the posterior draws' generators for ``seed``: seeds 2 seed and 2 seed + 1, so
    that evaluations at neighbouring seeds (the anomaly score's inliers and outliers) share no stream.
    """
    return (
        torch.Generator(device=device).manual_seed(2 * seed),
        torch.Generator(device=device).manual_seed(2 * seed + 1),
    )


def per_image_measures(
    model: VAE, images: Tensor, k: int, batch_size: int, seed: int, labels: Tensor | None = None
) -> dict[str, Tensor]:
    """``bounds`` (or the autoencoder's error) for all ``images``, ``batch_size`` at a time
    (given their ``labels``, for a conditional model).

    The binarization (or dequantization) of the images and the posterior draws come from two
    streams seeded by ``seed``, so bounds at different ``k`` are of the same binarized images.
    """
    pixels, draws = evaluation_streams(seed, model.device)
    # About 128 latents per decoder call: calls that stay in the CPU's caches decode faster
    # than large ones, in a fraction of the memory (bench.iwae measures it).
    chunk = max(1, 128 // batch_size)
    parts: dict[str, list[Tensor]] = {}
    labels = labels if model.classes else None
    for start in range(0, len(images), batch_size):
        x = model.prepare(images[start : start + batch_size].to(model.device), pixels)
        given = None if labels is None else labels[start : start + batch_size].to(model.device)
        if model.objective.variational:
            measures = bounds(model, x, k, chunk, draws, given)
        else:
            measures = {"recon": reconstruction_error(model, x, given)}
        for name, value in measures.items():
            parts.setdefault(name, []).append(value.cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


@torch.no_grad()
def denoise(model: VAE, images: Tensor, noise_factor: float, generator: torch.Generator) -> dict[str, Tensor]:
    """Seed 004's test: add ``noise_factor`` x N(0, 1) noise, clip to [0, 1], reconstruct."""
    clean = to_unit_interval(images.to(model.device))
    noise = torch.randn(clean.shape, generator=generator, device=clean.device)
    noisy = (clean + noise_factor * noise).clamp(0, 1)
    return {"clean": clean, "noisy": noisy, "reconstructed": model.reconstruct(noisy)}
