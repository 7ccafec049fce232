"""The AE against the VAE: refusal of runs that do not compare, the figures, the command."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import QUICK, random_images, run_module
from vae import plots
from vae.compare import check_comparable, comparison_pictures, label
from vae.errors import UserError


def data(name: str) -> SimpleNamespace:
    return SimpleNamespace(hparams={"name": name})


def test_runs_of_another_dataset_image_size_or_latent_size_are_refused(make_vae):
    ae = make_vae((1, 28, 28), latent_dim=2, variational=False)
    for other, data_name, what in (
        (make_vae((1, 28, 28), latent_dim=2), "mnist", "dataset"),
        (make_vae((1, 32, 32), latent_dim=2), "fashion_mnist", "image shape"),
        (make_vae((1, 28, 28), latent_dim=3), "fashion_mnist", "latent_dim"),
    ):
        with pytest.raises(UserError, match=f"the runs differ in {what}"):
            check_comparable((ae, data("fashion_mnist")), (other, data(data_name)))
    check_comparable((ae, data("mnist")), (make_vae((1, 28, 28), latent_dim=2), data("mnist")))  # comparable


def test_the_figures_show_both_models_from_the_same_draws(make_vae):
    models = [make_vae((1, 28, 28), 2, variational=False).eval(), make_vae((1, 28, 28), 2, beta=4.0).eval()]
    assert [label(model) for model in models] == ["AE", "VAE (beta=4)"]
    images = random_images(50, (1, 28, 28), seed=0)
    labels = torch.arange(50) % 2
    first = comparison_pictures(models, images, labels, ["a", "b"], grid_size=3, seed=0, projection="pca")
    assert set(first) == {
        "compare/latent_scatter",
        "compare/reconstructions",
        "compare/samples",
        "compare/latent_grid",
    }
    titles = [axes.get_title() for axes in first["compare/samples"].axes]
    assert titles == [
        "AE: z ~ N(0, I)",
        "AE: z uniform in the test box",
        "VAE (beta=4): z ~ N(0, I)",
        "VAE (beta=4): z uniform in the test box",
    ]
    assert [axes.get_title() for axes in first["compare/reconstructions"].axes] == [
        "originals",
        "AE",
        "VAE (beta=4)",
    ]
    again = comparison_pictures(models, images, labels, ["a", "b"], grid_size=3, seed=0, projection="pca")
    for tag, figure in first.items():  # fixed draws: the same command gives the same pictures
        assert np.array_equal(plots.pixels(figure), plots.pixels(again[tag])), tag


def test_a_vampprior_models_samples_come_from_its_own_prior_and_say_so(make_vae):
    torch.manual_seed(0)
    vamp = make_vae((1, 28, 28), 2, prior="vamp", prior_components=3).eval()
    with torch.no_grad():
        vamp.encoder.mean.bias.fill_(40.0)  # every component far from N(0, I): its draws must show it
    images = random_images(20, (1, 28, 28))
    pictures = comparison_pictures([vamp], images, None, None, grid_size=3, seed=0, projection="pca")
    panel = pictures["compare/samples"].axes[0]
    assert panel.get_title() == "VAE (beta=1): z ~ the VampPrior (3 pseudo-inputs)"
    eps = torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    standard = plots.pixels(plots.image_grid(vamp.decode(eps), 3))
    shown = panel.images[0].get_array()
    assert not np.array_equal(np.asarray(shown), standard)


@pytest.mark.slow
def test_compare_trains_both_and_refuses_a_run_of_another_latent_size(
    data_dir: Path, finished_run: Path, tmp_path: Path
):
    out = tmp_path / "compare"
    result = run_module("vae.compare", *QUICK, "latent_dim=3", f"hydra.run.dir={out}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for picture in ("latent_scatter", "reconstructions", "samples"):
        assert (out / f"compare_{picture}.png").stat().st_size > 10_000
    table = (out / "compare.md").read_text()
    for name, run in (("AE", out / "ae"), ("VAE (beta=1)", out / "vae")):
        metrics = json.loads((run / "metrics.json").read_text())["metrics"]
        assert f"| {name} | {metrics['test/recon']:.2f} |" in table
    assert (
        json.loads((out / "ae" / "metrics.json").read_text())["settings"]["objective"]["variational"] is False
    )
    refused = run_module("vae.compare", f"ae={out / 'ae'}", f"vae={finished_run}", data_dir=data_dir)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: the runs differ in latent_dim (3 against 2); compare runs of one setting"
    ]
