"""The ELBO terms against hand computations and a Monte Carlo estimate."""

import math

import pytest
import torch

from vae.module import Sampler
from vae.objectives import (
    bernoulli_recon,
    bits_per_dim,
    cyclical_weight,
    dequantize,
    free_bits,
    gaussian_kl_per_dim,
    gaussian_recon,
    iwae_nll,
    log_likelihood,
    log_normal,
    reconstruction,
    reduce_per_image,
    reparameterize,
    scaled_mse_recon,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_bce_is_summed_over_the_pixels_of_each_image():
    probabilities = [[0.9, 0.2], [0.5, 0.7]]
    logits = torch.tensor([[logit(p) for p in row] for row in probabilities])
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # -(ln 0.9 + ln 0.8) and -(ln 0.5 + ln 0.7), worked by hand.
    expected = torch.tensor([0.1053605 + 0.2231436, 0.6931472 + 0.3566749])
    torch.testing.assert_close(bernoulli_recon(logits, x, "sum"), expected, rtol=0, atol=1e-6)


def test_bce_from_logits_stays_finite_for_confident_wrong_pixels():
    loss = bernoulli_recon(torch.tensor([[100.0, -100.0]]), torch.tensor([[0.0, 1.0]]), "sum")
    torch.testing.assert_close(loss, torch.tensor([200.0]))


def test_bce_and_its_gradients_match_the_definition():
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(4, 50, generator=generator, dtype=torch.float64) * 8).requires_grad_()
    x = torch.rand(4, 50, generator=generator, dtype=torch.float64).requires_grad_()
    p = torch.sigmoid(logits)
    by_definition = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(1)
    loss = bernoulli_recon(logits, x, "sum")
    torch.testing.assert_close(loss, by_definition)
    torch.testing.assert_close(
        torch.autograd.grad(loss.sum(), (logits, x)),
        torch.autograd.grad(by_definition.sum(), (logits, x)),
    )


def test_bce_is_computed_in_float32_under_bfloat16_logits():
    logits = torch.tensor([[2.0, -3.0, 0.5]])
    x = torch.tensor([[1.0, 0.0, 0.25]])
    loss = bernoulli_recon(logits.bfloat16(), x, "sum")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, bernoulli_recon(logits, x, "sum"))


def test_scaled_mse_is_scale_times_mean_over_pixels():
    logits = torch.zeros(1, 1, 2, 2)  # decoder mean 0.5 everywhere
    x = torch.tensor([0.0, 1.0, 0.5, 0.5]).reshape(1, 1, 2, 2)
    # squared errors 0.25, 0.25, 0, 0 -> mean 0.125 -> x1000 = 125
    torch.testing.assert_close(scaled_mse_recon(logits, x, 1000.0), torch.tensor([125.0]))
    torch.testing.assert_close(reconstruction("mse", logits, x, "sum", 1000.0), torch.tensor([125.0]))


def test_kl_matches_a_hand_computed_value():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (mu^2) + 0.5 * (sigma^2 - 1 - ln sigma^2) = 0.5 + 0.5 * (1 - ln 2)
    torch.testing.assert_close(
        gaussian_kl_per_dim(mu, logvar).sum(-1), torch.tensor([0.5 + 0.5 * (1 - math.log(2))])
    )


def test_kl_closed_form_matches_monte_carlo():
    generator = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 2.0])
    logvar = torch.tensor([0.3, -0.7, 1.2])
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3, generator=generator)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    closed_form = gaussian_kl_per_dim(mu, logvar).sum()
    assert abs(monte_carlo - closed_form) < 0.02 * closed_form


def test_reparameterized_draws_have_the_posterior_moments():
    mu = torch.full((200_000, 1), 1.5)
    logvar = torch.full((200_000, 1), math.log(0.25))
    torch.manual_seed(0)
    z = Sampler(eps_std=1.0)(mu, logvar)
    assert abs(z.mean() - 1.5) < 0.01
    assert abs(z.std() - 0.5) < 0.01


def test_gradients_reach_mean_and_logvar_through_the_sample():
    mu = torch.tensor([[0.3]], requires_grad=True)
    logvar = torch.tensor([[0.2]], requires_grad=True)
    eps = torch.tensor([[0.7]])
    reparameterize(mu, logvar, eps).sum().backward()
    assert mu.grad.item() == 1.0
    # dz/dlogvar = 0.5 * exp(0.5 * logvar) * eps
    assert math.isclose(logvar.grad.item(), 0.5 * math.exp(0.1) * 0.7, rel_tol=1e-6)


def test_log_normal_matches_torch_distributions():
    z, mu, logvar = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal(z, mu, logvar), expected)


def test_mse_likelihood_is_the_gaussian_density_its_scale_implies():
    logits, x = torch.randn(2, 1, 3, 3), torch.rand(2, 1, 3, 3)
    scale = 1000.0
    sigma = math.sqrt(9 / (2 * scale))  # scale x mean over 9 pixels = sum / (2 sigma^2)
    expected = torch.distributions.Normal(torch.sigmoid(logits), sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(log_likelihood("mse", logits, x, scale), expected)
    torch.testing.assert_close(log_likelihood("bce", logits, x, scale), -bernoulli_recon(logits, x, "sum"))


def test_iwae_with_one_sample_is_the_negative_elbo_and_never_above_its_average():
    log_weights = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(iwae_nll(log_weights[:1]), -log_weights[0])
    assert (iwae_nll(log_weights) <= -log_weights.mean(0) + 1e-5).all()


def test_iwae_of_equal_weights_is_minus_their_log_weight():
    torch.testing.assert_close(iwae_nll(torch.full((10, 2), -3.0)), torch.full((2,), 3.0))


def test_mean_reduction_averages_instead_of_summing():
    values = torch.arange(12.0).reshape(2, 2, 3)
    torch.testing.assert_close(reduce_per_image(values, "sum"), torch.tensor([15.0, 51.0]))
    torch.testing.assert_close(reduce_per_image(values, "mean"), torch.tensor([2.5, 8.5]))


def test_free_bits_floors_each_dimensions_batch_mean_kl_and_stops_its_gradient():
    # Dim 0: batch-mean KL (0.1 + 0.3) / 2 = 0.2 < 0.5, counted as 0.5 each; dim 1: 2.0 >= 0.5, kept.
    kl = torch.tensor([[0.1, 1.0], [0.3, 3.0]], requires_grad=True)
    floored = free_bits(kl, 0.5)
    torch.testing.assert_close(floored, torch.tensor([[0.5, 1.0], [0.5, 3.0]]))
    torch.testing.assert_close(floored.sum(1).mean(), torch.tensor(0.5 + 2.0))  # sum_d max(0.5, mean KL_d)
    floored.sum().backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize(
    ("step", "expected"),
    # 100 steps in 4 cycles of 25; each rises over its first 12.5 steps.
    [(0, 0.0), (5, 0.4), (12, 0.96), (13, 1.0), (24, 1.0), (25, 0.0), (30, 0.4), (99, 1.0)],
)
def test_the_cyclical_schedule_restarts_every_cycle_and_rises_over_its_first_half(step, expected):
    assert cyclical_weight(step, total_steps=100, cycles=4) == pytest.approx(expected)


def test_the_learned_variance_gaussian_by_hand():
    # One value: mean sigmoid(0) = 0.5, x = 0.7, variance 0.04: 0.5 (log 2 pi + log 0.04 + 0.2^2 / 0.04).
    by_hand = 0.5 * (math.log(2 * math.pi) + math.log(0.04) + 1.0)
    logits, x = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.7)
    log_variance = torch.tensor(math.log(0.04))
    assert float(gaussian_recon(logits, x, log_variance)) == pytest.approx(by_hand, abs=1e-5)
    nll = -log_likelihood("gaussian", logits, x, 1.0, log_variance)
    assert float(nll) == pytest.approx(by_hand, abs=1e-5)


def test_dequantized_pixels_fill_their_bin_and_bits_per_dim_count_the_bins():
    pixels = torch.tensor([0, 7, 255], dtype=torch.uint8).repeat(1000)
    values = dequantize(pixels, torch.Generator().manual_seed(0))
    bins = pixels.float() / 256
    assert ((values >= bins) & (values < bins + 1 / 256)).all()
    assert bits_per_dim(0.0, 1) == pytest.approx(8.0)  # a density of 1 on [0, 1]: the uniform 8 bits
    assert bits_per_dim(-3 * math.log(256), 3) == pytest.approx(0.0)
