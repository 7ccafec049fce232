"""`python -m vae.generate ckpt=<run> mode=<mode>`: a seeded PNG grid decoded from latent space."""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from vae import latents, plots
from vae.checkpoints import device_for, load_run
from vae.config import positive_int, require_checkpoint
from vae.errors import UserError, exits_on_user_error
from vae.evaluation import loaded_test_set, posterior_means
from vae.module import VAE

MODES = ("prior", "uniform", "interpolate", "traverse", "manifold", "classes")


def latent_grid(cfg: DictConfig, model: VAE, datamodule) -> tuple[torch.Tensor, int]:
    """The latents to decode for ``cfg.mode`` and the number of images per row."""
    generator = torch.Generator().manual_seed(cfg.seed)
    latent_dim = model.hparams.latent_dim
    if cfg.mode == "prior":
        eps = torch.randn(cfg.rows**2, latent_dim, generator=generator)
        with torch.no_grad():
            return model.to_prior(eps, torch.rand(cfg.rows**2, generator=generator)).cpu(), cfg.rows
    if cfg.mode == "manifold" and latent_dim == 2:
        return latents.manifold_grid(cfg.steps, cfg.extent), cfg.steps
    means = posterior_means(model, loaded_test_set(datamodule).head(cfg.encode_limit)[0]).cpu()
    if cfg.mode == "uniform":
        return latents.uniform_within(means, cfg.rows**2, generator), cfg.rows
    if cfg.mode == "manifold":
        if latent_dim == 1:
            raise UserError(
                "mode=manifold needs at least 2 latent dimensions, this model has 1; use mode=traverse"
            )
        return latents.principal_plane(means, cfg.steps, cfg.extent), cfg.steps
    picks = torch.randperm(len(means), generator=generator)
    if cfg.mode == "interpolate":
        pairs = picks[: 2 * min(cfg.rows, len(means) // 2)].view(-1, 2)
        rows = [latents.interpolate(means[a], means[b], cfg.steps, cfg.spherical) for a, b in pairs]
        return torch.cat(rows), cfg.steps
    # traverse, the one mode left (main refuses any other)
    return latents.traverse(means[picks[0]], min(cfg.rows, latent_dim), cfg.steps, cfg.extent), cfg.steps


def class_rows(cfg: DictConfig, model: VAE, datamodule) -> plots.Figure:
    """The same ``steps`` prior draws decoded once per class, a row per class, labelled with its name."""
    if not model.classes:
        raise UserError(
            "mode=classes needs a conditional model (trained with model.conditional=true); this one is not"
        )
    z = torch.randn(cfg.steps, model.hparams.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
    labels = torch.arange(model.classes).repeat_interleave(cfg.steps)
    images = model.decode(z.repeat(model.classes, 1).to(model.device), labels.to(model.device))
    datamodule.setup("test")  # the Cartoon Set's class names come from its CSVs
    names = datamodule.class_names or [str(label) for label in range(model.classes)]
    grid = plots.pixels(plots.image_grid(images, cfg.steps))
    return plots.labelled_rows(grid, names, f"the same {cfg.steps} draws z ~ N(0, I), decoded for each class")


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="generate")
@exits_on_user_error
def main(cfg: DictConfig) -> None:
    require_checkpoint(cfg)
    if cfg.mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    for key in ("rows", "steps"):
        positive_int(cfg, key)
    positive_int(cfg, "encode_limit", least=2)  # two codes to interpolate between, or to span a plane
    model, datamodule, file = load_run(cfg.ckpt, 256, cfg.dataset_root, device_for(cfg.accelerator))
    if model.classes and cfg.mode != "classes":
        raise UserError(
            f"mode={cfg.mode} decodes without labels; this model is conditional: use mode=classes"
        )
    out = Path(cfg.out) if cfg.out else file.parent.parent / "generated" / f"{cfg.mode}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if cfg.mode == "classes":
        picture = class_rows(cfg, model, datamodule)
    else:
        z, per_row = latent_grid(cfg, model, datamodule)
        picture = plots.image_grid(model.decode(z.to(model.device)), per_row)
    plots.save_png(picture, out)
    print(out)


if __name__ == "__main__":
    main()
