"""`python -m vae.fit_prior ckpt=<.ckpt>`: a flow prior fitted to a trained VAE's latent codes.

Trained with N(0, I), a VAE's aggregate posterior q(z) = E_x q(z|x) is not N(0, I), and its
likelihood pays for the difference. A flow fitted to q(z) afterwards, encoder and decoder
fixed, is a proper prior for the same decoder: a tighter bound, and samples drawn where the
codes are (the two-stage VAE, Dai & Wipf 2019; ex-post density estimation, Ghosh et al. 2020).
"""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor

from vae.checkpoints import AtomicCheckpointIO, device_for, load_run, read_checkpoint, with_fitted_prior
from vae.config import one_of, positive_int, require_checkpoint
from vae.errors import UserError, exits_on_user_error
from vae.evaluation import posterior
from vae.flows import FlowPrior, fit_flow
from vae.objectives import log_standard_normal, reparameterize
from vae.precision import EVALUATION_PRECISIONS, evaluation_precision, network_precision


@torch.no_grad()
def held_out_nll(flow: FlowPrior, means: Tensor, logvars: Tensor, generator: torch.Generator) -> dict:
    """-log p(z) of one draw per held-out code, nats per code, under N(0, I) and under the flow."""
    z = reparameterize(means, logvars, torch.randn(means.shape, generator=generator, device=means.device))
    normal = -log_standard_normal(z).mean()
    return {"normal": round(normal.item(), 3), "flow": round(-flow.log_prob(z).mean().item(), 3)}


def check_options(cfg: DictConfig) -> None:
    """Refuse bad options in one line before anything is loaded."""
    require_checkpoint(cfg)
    for key in ("layers", "steps", "batch_size"):
        positive_int(cfg, key)
    if isinstance(cfg.lr, bool) or not isinstance(cfg.lr, int | float) or cfg.lr <= 0:
        raise UserError(f"lr must be a positive number, got {cfg.lr!r}; e.g. lr=1e-3")
    one_of(cfg, "precision", EVALUATION_PRECISIONS)


@hydra.main(version_base="1.3", config_path="pkg://vae.conf", config_name="fit_prior")
@exits_on_user_error
def main(cfg: DictConfig) -> None:
    check_options(cfg)
    model, datamodule, file = load_run(cfg.ckpt, 256, cfg.dataset_root, device_for(cfg.accelerator))
    if not model.closed_form_kl or model.classes:
        raise UserError(
            f"vae.fit_prior fits a flow prior to an unconditional VAE trained with N(0, I); {file} "
            "is not one (an autoencoder, a conditional VAE or a learned prior): give such a run's checkpoint"
        )
    # A run folder of its own, so that vae.evaluate's and vae.generate's outputs go beside it.
    out = Path(cfg.out) if cfg.out else file.parent.parent / "flow-prior" / "checkpoints" / file.name
    generator = torch.Generator(device=model.device).manual_seed(cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    precision, reason = evaluation_precision(cfg.precision, model.trained_precision, cfg.accelerator)
    print(f"precision={precision}: {reason}")
    with network_precision(model.device, precision):  # the codes of the images as trained: binarized
        train = posterior(model, datamodule.train_set.head()[0], generator=generator)
        held_out = posterior(model, datamodule.val_set.head()[0], generator=generator)
    torch.manual_seed(cfg.seed)  # the flow's initial weights
    flow = fit_flow(*train, cfg.layers, cfg.steps, cfg.batch_size, cfg.lr, generator)
    nll = held_out_nll(flow, *held_out, generator)
    split = (
        "test images (this run validates on them)"
        if datamodule.val_set is datamodule.test_set
        else "validation images"
    )
    print(
        f"-log p(z), nats per code, one draw of q(z|x) for each of {len(held_out[0])} {split}: "
        f"{nll['normal']} under N(0, I), {nll['flow']} under the fitted flow"
    )
    AtomicCheckpointIO().save_checkpoint(with_fitted_prior(read_checkpoint(file), flow, cfg.layers), out)
    print(f"{out}\nnext: python -m vae.evaluate ckpt={out}")


if __name__ == "__main__":
    main()
