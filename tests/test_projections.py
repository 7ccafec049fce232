"""Projections of many-dimensional latents to the plane: seeded, faithful to clusters, named."""

import sys

import pytest
import torch

from vae import plots
from vae.errors import UserError
from vae.projections import project


def two_clusters(points_per_cluster: int = 60, dims: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2 * points_per_cluster) % 2
    centres = torch.zeros(2, dims)
    centres[1, :] = 6.0  # far apart in every dimension
    return centres[labels] + torch.randn(len(labels), dims, generator=generator), labels


def nearest_neighbour_agreement(plane: torch.Tensor, labels: torch.Tensor) -> float:
    distances = torch.cdist(plane, plane).fill_diagonal_(float("inf"))
    return float((labels[distances.argmin(1)] == labels).float().mean())


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_each_projection_is_deterministic_and_keeps_clusters_apart(method: str):
    points, labels = two_clusters()
    plane = project(points, method, seed=3)
    assert plane.shape == (len(points), 2)
    assert torch.equal(plane, project(points, method, seed=3))
    assert nearest_neighbour_agreement(plane, labels) == 1.0


def test_a_missing_optional_library_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(
        UserError, match=r"plots.projection=umap needs umap: pip install -e '.\[projections\]'"
    ):
        project(torch.randn(10, 5), "umap")


def test_the_scatter_names_its_projection_in_the_title_and_axes():
    points, labels = two_clusters(points_per_cluster=20)
    figure = plots.latent_scatter(points, labels, ["a", "b"], "test means", projection="tsne")
    axes = figure.axes[0]
    assert axes.get_title() == "test means (t-SNE of 20-d means)"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("t-SNE 1", "t-SNE 2")
