"""Evaluation measures beyond the loss: active units, AUROC, PSNR. Pure tensor functions."""

import torch
from torch import Tensor


def active_units(means: Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across images: Cov_x(E[z|x]) > threshold.

    The 0.01 threshold is Burda et al.'s; an inactive dimension is ignored by the decoder.
    """
    return int((means.var(0) > threshold).sum())


def auroc(in_distribution: Tensor, out_of_distribution: Tensor) -> float:
    """Area under the ROC curve for 'a higher score means out of distribution'.

    The Mann-Whitney form: the chance that a random outlier scores above a random inlier,
    ties counting one half.
    """
    scores = torch.cat([in_distribution, out_of_distribution]).double()
    _, group, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()
    ranks = (last_rank - (counts - 1) / 2)[group]  # tied scores share their average rank
    n_in, n_out = len(in_distribution), len(out_of_distribution)
    rank_sum = ranks[n_in:].sum()
    return float((rank_sum - n_out * (n_out + 1) / 2) / (n_in * n_out))


def psnr(images: Tensor, references: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image in dB, for pixels in [0, 1]."""
    mse = (images - references).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))
