"""Test-set measures on a model whose exact likelihood is known."""

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import random_images
from vae import evaluate
from vae.data.memory import InMemoryImages
from vae.evaluation import bounds, denoise, evaluation_streams, per_image_measures
from vae.module import Sampler


def prior_model(make_vae, pixel_logit: float):
    """q(z|x) = p(z) = N(0, I) and a decoder that ignores z: every bound equals the exact -log p(x)."""
    model = make_vae((1, 2, 2), 3, model={"family": "mlp", "hidden": [], "activation": "relu"}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.decoder[0].bias.fill_(pixel_logit)
    return model


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "network in bf16"])
def test_every_bound_is_exact_when_the_posterior_is_the_prior(make_vae, bf16: bool):
    """Also with the network under autocast (`vae.evaluate precision=bf16-mixed`): logits of 0
    and N(0, I) heads are exact in bf16, and every term of the bound is float32."""
    model = prior_model(make_vae, pixel_logit=0.0)  # p(pixel on) = 1/2
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        result = bounds(model, x, k=50, chunk=7, generator=torch.Generator().manual_seed(0))
    exact = 4 * math.log(2)  # four pixels, each with probability 1/2
    for name in ("recon", "negative_elbo", "iwae_nll"):  # assert_close checks the float32 dtype too
        torch.testing.assert_close(result[name], torch.tensor([exact]), msg=name)
    torch.testing.assert_close(result["kl"], torch.zeros(1))
    assert result["means"].dtype == torch.float32


def test_importance_weighting_tightens_the_bound(make_vae):
    torch.manual_seed(0)
    model = make_vae((1, 4, 4), 2).eval()
    x = torch.rand(6, 1, 4, 4).round()
    result = bounds(model, x, k=2000, chunk=500, generator=torch.Generator().manual_seed(0))
    assert (result["iwae_nll"] <= result["negative_elbo"] + 0.05).all()
    assert result["means"].shape == (6, 2) and result["kl_per_dim"].shape == (6, 2)


def test_evaluations_at_neighbouring_seeds_share_no_stream():
    """The anomaly score evaluates inliers at seed s and outliers at s + 1: neither may reuse the other's noise."""
    streams = [generator.initial_seed() for seed in range(4) for generator in evaluation_streams(seed, "cpu")]
    assert len(set(streams)) == len(streams)


def test_an_autoencoder_is_measured_by_its_reconstruction_only(make_vae):
    model = make_vae(variational=False).eval()
    images = random_images(10)
    measures = per_image_measures(model, images, k=5, batch_size=4, seed=0)
    assert set(measures) == {"recon"} and measures["recon"].shape == (10,)


def test_bounds_at_different_k_see_the_same_binarized_images(make_vae, monkeypatch):
    """k changes how many posterior draws each batch takes, not which binarization the next batch gets."""
    model = make_vae(binarize="dynamic").eval()
    images = random_images(10)
    seen: list[torch.Tensor] = []

    def recorded(*args):
        seen.append(original(*args))
        return seen[-1]

    original = model.prepare
    monkeypatch.setattr(model, "prepare", recorded)
    per_image_measures(model, images, k=2, batch_size=4, seed=0)
    at_k2, seen[:] = list(seen), []
    per_image_measures(model, images, k=7, batch_size=4, seed=0)
    assert len(at_k2) == len(seen) == 3
    for first, second in zip(at_k2, seen, strict=True):
        torch.testing.assert_close(first, second)
    assert set(seen[0].unique().tolist()) == {0.0, 1.0}  # binarized


def test_denoising_adds_clipped_noise_of_the_given_size(make_vae):
    model = make_vae().eval()
    images = torch.full((500, 1, 4, 4), 128, dtype=torch.uint8)
    result = denoise(model, images, 0.1, torch.Generator().manual_seed(0))
    assert result["noisy"].min() >= 0 and result["noisy"].max() <= 1
    assert abs((result["noisy"] - result["clean"]).std() - 0.1) < 0.005
    assert result["reconstructed"].shape == images.shape
    silent = denoise(model, images, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(silent["noisy"], silent["clean"])


@pytest.mark.parametrize(
    ("sampler_std", "eps_std", "variance"),
    [("exp_half_logvar", 1.0, 0.25), ("exp_logvar", 1.0, 0.25**2), ("exp_half_logvar", 0.1, 0.25 * 0.01)],
)
def test_the_kl_is_that_of_the_posterior_the_sampler_draws_from(make_vae, sampler_std, eps_std, variance):
    """The logvar head reads log 0.25; what q(z|x) is depends on how the sampler uses it."""
    model = prior_model(make_vae, pixel_logit=0.0)
    model.sampler = Sampler(eps_std, sampler_std)
    with torch.no_grad():
        model.encoder.logvar.bias.fill_(math.log(0.25))
    x = torch.ones(1, 1, 2, 2)
    result = bounds(model, x, k=20_000, chunk=5_000, generator=torch.Generator().manual_seed(0))
    kl_per_dim = 0.5 * (variance - 1 - math.log(variance))  # KL(N(0, variance) || N(0, 1))
    torch.testing.assert_close(result["kl_per_dim"], torch.full((1, 3), kl_per_dim))
    # ... and the draws themselves have that variance.
    z = model.sampler(torch.zeros(200_000, 1), torch.full((200_000, 1), math.log(0.25)))
    assert abs(z.var().item() / variance - 1) < 0.02


def test_a_conditional_models_bounds_are_of_x_given_its_label(make_vae):
    torch.manual_seed(0)  # the weights: the test's outcome must not depend on the tests run before it
    model = make_vae(
        (1, 4, 4),
        latent_dim=2,
        model={"family": "mlp", "hidden": [8], "activation": "relu", "conditional": True},
        classes=3,
    )
    model.eval()
    images = random_images(6, seed=0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    given = per_image_measures(model, images, k=500, batch_size=4, seed=0, labels=labels)
    other = per_image_measures(model, images, k=500, batch_size=4, seed=0, labels=(labels + 1) % 3)
    # -ELBO's KL is in closed form, its recon a k-draw mean: the two bounds meet within its noise
    assert (given["iwae_nll"] <= given["negative_elbo"] + 0.05).all()
    assert not torch.allclose(given["negative_elbo"], other["negative_elbo"])  # the label enters the bound
    with torch.no_grad():  # the closed-form KL of q(z|x, y), as the training loss has it
        x = images.float() / 255
        torch.testing.assert_close(given["kl"], model.losses(x, labels=labels)["kl"], rtol=1e-5, atol=1e-5)


def test_a_random_subset_is_seeded_and_a_first_one_is_the_start():
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1)
    test_set = InMemoryImages(images, torch.arange(20))
    first, labels = evaluate.evaluation_subset(test_set, 5, "first", seed=0)
    assert first.flatten().tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [0, 1, 2, 3, 4]
    chosen, chosen_labels = evaluate.evaluation_subset(test_set, 5, "random", seed=3)
    assert torch.equal(chosen, evaluate.evaluation_subset(test_set, 5, "random", seed=3)[0])
    assert chosen.flatten().tolist() == chosen_labels.tolist() != [0, 1, 2, 3, 4]  # images keep their labels
    assert len(set(chosen.flatten().tolist())) == 5


def test_a_learned_variance_model_is_evaluated_on_one_seeded_dequantization(make_vae):
    model = make_vae((3, 4, 4), latent_dim=2, recon="gaussian").eval()
    images = random_images(5, (3, 4, 4), seed=0)
    first = per_image_measures(model, images, k=500, batch_size=5, seed=0)
    again = per_image_measures(model, images, k=500, batch_size=5, seed=0)
    torch.testing.assert_close(first["iwae_nll"], again["iwae_nll"])  # the same u and the same draws
    # The ELBO's KL is exact and its recon sampled, so only the means are ordered for sure.
    assert first["iwae_nll"].mean() < first["negative_elbo"].mean()
    model.train()
    model.losses(model.prepare(images))["loss"].mean().backward()
    assert model.log_variance.grad is not None and model.log_variance.grad.abs().sum() > 0


def test_the_probe_encodes_its_training_and_test_images_alike(make_vae, monkeypatch):
    """A dynamically binarized model: the probe sees the same images as the same codes on both sides."""
    model = make_vae(binarize="dynamic").eval()
    images, labels = random_images(12), torch.arange(12) % 3
    datamodule = SimpleNamespace(setup=lambda stage: None, train_set=InMemoryImages(images, labels))
    seen = {}

    def recorded(train_codes, train_labels, test_codes, test_labels):
        seen.update(train=train_codes, test=test_codes)
        return 1.0

    monkeypatch.setattr(evaluate, "linear_probe_accuracy", recorded)
    evaluate.probe_scores(model, datamodule, images, labels, train_limit=12)
    torch.testing.assert_close(seen["train"], seen["test"])


def test_the_anomaly_scores_outliers_chosen_as_the_inliers_are(make_vae, monkeypatch):
    """subset=random: the outliers are a seeded random choice too, not the (easier) start of their test set."""
    outlier_set = InMemoryImages(random_images(20, seed=1), torch.arange(20))
    monkeypatch.setattr(evaluate, "build_datamodule", lambda hparams, batch_size: None)
    monkeypatch.setattr(evaluate, "loaded_test_set", lambda datamodule: outlier_set)
    scored = []

    def measures(model, images, *args):
        scored.append(images)
        return {"negative_elbo": images.float().flatten(1).mean(1)}

    monkeypatch.setattr(evaluate, "per_image_measures", measures)
    cfg = OmegaConf.create(
        {"anomaly": "mnist", "anomaly_k": 2, "batch_size": 4, "seed": 3, "limit": 5, "subset": "random"}
    )
    datamodule = SimpleNamespace(hparams={"name": "fashion_mnist", "batch_size": 4})
    evaluate.anomaly_scores(cfg, make_vae().eval(), datamodule, random_images(5))
    assert torch.equal(scored[1], evaluate.evaluation_subset(outlier_set, 5, "random", seed=3)[0])
    assert not torch.equal(scored[1], outlier_set.head(5)[0])
