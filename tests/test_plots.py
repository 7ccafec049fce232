"""The pure figure makers: layout of grids, latent grids, projections and scatter legends."""

import io

import numpy as np
import torch
from PIL import Image

from vae import plots
from vae.projections import principal_components


def cell_value(grid: torch.Tensor, row: int, column: int, side: int = 28, padding: int = 2) -> float:
    """The pixel at the centre of one tile of a make_grid picture."""
    step = side + padding
    return grid[0, padding + row * step + side // 2, padding + column * step + side // 2].item()


def test_reconstruction_rows_sit_under_their_originals():
    originals = torch.zeros(4, 1, 28, 28)
    reconstructions = torch.ones(4, 1, 28, 28)
    reconstructions[2:] = 0.5  # the second pair of rows
    grid = plots.reconstruction_grid(originals, reconstructions, per_row=2)
    assert grid.shape == (1, 2 + 4 * 30, 2 + 2 * 30)  # grey images, one channel
    assert [cell_value(grid, row, 1) for row in range(4)] == [0.0, 1.0, 0.0, 0.5]


def test_image_grid_clamps_into_the_unit_interval():
    grid = plots.image_grid(torch.full((2, 3, 8, 8), 3.0), per_row=2)
    assert grid.max() == 1.0 and grid.shape[0] == 3


def test_png_holds_the_rounded_pixels_of_grey_and_colour_grids():
    grey = torch.tensor([[[0.0, 0.5], [1.0, 0.2]]])  # [1, 2, 2]: 0, 127.5, 255, 51
    colour = torch.stack([grey[0], 1 - grey[0], grey[0] / 2])
    for grid, expected in (
        (grey, [[0, 128], [255, 51]]),
        (colour, [[[0, 255, 0], [128, 128, 64]], [[255, 0, 128], [51, 204, 26]]]),
    ):
        values = plots.pixels(grid)
        assert values.dtype == np.uint8 and values.tolist() == expected
        decoded = Image.open(io.BytesIO(plots.png(values)))
        assert decoded.mode == ("L" if grid.shape[0] == 1 else "RGB")
        assert np.asarray(decoded).tolist() == expected


def test_pixels_of_a_figure_are_its_agg_drawing():
    figure = plots.latent_scatter(torch.randn(10, 2), None, None, "means")
    values = plots.pixels(figure)
    assert values.shape == (520, 640, 3)  # 6.4 x 5.2 inches at matplotlib's 100 dpi, RGB
    assert values.min() < 100 and values.max() == 255  # ink on a white background


def test_principal_components_find_the_direction_of_largest_spread():
    generator = torch.Generator().manual_seed(0)
    t = torch.randn(500, 1, generator=generator)
    points = t * torch.tensor([[2.0, -1.0, 2.0]]) + 0.01 * torch.randn(500, 3, generator=generator)
    projected = principal_components(points)
    assert projected.shape == (500, 2)
    assert projected[:, 0].var() > 1000 * projected[:, 1].var()
    torch.testing.assert_close(
        projected[:, 0].var(), (points - points.mean(0)).pow(2).sum(1).mean(), rtol=0.01, atol=0
    )


def test_scatter_legend_names_the_classes_present():
    points = torch.randn(6, 2)
    labels = torch.tensor([0, 0, 2, 2, 1, 1])
    figure = plots.latent_scatter(points, labels, ["zero", "one", "two"], "means")
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["zero", "one", "two"]
    assert "PCA" not in axes.get_title()


def test_scatter_of_many_dimensions_says_it_shows_principal_components():
    figure = plots.latent_scatter(torch.randn(50, 16), None, None, "means")
    assert "PCA of 16-d" in figure.axes[0].get_title()
    assert figure.axes[0].get_legend() is None


def test_a_redrawn_scatter_is_the_picture_a_new_figure_would_be():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    before, after = 50 + 10 * torch.randn(60, 5, generator=generator), torch.randn(60, 5, generator=generator)
    reused = plots.LatentScatter(labels, ["zero", "one", "two"], dims=5)
    reused.draw(before, "epoch 1")  # far away and wider: limits that must not linger
    redrawn = plots.pixels(reused.draw(after, "epoch 2"))
    fresh = plots.pixels(plots.latent_scatter(after, labels, ["zero", "one", "two"], "epoch 2"))
    assert np.array_equal(redrawn, fresh)
    low, high = reused.axes.get_xlim()
    projected = principal_components(after)[:, 0]
    assert low < projected.min() and projected.max() < high < 2 * projected.abs().max()
