"""A small normalizing flow over the latent space, used as a learned prior p(z).

RealNVP's affine couplings (Dinh et al. 2017): each layer keeps half the coordinates and
scales and shifts the other half by functions of the kept ones, so the density is exact
(a triangular Jacobian) and sampling is one pass backwards. The last linear layer of each
coupling starts at zero: an untrained flow is the identity, and its prior is N(0, I).
"""

import torch
from torch import Tensor, nn

from vae.objectives import log_standard_normal, reparameterize


def coupling_masks(dim: int, layers: int) -> Tensor:
    """``layers`` 0/1 masks over ``dim`` coordinates (1: kept): even and odd coordinates, then
    the first and the second half, in turn, so that from two layers on every coordinate is
    transformed by others."""
    index = torch.arange(dim)
    patterns = [index % 2 == 0, index % 2 == 1, index < dim // 2, index >= dim // 2]
    return torch.stack([patterns[layer % 4] for layer in range(layers)]).float()


class AffineCoupling(nn.Module):
    """z -> z * exp(s) + t on the unkept coordinates, with s and t functions of the kept ones."""

    def __init__(self, mask: Tensor, hidden: int) -> None:
        super().__init__()
        dim = len(mask)
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 2 * dim)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def scale_and_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        """log-scale (bounded by tanh, so that no step explodes) and shift of the unkept coordinates."""
        log_scale, shift = self.net(kept).chunk(2, dim=-1)
        free = 1 - self.mask
        return torch.tanh(log_scale) * free, shift * free

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The transformed ``z`` and log |det dz'/dz| per row."""
        log_scale, shift = self.scale_and_shift(z * self.mask)
        return z * log_scale.exp() + shift, log_scale.sum(-1)

    def inverse(self, u: Tensor) -> Tensor:
        """The z that ``forward`` maps to ``u``."""
        log_scale, shift = self.scale_and_shift(u * self.mask)  # the kept half is unchanged
        return (u - shift) * (-log_scale).exp()


class FlowPrior(nn.Module):
    """p(z) = N(f(z); 0, I) |det df/dz|, with f a stack of affine couplings."""

    def __init__(self, dim: int, layers: int, hidden: int = 256) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(AffineCoupling(mask, hidden) for mask in coupling_masks(dim, layers))

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for ``z`` ``[..., D]``, in float32 whatever autocast says (the flow is small)."""
        with torch.autocast(z.device.type, enabled=False):
            u, log_det = z.float(), torch.zeros(z.shape[:-1], device=z.device)
            for coupling in self.couplings:
                u, step = coupling(u)
                log_det = log_det + step
            return log_standard_normal(u) + log_det

    def sample_from(self, eps: Tensor) -> Tensor:
        """Draws of p(z) from draws ``eps`` of N(0, I): f^-1(eps)."""
        with torch.autocast(eps.device.type, enabled=False):
            z = eps.float()
            for coupling in reversed(self.couplings):
                z = coupling.inverse(z)
            return z


def fit_flow(
    means: Tensor,
    logvars: Tensor,
    layers: int,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> FlowPrior:
    """A flow of ``layers`` couplings that maximises E log p(z) over draws z ~ q(z|x) of the codes."""
    flow = FlowPrior(means.shape[1], layers).to(means.device)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    for _ in range(steps):
        rows = torch.randint(len(means), (batch_size,), generator=generator, device=means.device)
        eps = torch.randn((batch_size, means.shape[1]), generator=generator, device=means.device)
        loss = -flow.log_prob(reparameterize(means[rows], logvars[rows], eps)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return flow.requires_grad_(False)
