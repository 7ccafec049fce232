"""The flow prior: its density against hand computations and a numerical integral, its KL and
bounds, and fitting it to a trained model's codes (python -m vae.fit_prior)."""

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import random_images, run_module
from vae.checkpoints import (
    PRIOR_FITTED_AFTER_TRAINING,
    check_resumable,
    hyperparameters_of,
    load_run,
    read_checkpoint,
    with_fitted_prior,
)
from vae.errors import UserError
from vae.evaluation import per_image_measures
from vae.flows import FlowPrior, fit_flow
from vae.module import VAE
from vae.objectives import log_normal


def trained_looking(flow: FlowPrior, seed: int = 0, scale: float = 0.5) -> FlowPrior:
    """``flow`` with random last layers (they start at zero, the identity), as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for coupling in flow.couplings:
            last = coupling.net[-1]
            last.weight.copy_(scale * torch.randn(last.weight.shape, generator=generator))
            last.bias.copy_(scale * torch.randn(last.bias.shape, generator=generator))
    return flow


def test_an_untrained_flow_is_the_standard_normal_by_hand():
    flow = FlowPrior(3, layers=4)
    z = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, -2.0]])
    # log N(z; 0, I) in 3-D: -(|z|^2 + 3 log(2 pi)) / 2, with |z|^2 = 0 and 9.
    by_hand = torch.tensor([-1.5 * math.log(2 * math.pi), -4.5 - 1.5 * math.log(2 * math.pi)])
    torch.testing.assert_close(flow.log_prob(z), by_hand)
    torch.testing.assert_close(flow.sample_from(z), z)


def test_the_density_integrates_to_one():
    flow = trained_looking(FlowPrior(2, layers=4, hidden=16))
    step = 0.04
    axis = torch.arange(-12, 12, step) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * step**2
        standard_normal_moves = (flow.log_prob(grid) - log_normal(grid, 0 * grid, 0 * grid)).abs().max()
    assert float(mass) == pytest.approx(1.0, abs=2e-3)
    assert standard_normal_moves > 0.5  # the flow is not the identity here


def test_the_density_is_the_change_of_variables_and_sampling_inverts_it():
    flow = trained_looking(FlowPrior(3, layers=5, hidden=8), seed=1)

    def forward(z: torch.Tensor) -> torch.Tensor:
        for coupling in flow.couplings:
            z = coupling(z)[0]
        return z

    for z in torch.randn(4, 3, generator=torch.Generator().manual_seed(2)):
        u = forward(z)
        jacobian = torch.autograd.functional.jacobian(forward, z)
        by_change_of_variables = log_normal(u, 0 * u, 0 * u) + torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(flow.log_prob(z), by_change_of_variables.detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(flow.sample_from(u.detach()), z, atol=1e-5, rtol=0)


def flow_vae(make_vae, layers: int = 4, **changes):
    model = {"family": "mlp", "hidden": [8], "activation": "relu"}
    return make_vae((1, 4, 4), latent_dim=2, model=model, prior="flow", prior_flow_layers=layers, **changes)


def gaussian_flow(flow: FlowPrior) -> FlowPrior:
    """One coupling that keeps z0 and maps z1 -> z1 exp(0.5) + 1 whatever z0 is: then z1 ~ N(m, v)
    with m = -exp(-0.5) and v = exp(-1), and z0 ~ N(0, 1)."""
    last = flow.couplings[0].net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, math.atanh(0.5), 0.0, 1.0]))  # log-scales, then shifts
    return flow


GAUSSIAN_MEAN, GAUSSIAN_LOGVAR = torch.tensor([0.0, -math.exp(-0.5)]), torch.tensor([0.0, -1.0])


def test_a_coupling_of_constant_scale_and_shift_is_a_gaussian_by_hand():
    flow = gaussian_flow(FlowPrior(2, layers=1))
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(flow.log_prob(z), log_normal(z, GAUSSIAN_MEAN, GAUSSIAN_LOGVAR))


def test_the_kl_and_the_bounds_use_the_flow_density(make_vae):
    model = flow_vae(make_vae, layers=1).eval()
    gaussian_flow(model.prior_flow)
    images = random_images(3, seed=0)
    with torch.no_grad():
        mu, logvar = model.encode(model.prepare(images))
    # KL(N(mu, s^2) || N(m, v)) = (log(v / s^2) + (s^2 + (mu - m)^2) / v - 1) / 2 per dimension.
    prior_var = GAUSSIAN_LOGVAR.exp()
    by_hand = 0.5 * ((GAUSSIAN_LOGVAR - logvar) + (logvar.exp() + (mu - GAUSSIAN_MEAN) ** 2) / prior_var - 1)
    by_hand = by_hand.sum(1)
    assert (by_hand > 0.2).all()  # far enough from the prior for a wrong density to show
    torch.manual_seed(0)
    with torch.no_grad():  # the training loss's one-draw estimate, over many draws of the first image
        training_kl = model.losses(model.prepare(images[:1]).expand(20_000, 1, 4, 4))["kl"].mean()
    assert float(training_kl) == pytest.approx(float(by_hand[0]), abs=0.03)
    measures = per_image_measures(model, images, k=20_000, batch_size=3, seed=0)
    assert "kl_per_dim" not in measures  # no closed form for a learned prior
    torch.testing.assert_close(measures["kl"], by_hand, atol=0.03, rtol=0)
    assert (measures["iwae_nll"] <= measures["negative_elbo"] + 1e-4).all()


def test_prior_samples_are_the_flow_of_normal_draws(make_vae):
    model = flow_vae(make_vae).eval()
    trained_looking(model.prior_flow)
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, model.decode(model.prior_flow.sample_from(eps)))
    assert not torch.allclose(samples, model.decode(eps))


def test_the_flow_learns_with_the_model(make_vae):
    model = flow_vae(make_vae)
    model.losses(torch.rand(4, 1, 4, 4))["loss"].mean().backward()
    last = model.prior_flow.couplings[-1].net[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0


def test_settings_a_learned_prior_cannot_have_are_refused(make_vae):
    with pytest.raises(ValueError, match="objective.prior=flow: .*free bits"):
        flow_vae(make_vae, free_bits=0.5)


def test_a_fitted_flow_finds_two_clusters_that_n01_misses():
    # Codes at (+-2, 0) with std 0.3: N(0, I) gives them about 0.5 * (4 + 0.09 + 0.09) + log(2 pi) = 3.93
    # nats; the clusters' own density about 2 * log(0.3) + log(2 pi) + 1 + log 2 = 0.99.
    torch.manual_seed(0)  # the flow's initial weights
    generator = torch.Generator().manual_seed(0)
    means = torch.tensor([[2.0, 0.0], [-2.0, 0.0]]).repeat(500, 1)
    logvars = torch.full_like(means, 2 * math.log(0.3))
    flow = fit_flow(means, logvars, layers=4, steps=300, batch_size=128, lr=3e-3, generator=generator)
    z = means + 0.3 * torch.randn(means.shape, generator=generator)
    with torch.no_grad():
        fitted, normal = -flow.log_prob(z).mean(), -log_normal(z, 0 * z, 0 * z).mean()
    assert float(normal) == pytest.approx(3.93, abs=0.15)
    assert float(fitted) < 2.0  # the identity it starts from scores 3.93


def test_a_fitted_prior_joins_the_model_it_was_fitted_to(make_vae):
    trained = make_vae(free_bits=0.05, kl_reduction="mean")  # training's settings a learned prior refuses
    checkpoint = {"hyper_parameters": dict(trained.hparams), "state_dict": trained.state_dict(), "epoch": 3}
    flow = trained_looking(FlowPrior(2, layers=3))
    fitted = with_fitted_prior(checkpoint, flow, layers=3)
    model = VAE(**hyperparameters_of(fitted))
    model.load_state_dict(fitted["state_dict"])  # strict: every weight of the network and the flow
    assert (model.objective.prior, model.objective.free_bits, fitted["epoch"]) == ("flow", 0.0, 3)
    z = torch.randn(5, 2)
    torch.testing.assert_close(model.log_prior(z), flow.log_prob(z))
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(model.encode(x)[0], trained.encode(x)[0])


@pytest.mark.slow  # commands run as subprocesses, on the real data
def test_fit_prior_writes_a_checkpoint_that_evaluates_and_is_not_resumed(
    finished_run: Path, data_dir: Path, tmp_path: Path
):
    out = tmp_path / "flow.ckpt"
    given = finished_run / "checkpoints" / "last.ckpt"
    before = given.read_bytes()
    fitted = run_module("vae.fit_prior", f"ckpt={given}", "steps=200", f"out={out}", data_dir=data_dir)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert "under N(0, I)" in fitted.stdout and given.read_bytes() == before
    model, _, _ = load_run(out, batch_size=64, dataset_root=str(data_dir), device="cpu")
    assert model.prior_flow is not None and model.objective.prior == "flow"
    report_file = tmp_path / "report.json"
    evaluated = run_module(
        "vae.evaluate", f"ckpt={out}", "k=20", "limit=64", f"out={report_file}", data_dir=data_dir
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert "a flow prior (8 affine couplings)" in report["likelihood"]
    assert report["iwae_nll"] <= report["negative_elbo"]
    checkpoint = read_checkpoint(out)
    assert checkpoint[PRIOR_FITTED_AFTER_TRAINING] and "optimizer_states" not in checkpoint
    with pytest.raises(UserError, match="fitted after training"):
        check_resumable(checkpoint, model, epochs=10, file=out)
    again = run_module("vae.fit_prior", f"ckpt={out}", data_dir=data_dir)  # not an N(0, I) model now
    assert again.returncode != 0 and "N(0, I)" in again.stderr.strip().splitlines()[-1]
