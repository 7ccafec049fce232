"""Evaluation measures beyond the loss: active units, a linear probe, AUROC, PSNR. Pure tensor functions."""

import torch
from torch import Tensor


def active_dimensions(means: Tensor, threshold: float = 0.01) -> Tensor:
    """Which latent dimensions' posterior mean varies across images: Cov_x(E[z|x]) > threshold.

    The 0.01 threshold is Burda et al.'s; an inactive dimension is ignored by the decoder.
    """
    return means.var(0) > threshold


def active_units(means: Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions are active (``active_dimensions``)."""
    return int(active_dimensions(means, threshold).sum())


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


def linear_probe_accuracy(
    train_codes: Tensor, train_labels: Tensor, test_codes: Tensor, test_labels: Tensor, l2: float = 1e-4
) -> float:
    """Test accuracy of a multinomial logistic regression fit on the training codes.

    How much class information a code keeps, linearly: the usual probe of representation
    learning. Codes are standardised with the training statistics; the fit is L-BFGS on the
    L2-penalised cross-entropy (convex, so the result does not depend on a seed).
    """
    train_codes, test_codes = train_codes.double(), test_codes.double()
    centre, scale = train_codes.mean(0), train_codes.std(0).clamp_min(1e-8)
    train_x, test_x = (train_codes - centre) / scale, (test_codes - centre) / scale
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def penalised_loss() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train_x @ weight + bias, train_labels)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(penalised_loss)
    predicted = (test_x @ weight + bias).argmax(1)
    return float((predicted == test_labels).double().mean())
