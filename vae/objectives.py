"""The VAE objective as pure functions: tensors in, one value per image out.

Every term is returned per image (shape ``[batch]``) so that the caller chooses the batch
reduction, and so that evaluation can rank or average images however it needs.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

RECONSTRUCTIONS = ("bce", "mse")


def bernoulli_recon(logits: Tensor, x: Tensor) -> Tensor:
    """Binary cross-entropy summed over pixels: -log p(x|z) under a Bernoulli decoder.

    Computed from logits (log-sum-exp form), because sigmoid followed by log underflows
    to -inf for confident pixels.
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return per_pixel.flatten(1).sum(1)


def scaled_mse_recon(logits: Tensor, x: Tensor, scale: float) -> Tensor:
    """``scale`` x mean squared error over the pixels of each image, on sigmoid outputs.

    This is seed 001's loss (scale 1000): a Gaussian decoder whose variance is fixed by
    ``scale``, reported per image like the Bernoulli term.
    """
    return scale * (torch.sigmoid(logits) - x).pow(2).flatten(1).mean(1)


def reconstruction(kind: str, logits: Tensor, x: Tensor, mse_scale: float) -> Tensor:
    """The per-image reconstruction term named by ``kind`` ('bce' or 'mse')."""
    if kind == "bce":
        return bernoulli_recon(logits, x)
    if kind == "mse":
        return scaled_mse_recon(logits, x, mse_scale)
    raise ValueError(f"unknown reconstruction term {kind!r}; choose one of {RECONSTRUCTIONS}")


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) in closed form, summed over latent dimensions."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + sigma * eps: the draw stays differentiable in mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * eps
