"""`python -m vae.evaluate ckpt=<run>`: test-set bounds, latent usage, a linear probe, anomaly and denoising scores."""

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from vae import plots
from vae.allocator import keep_freed_memory
from vae.checkpoints import device_for, load_run
from vae.config import one_of, positive_int, require_checkpoint
from vae.data import build_datamodule
from vae.errors import UserError, exits_on_user_error
from vae.evaluation import denoise, loaded_test_set, per_image_measures, posterior_means
from vae.metrics import active_units, auroc, linear_probe_accuracy, psnr
from vae.module import VAE
from vae.objectives import bits_per_dim
from vae.precision import EVALUATION_PRECISIONS, evaluation_precision, network_precision

ANOMALY_SETS = ("mnist", "fashion_mnist")  # the same 28 x 28 grey images, preprocessed alike
SUBSETS = ("first", "random")


def evaluation_subset(
    test_set, limit: int | None, subset: str, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``limit`` test images and their labels: the first ones, or a seeded random choice (the
    start of MNIST's test set is easier than the rest, so a bound on it flatters a model)."""
    if limit is None or subset == "first":
        return test_set.head(limit)
    picks = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(seed))[:limit]
    return test_set[picks.sort().values]


def likelihood_name(model: VAE) -> str:
    name = _decoder_likelihood(model)
    if model.objective.prior != "normal":
        name += f"; prior: {model.prior_name()} (KL estimated from the k draws)"
    return f"{name}; conditional on the label: bounds of -log p(x|y)" if model.classes else name


def _decoder_likelihood(model: VAE) -> str:
    hp = model.objective
    if hp.recon == "bce":
        pixels = {
            "none": "[0, 1] pixels, not binarized",
            "dynamic": "dynamically binarized pixels (evaluated on one fixed, seeded draw)",
            "static": "statically binarized pixels (one fixed draw per image, made at loading)",
        }[hp.binarize]
        return f"Bernoulli on {pixels}"
    if hp.recon == "gaussian":
        return "Gaussian with learned variance on dequantized pixels ((k + u) / 256, one seeded draw of u)"
    return f"Gaussian with fixed variance P / (2 x {hp.mse_scale}) per pixel"


def summary(measures: dict[str, torch.Tensor]) -> dict:
    """Means over images of the per-image measures, plus latent usage."""
    result = {
        name: round(float(measures[name].mean()), 3)
        for name in ("recon", "kl", "negative_elbo", "iwae_nll")
        if name in measures
    }
    if "means" in measures:
        result["active_units"] = active_units(measures["means"])
    if "kl_per_dim" in measures:  # a closed-form KL to N(0, I)
        result["kl_per_dim"] = [round(float(value), 4) for value in measures["kl_per_dim"].mean(0)]
    return result


def anomaly_scores(cfg: DictConfig, model: VAE, datamodule, inliers: torch.Tensor) -> dict:
    """AUROC of -ELBO (or an autoencoder's error) separating the test set from another dataset's.

    Both sets are scored with the same ``anomaly_k`` draws per image, so neither gets a
    less noisy estimate.
    """
    if datamodule.hparams["name"] not in ANOMALY_SETS:
        raise UserError(
            f"anomaly= scores another MNIST-family test set ({', '.join(ANOMALY_SETS)}); "
            f"this model was trained on {datamodule.hparams['name']}"
        )
    other = {**datamodule.hparams, "name": cfg.anomaly}
    other.pop("batch_size", None)
    outlier_set = loaded_test_set(build_datamodule(other, cfg.batch_size))
    # Chosen as the inliers were: a random choice, or the first ones.
    outliers = evaluation_subset(outlier_set, cfg.limit, cfg.subset, cfg.seed)[0]
    if outliers.shape[1:] != inliers.shape[1:]:
        raise UserError(
            f"anomaly={cfg.anomaly} images are {tuple(outliers.shape[1:])}, the model's are {tuple(inliers.shape[1:])}"
        )
    key = "negative_elbo" if model.objective.variational else "recon"
    in_scores = per_image_measures(model, inliers, cfg.anomaly_k, cfg.batch_size, cfg.seed)[key]
    out_scores = per_image_measures(model, outliers, cfg.anomaly_k, cfg.batch_size, cfg.seed + 1)[key]
    return {
        "dataset": cfg.anomaly,
        "score": key,
        "images": len(outliers),
        "auroc": round(auroc(in_scores, out_scores), 4),
    }


def probe_scores(
    model: VAE, datamodule, test_images: torch.Tensor, test_labels: torch.Tensor, train_limit: int
) -> dict:
    """A linear probe's test accuracy on the posterior means, fit on ``train_limit`` training images' means.

    Both sets are encoded the same way, from their grey pixels (not the bound's binarized draw).
    """
    datamodule.setup("fit")
    train_images, train_labels = datamodule.train_set.head(train_limit)
    train_codes = posterior_means(model, train_images, train_labels).cpu()
    test_codes = posterior_means(model, test_images, test_labels).cpu()
    accuracy = linear_probe_accuracy(train_codes, train_labels, test_codes, test_labels)
    return {
        "accuracy": round(accuracy, 4),
        "train_images": len(train_images),
        "test_images": len(test_labels),
    }


def denoising_scores(cfg: DictConfig, model: VAE, images: torch.Tensor, folder: Path) -> dict:
    generator = torch.Generator(device=model.device).manual_seed(cfg.seed)
    scores, shown = {"noisy": [], "reconstructed": []}, None
    for batch in images.split(cfg.batch_size):
        result = denoise(model, batch, cfg.noise_factor, generator)
        for name in scores:
            scores[name].append(psnr(result[name], result["clean"]).cpu())
        if shown is None:
            shown = result
    picture = folder / "denoise.png"
    rows = [shown[name][:8] for name in ("noisy", "clean", "reconstructed")]
    plots.save_png(plots.image_grid(torch.cat(rows), per_row=8), picture)
    return {
        "noise_factor": cfg.noise_factor,
        "psnr_noisy_db": round(float(torch.cat(scores["noisy"]).mean()), 2),
        "psnr_reconstructed_db": round(float(torch.cat(scores["reconstructed"]).mean()), 2),
        "grid": str(picture),
    }


def measured(
    cfg: DictConfig, model: VAE, datamodule, file: Path, images: torch.Tensor, labels, folder: Path
) -> dict:
    """The evaluation's report of ``images`` (and ``labels``) of the test set."""
    measures = per_image_measures(model, images, cfg.k, cfg.batch_size, cfg.seed, labels)
    report = {
        "checkpoint": str(file),
        "dataset": datamodule.hparams["name"],
        "split": "test",
        "images": len(images),
        "subset": "all"
        if cfg.limit is None or cfg.limit >= len(datamodule.test_set)
        else f"{cfg.subset} {len(images)} (seed {cfg.seed})",
        "likelihood": likelihood_name(model),
        "units": "nats per image; recon summed over pixels, KL summed over latent dims",
        "k": cfg.k if model.objective.variational else None,
        "seed": cfg.seed,
        **summary(measures),
    }
    if labels is not None:
        report["linear_probe"] = probe_scores(model, datamodule, images, labels, cfg.probe_train_images)
    if model.objective.recon == "gaussian":  # a proper density of the 8-bit images
        values = images[0].numel()
        report["bits_per_dim"] = {
            name: round(bits_per_dim(report[name], values), 4)
            for name in ("negative_elbo", "iwae_nll")
            if name in report
        }
    if cfg.anomaly:
        report["anomaly"] = anomaly_scores(cfg, model, datamodule, images)
    if cfg.denoise:
        report["denoise"] = denoising_scores(cfg, model, images, folder)
    return report


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="evaluate")
@exits_on_user_error
def main(cfg: DictConfig) -> None:
    require_checkpoint(cfg)
    for key in ("k", "batch_size", "anomaly_k", "probe_train_images"):
        positive_int(cfg, key)
    if cfg.limit is not None:
        positive_int(cfg, "limit")
    one_of(cfg, "subset", SUBSETS)
    if cfg.anomaly not in (None, *ANOMALY_SETS):
        raise UserError(
            f"anomaly must be one of {ANOMALY_SETS} (another MNIST-family test set), got {cfg.anomaly!r}"
        )
    one_of(cfg, "precision", EVALUATION_PRECISIONS)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    model, datamodule, file = load_run(
        cfg.ckpt, cfg.batch_size, cfg.dataset_root, device_for(cfg.accelerator)
    )
    out = Path(cfg.out) if cfg.out else file.parent.parent / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)  # before the evaluation, which can take minutes
    images, labels = evaluation_subset(loaded_test_set(datamodule), cfg.limit, cfg.subset, cfg.seed)
    if model.classes and (cfg.anomaly or cfg.denoise):
        raise UserError(
            "anomaly= and denoise= score -log p(x); this model is conditional (p(x|y)): leave them out"
        )
    precision, reason = evaluation_precision(cfg.precision, model.trained_precision, cfg.accelerator)
    print(f"precision={precision}: {reason}")
    with network_precision(model.device, precision):
        report = measured(cfg, model, datamodule, file, images, labels, out.parent)
    report.update(precision=precision, precision_reason=reason)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
