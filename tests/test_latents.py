"""Latent-space constructions: grids, walks and box draws."""

import math

import torch

from vae import latents


def test_manifold_grid_reads_like_the_scatter_plot():
    z = latents.manifold_grid(3, extent=3.0)
    assert z.shape == (9, 2)
    assert z[0].tolist() == [-3.0, 3.0]  # top left: smallest z[0], largest z[1]
    assert z[2].tolist() == [3.0, 3.0]
    assert z[8].tolist() == [3.0, -3.0]


def test_linear_interpolation_runs_from_start_to_end_through_the_midpoint():
    start, end = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    path = latents.interpolate(start, end, 5, spherical=False)
    assert torch.equal(path[0], start) and torch.equal(path[-1], end)
    assert path[2].tolist() == [2.0, 0.0]


def test_spherical_interpolation_keeps_the_norm_between_equal_norm_codes():
    start, end = torch.tensor([2.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])
    path = latents.interpolate(start, end, 7, spherical=True)
    torch.testing.assert_close(path.norm(dim=1), torch.full((7,), 2.0))
    torch.testing.assert_close(path[3], torch.tensor([math.sqrt(2), math.sqrt(2), 0.0]))
    torch.testing.assert_close(path[-1], end)


def test_spherical_interpolation_between_opposite_codes_is_the_straight_line():
    # No great circle is defined; dividing by sin(pi) (about -9e-8 in float32) gave codes of 1e6.
    for start, end in [
        (torch.tensor([0.5]), torch.tensor([-2.0])),
        (torch.tensor([1.0, 2.0]), torch.tensor([-2.0, -4.0])),
    ]:
        path = latents.interpolate(start, end, 5, spherical=True)
        torch.testing.assert_close(path, latents.interpolate(start, end, 5, spherical=False))


def test_traverse_varies_one_dimension_per_row():
    code = torch.tensor([0.5, -0.5, 1.0])
    rows = latents.traverse(code, dims=2, steps=4, extent=3.0).view(2, 4, 3)
    assert rows[0, :, 0].tolist() == [-3.0, -1.0, 1.0, 3.0]
    assert (rows[0, :, 1:] == code[1:]).all()
    assert rows[1, :, 1].tolist() == [-3.0, -1.0, 1.0, 3.0]
    assert (rows[1, :, 0] == 0.5).all() and (rows[1, :, 2] == 1.0).all()


def test_uniform_draws_stay_inside_the_box():
    means = torch.tensor([[-1.0, 6.0], [0.5, 5.0], [1.0, 5.5]])  # the box [-1, 1] x [5, 6]
    z = latents.uniform_within(means, 1000, torch.Generator().manual_seed(0))
    assert z.shape == (1000, 2)
    assert (z >= torch.tensor([-1.0, 5.0])).all() and (z <= torch.tensor([1.0, 6.0])).all()
    assert z[:, 0].min() < -0.9 and z[:, 0].max() > 0.9  # it fills the box


def test_principal_plane_lies_in_the_plane_of_the_means():
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(5, 2, generator=generator)).Q.T  # two orthonormal 5-D directions
    means = torch.randn(300, 2, generator=generator) @ basis + 1.0
    grid = latents.principal_plane(means, size=5, extent=2.0)
    assert grid.shape == (25, 5)
    offsets = grid - means.mean(0)
    residual = offsets - (offsets @ basis.T) @ basis
    assert residual.abs().max() < 1e-4
    torch.testing.assert_close(grid[12], means.mean(0))  # the centre of the grid is the mean
