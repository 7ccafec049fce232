"""`python -m vae.compare [vae.train overrides]`: the plain autoencoder and the VAE side by side.

Trains both from the same network, data and seed (``ae/`` and ``vae/`` in the output folder),
or compares two finished runs (``python -m vae.compare ae=<run> vae=<run>``), and writes the
seed tutorials' comparison: test latents, decoded latent grids, reconstructions, samples from
each model's prior (N(0, I) for an AE) and from the box of the test latents, and a table of test losses.
"""

import json
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch.utils.tensorboard import SummaryWriter

from vae import latents, plots
from vae.checkpoints import device_for, load_run
from vae.config import check_arguments, register_schema
from vae.errors import UserError, exits_on_user_error
from vae.evaluation import loaded_test_set, posterior_means
from vae.module import VAE, to_unit_interval
from vae.train import train

RUN_KEYS = ("ae", "vae")  # ae=<run dir> vae=<run dir>: compare finished runs


def label(model: VAE) -> str:
    objective = model.objective
    return f"VAE (beta={objective.beta:g})" if objective.variational else "AE"


def check_comparable(first: tuple[VAE, object], second: tuple[VAE, object]) -> None:
    """Two runs compare only on the same dataset, image size and latent size."""
    (model_a, data_a), (model_b, data_b) = first, second
    if model_a.classes or model_b.classes:
        raise UserError("vae.compare draws unconditional models; leave out model.conditional=true")
    for what, a, b in (
        ("dataset", data_a.hparams["name"], data_b.hparams["name"]),
        ("image shape", tuple(model_a.hparams.image_shape), tuple(model_b.hparams.image_shape)),
        ("latent_dim", model_a.hparams.latent_dim, model_b.hparams.latent_dim),
    ):
        if a != b:
            raise UserError(f"the runs differ in {what} ({a} against {b}); compare runs of one setting")


@torch.no_grad()
def comparison_pictures(
    models: list[VAE], images: torch.Tensor, labels, class_names, grid_size: int, seed: int, projection: str
) -> dict[str, plots.Figure]:
    """The comparison figures by TensorBoard tag, from the same test images and the same draws."""
    latent_dim = models[0].hparams.latent_dim
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(grid_size**2, latent_dim, generator=generator)
    uniform = torch.rand(grid_size**2, generator=generator)  # a VampPrior's components
    shown = images[: grid_size**2]
    scatters, grids, samples = {}, {}, {}
    reconstructions = {"originals": plots.pixels(plots.image_grid(to_unit_interval(shown), grid_size))}
    for model in models:
        name = label(model)
        means = posterior_means(model, images).float().cpu()
        lower, upper = means.min(0).values, means.max(0).values
        scatter = plots.latent_scatter(means, labels, class_names, "test means", projection, seed)
        scatters[name] = plots.pixels(scatter)
        x = to_unit_interval(shown.to(model.device))
        reconstructions[name] = plots.pixels(plots.image_grid(model.reconstruct(x), grid_size))
        z = model.to_prior(eps.to(model.device), uniform)
        samples[f"{name}: z ~ {model.prior_name()}"] = _decoded(model, z, grid_size)
        box = latents.uniform_within(means, grid_size**2, torch.Generator().manual_seed(seed))
        samples[f"{name}: z uniform in the test box"] = _decoded(model, box, grid_size)
        if latent_dim == 2:  # the grid over the box each model's test means span
            unit = (latents.manifold_grid(grid_size, extent=1.0) + 1) / 2
            grids[f"{name}: grid over its test means"] = _decoded(
                model, lower + unit * (upper - lower), grid_size
            )
    pictures = {
        "compare/latent_scatter": plots.panels(scatters, "test-set latent means"),
        "compare/reconstructions": plots.panels(reconstructions, "test images and their reconstructions"),
        "compare/samples": plots.panels(
            samples, "decoded draws: an AE's code has no prior to sample", columns=2
        ),
    }
    if grids:
        pictures["compare/latent_grid"] = plots.panels(grids, "decoded latent grids")
    return pictures


def _decoded(model: VAE, z: torch.Tensor, per_row: int):
    return plots.pixels(plots.image_grid(model.decode(z.to(model.device)), per_row))


def loss_table(runs: dict[str, Path]) -> str:
    """Markdown: each run's test losses from its metrics.json (per image, nats)."""
    lines = ["| model | test recon | test KL | test loss | run |", "|---|---|---|---|---|"]
    for name, run in runs.items():
        summary = json.loads((run / "metrics.json").read_text())
        metrics = summary["metrics"]
        kl = f"{metrics['test/kl']:.2f}" if "test/kl" in metrics else "-"
        lines.append(f"| {name} | {metrics['test/recon']:.2f} | {kl} | {metrics['test/loss']:.2f} | {run} |")
    settings = summary["settings"]
    objective = settings["objective"]
    lines += [
        "",
        f"{settings['dataset']}, latent_dim={settings['latent_dim']}, {settings['epochs']} epochs, seed {settings['seed']}, "
        f"recon {objective['recon']} ({objective['recon_reduction']} over pixels), per test image.",
    ]
    return "\n".join(lines) + "\n"


def compare_runs(
    first: Path, second: Path, out: Path, grid_size: int, points: int, projection: str, seed: int
) -> Path:
    """Writes the comparison of two finished runs into ``out``: PNGs, TensorBoard images, compare.md."""
    for run in (first, second):
        if not (run / "metrics.json").exists():
            raise UserError(f"{run} has no metrics.json: compare finished runs (train them to the end)")
    loaded = [load_run(run, 256, None, device_for("auto")) for run in (first, second)]
    check_comparable(loaded[0][:2], loaded[1][:2])
    models = [model for model, _, _ in loaded]
    datamodule = loaded[0][1]
    images, labels = loaded_test_set(datamodule).head(points)
    class_names = getattr(datamodule, "class_names", None)
    pictures = comparison_pictures(models, images, labels, class_names, grid_size, seed, projection)
    out.mkdir(parents=True, exist_ok=True)
    with SummaryWriter(out) as writer:
        for tag, figure in pictures.items():
            values = plots.pixels(figure)
            writer.add_image(tag, values, dataformats="HWC")
            (out / f"{tag.replace('/', '_')}.png").write_bytes(plots.png(values))
    table = loss_table({label(model): run for model, run in zip(models, (first, second), strict=True)})
    (out / "compare.md").write_text(table)
    print(table, end="")
    return out


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="config")
@exits_on_user_error
def train_both(cfg: DictConfig) -> None:
    """Trains the AE, then the VAE, of one config, and compares them."""
    out = Path(HydraConfig.get().runtime.output_dir)
    for name, variational in (("ae", False), ("vae", True)):
        with open_dict(cfg):
            cfg.objective.variational = variational
        print(f"training the {name.upper()}: {out / name}")
        train(cfg, out / name)
    plots_cfg = cfg.plots
    compare_runs(
        out / "ae",
        out / "vae",
        out,
        plots_cfg.grid_size,
        plots_cfg.scatter_points,
        plots_cfg.projection,
        cfg.seed,
    )


@exits_on_user_error
def compared_finished_runs(arguments: list[str]) -> bool:
    """Compares two finished runs if the arguments name them (True); else checks them for training."""
    runs = dict(argument.split("=", 1) for argument in arguments if argument.split("=", 1)[0] in RUN_KEYS)
    if runs:
        if set(runs) != set(RUN_KEYS) or len(arguments) != 2:
            raise UserError("compare two finished runs as: python -m vae.compare ae=<run dir> vae=<run dir>")
        first, second = Path(runs["ae"]), Path(runs["vae"])
        out = second.parent / f"compare_{first.name}_{second.name}"
        compare_runs(first, second, out, grid_size=8, points=2000, projection="pca", seed=0)
        return True
    check_arguments(arguments)
    if any(argument.startswith("objective.variational=") for argument in arguments):
        raise UserError("vae.compare trains both objective.variational=false and true; leave it out")
    if "model.conditional=true" in arguments:
        raise UserError("vae.compare draws unconditional models; leave out model.conditional=true")
    return False


def main() -> None:
    """``python -m vae.compare``: ``ae=<run> vae=<run>`` compares finished runs, anything else trains both."""
    register_schema()
    if not compared_finished_runs(sys.argv[1:]):
        train_both()


if __name__ == "__main__":
    main()
