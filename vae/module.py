"""The LightningModule: an encoder, a reparameterized sampler and a decoder, trained on the ELBO."""

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from vae.nets import build_networks
from vae.objectives import RECONSTRUCTIONS, gaussian_kl, reconstruction, reparameterize


def to_unit_interval(images: Tensor) -> Tensor:
    """uint8 pixels (as the datamodules yield them) to floats in [0, 1], on their device."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class Sampler(nn.Module):
    """Draws z ~ q(z|x) = N(mu, exp(logvar)) by reparameterization."""

    def forward(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return reparameterize(mu, logvar, torch.randn_like(mu))


class VAE(pl.LightningModule):
    """A Gaussian-latent VAE whose loss per image is recon + beta * KL(q(z|x) || N(0, I)).

    Every argument is a plain value (the entry points resolve the Hydra config), so a
    checkpoint holds only tensors and plain containers.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        model: dict,
        recon: str,
        mse_scale: float,
        beta: float,
        lr: float,
    ) -> None:
        super().__init__()
        if recon not in RECONSTRUCTIONS:
            raise ValueError(f"unknown recon {recon!r}; choose one of {RECONSTRUCTIONS}")
        self.save_hyperparameters()
        self.encoder, self.decoder = build_networks(tuple(image_shape), latent_dim, **model)
        self.sampler = Sampler()

    # The public API, for notebooks and the other entry points.
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images in [0, 1] to the mean and log-variance of q(z|x)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes to images in [0, 1] (the decoder's mean)."""
        return torch.sigmoid(self.decoder(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images decoded from prior draws z ~ N(0, I)."""
        z = torch.randn(n, self.hparams.latent_dim, generator=generator, device=self.device)
        return self.decode(z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Images decoded from the posterior means: deterministic, as users expect of a preview."""
        return self.decode(self.encode(x)[0])

    def losses(self, x: Tensor) -> dict[str, Tensor]:
        """Per-image ``recon``, ``kl`` and ``loss`` (= recon + beta * kl) of images in [0, 1]."""
        mu, logvar = self.encoder(x)
        logits = self.decoder(self.sampler(mu, logvar))
        recon = reconstruction(self.hparams.recon, logits, x, self.hparams.mse_scale)
        kl = gaussian_kl(mu, logvar)
        return {"recon": recon, "kl": kl, "loss": recon + self.hparams.beta * kl}

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x = to_unit_interval(batch[0])
        means = {f"{stage}/{name}": value.mean() for name, value in self.losses(x).items()}
        self.log_dict(means, on_step=False, on_epoch=True, batch_size=len(x))
        if stage == "train":
            # Short names for the progress bar only; TensorBoard gets the epoch means above.
            live = {"recon": means["train/recon"], "kl": means["train/kl"]}
            self.log_dict(live, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return means[f"{stage}/loss"]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
