"""The VAE objective as pure functions: tensors in, one value per image out.

Every term is returned per image (shape ``[batch]``) so that the caller chooses the batch
reduction, and so that evaluation can rank or average images however it needs.
The tutorials disagree on reductions (summed or averaged over pixels and over latent
dimensions); each is a named switch here so that a reported number can say which it used.
"""

import math

import torch
from torch import Tensor

RECONSTRUCTIONS = ("bce", "mse", "gaussian")
REDUCTIONS = ("sum", "mean")


def reduce_per_image(values: Tensor, reduction: str) -> Tensor:
    """Sum or average everything but the leading (image) dimension."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")
    flat = values.flatten(1)
    return flat.sum(1) if reduction == "sum" else flat.mean(1)


class BinaryCrossEntropyWithLogits(torch.autograd.Function):
    """Per-pixel BCE from logits, max(l, 0) - x*l + log(1 + exp(-|l|)), gradient sigmoid(l) - x.

    PyTorch's own op spends its time in ``log1p``, which is not vectorised on CPU, about twice
    this form's time forward and backward.
    ``log(1 + e)`` for e = exp(-|l|) in (0, 1] differs from ``log1p(e)`` only where 1 + e
    rounds to 1, i.e. by less than 6e-8 nats per pixel.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(logits, x)
        return logits.clamp(min=0) - logits * x + torch.log(1 + torch.exp(-logits.abs()))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        logits, x = ctx.saved_tensors
        grad_logits = grad * (torch.sigmoid(logits) - x) if ctx.needs_input_grad[0] else None
        grad_x = -grad * logits if ctx.needs_input_grad[1] else None
        return grad_logits, grad_x


def at_least_float32(values: Tensor) -> Tensor:
    """bf16 or fp16 values (from layers under autocast) as float32; float32 and float64 as they are.

    Loss terms are computed in float32: bf16 keeps 8 bits of mantissa, so a KL of 25 nats
    summed in bf16 moves in steps of 0.125.
    """
    return values.to(torch.promote_types(values.dtype, torch.float32))


def bernoulli_recon(logits: Tensor, x: Tensor, reduction: str) -> Tensor:
    """Binary cross-entropy over the pixels of each image: -log p(x|z) when summed.

    Computed from logits (log-sum-exp form), because sigmoid followed by log underflows
    to -inf for confident pixels. ``mean`` is Keras' ``binary_crossentropy`` (the UPM notebook).
    """
    per_pixel = BinaryCrossEntropyWithLogits.apply(at_least_float32(logits), x)
    return reduce_per_image(per_pixel, reduction)


def scaled_mse_recon(logits: Tensor, x: Tensor, scale: float) -> Tensor:
    """``scale`` x mean squared error over the pixels of each image, on sigmoid outputs.

    This is LearnOpenCV's loss (scale 1000): a Gaussian decoder whose fixed variance is set
    by ``scale`` (see ``log_likelihood``).
    """
    return scale * reduce_per_image((torch.sigmoid(at_least_float32(logits)) - x).pow(2), "mean")


def gaussian_recon(logits: Tensor, x: Tensor, log_variance: Tensor) -> Tensor:
    """-log N(x; sigmoid(logits), exp(log_variance)) summed over the values of each image, in nats.

    A proper density for dequantized pixels (``dequantize``), whose variance is learned
    (``log_variance`` broadcasts over the image: one per channel).
    """
    mean = torch.sigmoid(at_least_float32(logits))
    per_value = 0.5 * (math.log(2 * math.pi) + log_variance + (x - mean).pow(2) / log_variance.exp())
    return reduce_per_image(per_value, "sum")


def dequantize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """uint8 pixels k to (k + u) / 256 with u ~ U(0, 1): a density on these lower-bounds the
    8-bit data's probability, log P(k) >= E_u log p((k + u) / 256) - D log 256."""
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    return (images.float() + noise) / 256


def bits_per_dim(nats_per_image: float, values_per_image: int) -> float:
    """A dequantized density's -log p in nats per image as bits per 8-bit value (see ``dequantize``)."""
    return (nats_per_image + values_per_image * math.log(256)) / (values_per_image * math.log(2))


def reconstruction(
    kind: str, logits: Tensor, x: Tensor, reduction: str, mse_scale: float, log_variance: Tensor | None = None
) -> Tensor:
    """The per-image reconstruction term named by ``kind`` ('bce', 'mse' or 'gaussian')."""
    if kind == "bce":
        return bernoulli_recon(logits, x, reduction)
    if kind == "mse":
        return scaled_mse_recon(logits, x, mse_scale)
    if kind == "gaussian":
        return gaussian_recon(logits, x, log_variance)
    raise ValueError(f"unknown reconstruction term {kind!r}; choose one of {RECONSTRUCTIONS}")


def log_likelihood(
    kind: str, logits: Tensor, x: Tensor, mse_scale: float, log_variance: Tensor | None = None
) -> Tensor:
    """log p(x|z) per image, normalised, for likelihood bounds.

    'mse' is the Gaussian whose negative log-density is ``mse_scale`` x MSE plus a constant:
    sigma^2 = P / (2 * mse_scale) for P pixels; 'gaussian' learns its variance.
    """
    if kind == "bce":
        return -bernoulli_recon(logits, x, "sum")
    if kind == "gaussian":
        return -gaussian_recon(logits, x, log_variance)
    pixels = x[0].numel()
    variance = pixels / (2 * mse_scale)
    return -scaled_mse_recon(logits, x, mse_scale) - 0.5 * pixels * math.log(2 * math.pi * variance)


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) in closed form, one value per latent dimension."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def free_bits(kl_per_dim: Tensor, floor: float) -> Tensor:
    """Per-dimension KL terms ``[batch, D]`` whose batch mean is sum_d max(floor, mean KL_d).

    A dimension whose KL, averaged over the batch, is below ``floor`` counts as ``floor``
    and gets no gradient, so the optimiser has no reason to collapse it onto the prior.
    """
    below = kl_per_dim.mean(0) < floor
    return torch.where(below, torch.full_like(kl_per_dim, floor), kl_per_dim)


def cyclical_weight(step: int, total_steps: int, cycles: int, rising: float = 0.5) -> float:
    """Fu et al.'s cyclical schedule: in each of ``cycles`` equal cycles the weight rises
    linearly from 0 to 1 over the first ``rising`` share of the cycle, then stays at 1."""
    length = math.ceil(total_steps / cycles)
    position = (step % length) / length
    return min(1.0, position / rising)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + sigma * eps: the draw stays differentiable in mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * eps


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return log_normal(z, torch.zeros_like(z), torch.zeros_like(z))


def mixture_log_density(z: Tensor, means: Tensor, logvars: Tensor) -> Tensor:
    """log (1/K sum_k N(z; means_k, diag(exp(logvars_k)))) for ``z`` ``[..., D]`` and K components ``[K, D]``.

    The VampPrior's density: its components are the posteriors of the pseudo-inputs.
    """
    per_component = log_normal(z.unsqueeze(-2), means, logvars)  # [..., K]
    return torch.logsumexp(per_component, dim=-1) - math.log(len(means))


def iwae_nll(log_weights: Tensor) -> Tensor:
    """The importance-weighted estimate of -log p(x) from k draws z_i ~ q(z|x).

    ``log_weights`` ``[k, batch]`` are log p(x|z_i) + log p(z_i) - log q(z_i|x); the estimate is
    -log (1/k sum_i exp(log_weights_i)). With k = 1 it is the single-sample negative ELBO, and it
    never exceeds the average of those (Jensen).
    """
    return -(torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0]))
