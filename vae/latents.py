"""Points in latent space to decode: grids, walks and draws. Pure tensor functions."""

import torch
from torch import Tensor


def manifold_grid(size: int, extent: float) -> Tensor:
    """A ``size`` x ``size`` grid of 2-D latents over [-extent, extent]^2, row-major.

    The first row has the largest z[1], so the decoded grid reads like the scatter plot.
    """
    axis = torch.linspace(-extent, extent, size)
    z1, z0 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([z0, z1], dim=-1).reshape(-1, 2)


def principal_plane(means: Tensor, size: int, extent: float) -> Tensor:
    """A ``size`` x ``size`` grid in the plane of the means' top two principal directions.

    Each axis spans ``extent`` standard deviations of the means along that direction, so a
    model with many latent dimensions gets the same picture as ``manifold_grid`` in 2-D.
    """
    centre = means.mean(0)
    _, singular, directions = torch.linalg.svd(means - centre, full_matrices=False)
    spread = singular[:2] / (len(means) - 1) ** 0.5
    coordinates = manifold_grid(size, extent) * spread
    return centre + coordinates @ directions[:2]


def interpolate(start: Tensor, end: Tensor, steps: int, spherical: bool) -> Tensor:
    """``steps`` points from ``start`` to ``end`` (``[D]`` each), both included.

    Spherical interpolation keeps the norm typical of Gaussian draws, which a straight line
    between two far-apart codes does not.
    """
    t = torch.linspace(0, 1, steps)[:, None]
    if not spherical:
        return (1 - t) * start + t * end
    cosine = torch.dot(start, end) / (start.norm() * end.norm()).clamp_min(1e-12)
    angle = torch.arccos(cosine.clamp(-1, 1))
    if torch.sin(angle) < 1e-6:  # (anti)parallel codes, e.g. any pair in 1-D: no single great circle
        return (1 - t) * start + t * end
    return (torch.sin((1 - t) * angle) * start + torch.sin(t * angle) * end) / torch.sin(angle)


def traverse(code: Tensor, dims: int, steps: int, extent: float) -> Tensor:
    """Rows that each vary one of the first ``dims`` latent dimensions over [-extent, extent]."""
    values = torch.linspace(-extent, extent, steps)
    rows = code.repeat(dims, steps, 1)  # [dims, steps, D]
    for dim in range(dims):
        rows[dim, :, dim] = values
    return rows.reshape(-1, code.shape[-1])


def uniform_within(means: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` latents drawn uniformly inside the box the ``means`` span (LearnOpenCV's sampler)."""
    lower, upper = means.min(0).values, means.max(0).values
    return lower + (upper - lower) * torch.rand(count, len(lower), generator=generator)
