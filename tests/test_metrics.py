"""Evaluation measures against cases worked by hand."""

import torch

from vae.metrics import active_units, auroc, linear_probe_accuracy, psnr


def test_auroc_of_perfect_reversed_and_tied_scorers():
    inliers, outliers = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.7, 0.8])
    assert auroc(inliers, outliers) == 1.0
    assert auroc(outliers, inliers) == 0.0
    assert auroc(torch.ones(4), torch.ones(3)) == 0.5


def test_auroc_counts_ordered_pairs_by_hand():
    # outlier 0.5 beats inliers 0.1 and 0.4 but not 0.6; outlier 0.4 ties 0.4 (a half) and beats 0.1
    value = auroc(torch.tensor([0.1, 0.4, 0.6]), torch.tensor([0.5, 0.4]))
    assert abs(value - (2 + 1.5) / 6) < 1e-12


def test_auroc_of_a_random_scorer_is_near_one_half():
    generator = torch.Generator().manual_seed(0)
    value = auroc(torch.rand(5000, generator=generator), torch.rand(5000, generator=generator))
    assert abs(value - 0.5) < 0.02


def test_psnr_by_hand():
    clean = torch.zeros(1, 1, 2, 2)
    noisy = torch.tensor([0.1, 0.1, 0.1, 0.1]).reshape(1, 1, 2, 2)  # mse 0.01 -> 20 dB
    torch.testing.assert_close(psnr(noisy, clean), torch.tensor([20.0]))


def test_active_units_count_dimensions_whose_means_vary():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 4, generator=generator) * torch.tensor([1.0, 0.5, 0.05, 0.0])
    assert active_units(means) == 2  # variances 1, 0.25, 0.0025, 0 against 0.01


def test_the_linear_probe_separates_linearly_separable_codes_and_not_random_ones():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    codes = centres[labels] + torch.randn(400, 2, generator=generator)
    assert linear_probe_accuracy(codes[:200], labels[:200], codes[200:], labels[200:]) > 0.97
    noise = torch.randn(400, 2, generator=generator)  # no class information: chance is 1/4
    assert linear_probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:]) < 0.4


def test_the_linear_probe_finds_the_one_informative_dimension_and_not_the_other():
    # Classes by the sign of z0 alone: z1 carries nothing, and a probe on z1 alone is at chance.
    generator = torch.Generator().manual_seed(1)
    codes = torch.randn(600, 2, generator=generator)
    labels = (codes[:, 0] > 0).long()
    assert linear_probe_accuracy(codes[:300], labels[:300], codes[300:], labels[300:]) > 0.95
    assert linear_probe_accuracy(codes[:300, 1:], labels[:300], codes[300:, 1:], labels[300:]) < 0.62
