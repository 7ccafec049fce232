"""The VampPrior: its density against hand computations, its KL against a closed form, its bounds."""

import math

import pytest
import torch

from tests.conftest import random_images
from vae.evaluation import per_image_measures
from vae.objectives import log_normal, mixture_log_density


def test_a_two_component_mixture_density_by_hand():
    # 1-D, components N(0, 1) and N(2, 1) with equal weights, at z = 0:
    # log(0.5 * (phi(0) + phi(2))) with phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    by_hand = math.log(0.5 * (1 + math.exp(-2.0)) / math.sqrt(2 * math.pi))
    density = mixture_log_density(torch.zeros(1, 1), torch.tensor([[0.0], [2.0]]), torch.zeros(2, 1))
    assert float(density) == pytest.approx(by_hand, abs=1e-6)


def test_one_component_or_copies_of_it_is_that_gaussian():
    generator = torch.Generator().manual_seed(0)
    z, mean, logvar = (torch.randn(5, 3, generator=generator) for _ in range(3))
    single = mixture_log_density(z, mean[:1], logvar[:1])
    torch.testing.assert_close(single, log_normal(z, mean[:1], logvar[:1]))
    torch.testing.assert_close(mixture_log_density(z, mean[:1].repeat(4, 1), logvar[:1].repeat(4, 1)), single)


def vamp(make_vae, components: int = 1, **changes):
    model = {"family": "mlp", "hidden": [8], "activation": "relu"}
    return make_vae(
        (1, 4, 4), latent_dim=2, model=model, prior="vamp", prior_components=components, **changes
    )


def test_the_training_kl_estimates_the_closed_form_kl_to_a_one_component_prior(make_vae):
    model = vamp(make_vae).eval()
    x = torch.rand(1, 1, 4, 4).expand(20_000, 1, 4, 4)  # one image, many draws of its posterior
    torch.manual_seed(0)
    with torch.no_grad():
        estimate = model.losses(x)["kl"].mean()
        mu, logvar = model.encode(x[:1])
        prior_mu, prior_logvar = model.prior_components()
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2, per dimension.
    closed = (
        0.5 * (prior_logvar - logvar) + (logvar.exp() + (mu - prior_mu) ** 2) / (2 * prior_logvar.exp()) - 0.5
    ).sum()
    assert float(estimate) == pytest.approx(float(closed), abs=0.03)


def test_the_vamp_bounds_order_and_prior_samples(make_vae):
    model = vamp(make_vae, components=5).eval()
    images = random_images(6, seed=0)
    measures = per_image_measures(model, images, k=50, batch_size=3, seed=0)
    assert (measures["iwae_nll"] <= measures["negative_elbo"] + 1e-4).all()
    assert "kl_per_dim" not in measures  # no closed form for a mixture prior
    with torch.no_grad():  # eps = 0 draws the components' means themselves
        means, _ = model.prior_components()
        picked = model.to_prior(torch.zeros(5, 2), torch.tensor([0.0, 0.2, 0.4, 0.6, 0.99]))
    torch.testing.assert_close(picked, means)
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)  # the same stream: eps, then the component picks
    eps, uniform = torch.randn(4, 2, generator=generator), torch.rand(4, generator=generator)
    torch.testing.assert_close(samples, model.decode(model.to_prior(eps, uniform)))
    assert not torch.allclose(samples, model.decode(eps))  # not N(0, I) draws


def test_the_pseudo_inputs_learn(make_vae):
    model = vamp(make_vae, components=3)
    model.losses(torch.rand(4, 1, 4, 4))["loss"].mean().backward()
    assert model.pseudo_inputs.grad is not None and model.pseudo_inputs.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"kl_reduction": "mean"}, "kl_reduction=sum"),
        ({"free_bits": 0.5}, "free bits"),
        ({"variational": False}, "no prior"),
    ],
)
def test_settings_a_mixture_prior_cannot_have_are_refused(make_vae, changes, why):
    with pytest.raises(ValueError, match=f"objective.prior=vamp: .*{why}"):
        vamp(make_vae, **changes)


def test_with_batch_norm_the_prior_is_the_same_in_training_and_leaves_the_image_statistics(make_vae):
    conv = {
        "family": "conv", "encoder_channels": [4], "encoder_strides": [2], "encoder_dense": [],
        "decoder_channels": [4], "decoder_strides": [2], "output_stride": 1, "kernel_size": 3,
        "batch_norm": True, "activation": "relu",
    }  # fmt: skip
    torch.manual_seed(0)
    model = make_vae((1, 4, 4), latent_dim=2, model=conv, prior="vamp", prior_components=3)
    norm = next(layer for layer in model.encoder.modules() if isinstance(layer, torch.nn.BatchNorm2d))
    model.train()
    model.losses(torch.rand(8, 1, 4, 4))  # one step's statistics of the images
    seen = norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked)
    training_prior = model.prior_components()
    assert torch.equal(norm.running_mean, seen[0]) and torch.equal(norm.running_var, seen[1])
    assert int(norm.num_batches_tracked) == seen[2] and norm.training
    evaluation_prior = model.eval().prior_components()
    for during_training, in_evaluation in zip(training_prior, evaluation_prior, strict=True):
        torch.testing.assert_close(during_training, in_evaluation)
    assert training_prior[0].requires_grad  # the pseudo-inputs still learn through it
