"""pytorch/examples' ``vae/main.py``, reimplemented minimally: the speed reference for the MLP preset.

Its pipeline as published: torchvision MNIST with ToTensor per sample, DataLoader(batch 128,
shuffle, no workers), the 784-400-20 VAE with sigmoid outputs, binary cross-entropy summed
plus KL summed, Adam 1e-3, seed 1, ``loss.item()`` every step and a line every 10 batches,
then per epoch a test pass, a reconstruction grid and a sample grid. Only its CUDA branch is
left out, and the grids go to a temporary folder instead of ``results/``. It trains on all
60,000 training images; the project holds 5,000 out for validation.

``python -m bench.reference_mlp --epochs 10`` prints the same lines as the original.
"""

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.utils import save_image

LOG_INTERVAL = 10


class ReferenceVAE(nn.Module):
    """The example's model: 784-400-(20, 20) encoder, 20-400-784 decoder with sigmoid outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """BCE on probabilities plus the closed-form KL, both summed over the batch, as the example does."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_epoch(
    model: ReferenceVAE, optimizer: torch.optim.Optimizer, loader: DataLoader, epoch: int
) -> None:
    model.train()
    train_loss = 0.0
    for batch_idx, (data, _) in enumerate(loader):
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % LOG_INTERVAL == 0:
            print(
                f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(loader.dataset)} "
                f"({100.0 * batch_idx / len(loader):.0f}%)]\tLoss: {loss.item() / len(data):.6f}"
            )
    print(f"====> Epoch: {epoch} Average loss: {train_loss / len(loader.dataset):.4f}")


def test_epoch(model: ReferenceVAE, loader: DataLoader, epoch: int, results: Path) -> float:
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for i, (data, _) in enumerate(loader):
            recon_batch, mu, logvar = model(data)
            test_loss += loss_function(recon_batch, data, mu, logvar).item()
            if i == 0:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon_batch.view(loader.batch_size, 1, 28, 28)[:n]])
                save_image(comparison, results / f"reconstruction_{epoch}.png", nrow=n)
    test_loss /= len(loader.dataset)
    print(f"====> Test set loss: {test_loss:.4f}")
    return test_loss


def main(epochs: int, data_dir: str) -> None:
    torch.manual_seed(1)
    to_tensor = transforms.ToTensor()
    train_set = datasets.MNIST(data_dir, train=True, download=True, transform=to_tensor)
    test_set = datasets.MNIST(data_dir, train=False, transform=to_tensor)
    train_loader = DataLoader(train_set, batch_size=128, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=128, shuffle=True)
    model = ReferenceVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder)
        for epoch in range(1, epochs + 1):
            train_epoch(model, optimizer, train_loader, epoch)
            test_epoch(model, test_loader, epoch, results)
            with torch.no_grad():
                sample = model.decode(torch.randn(64, 20))
                save_image(sample.view(64, 1, 28, 28), results / f"sample_{epoch}.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR", "data"))
    arguments = parser.parse_args()
    main(arguments.epochs, arguments.data_dir)
