"""Latent codes above two dimensions projected to the plane: PCA, t-SNE or UMAP, seeded.

PCA is exact and instant, so the pictures of every epoch use it. t-SNE (scikit-learn's, the
faster of the maintained implementations on 2 cores: docs/benchmarks.md) and UMAP (umap-learn)
show clusters PCA flattens; they are the optional extra ``.[projections]``.
"""

import torch
from torch import Tensor

from vae.errors import UserError

PROJECTIONS = ("pca", "tsne", "umap")
NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def principal_components(points: Tensor, count: int = 2) -> Tensor:
    """``points`` ``[N, D]`` projected on their top ``count`` principal directions."""
    centred = points - points.mean(0)
    _, _, directions = torch.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:count].T


def project(points: Tensor, method: str, seed: int = 0) -> Tensor:
    """``points`` ``[N, D]`` as ``[N, 2]`` by ``method``; the same points and seed give the same plane."""
    points = points.detach().float().cpu()
    if method == "pca":
        return principal_components(points)
    if method == "tsne":
        manifold = _optional("sklearn.manifold", method)
        perplexity = min(30.0, (len(points) - 1) / 3)  # scikit-learn needs perplexity < N
        tsne = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return torch.from_numpy(tsne.fit_transform(points.numpy())).float()
    if method == "umap":
        umap = _optional("umap", method)
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(points) - 1), random_state=seed)
        return torch.from_numpy(reducer.fit_transform(points.numpy())).float()
    raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")


def _optional(module: str, method: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise UserError(
            f"plots.projection={method} needs {error.name}: pip install -e '.[projections]' (or plots.projection=pca)"
        ) from error
