"""`python -m bench.studies.default_memory`: peak RSS of a default ``python -m vae.train`` run beside a plain loop.

Both train the default Fashion-MNIST conv VAE (its config, batch 128) for ``--epochs`` and
then test it, each in its own process, from launch to exit. The plain loop is the usual
PyTorch script: torchvision's dataset with ToTensor, a DataLoader, Adam, no framework. The
difference is what the project adds: Lightning, Hydra, TensorBoard, the pictures, the
checkpoints. Prints the table and keeps it in ``bench/results/``.
"""

import argparse
import datetime
import sys
import tempfile

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.report import publish, table
from bench.versus_reference import run_process
from bench.workloads import build_model, compose_config


def plain_loop(epochs: int) -> None:
    """The default net trained and tested the plain PyTorch way."""
    config = compose_config(())
    torch.manual_seed(config.seed)
    model = build_model(config, (1, 28, 28))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    to_tensor = transforms.ToTensor()
    train = datasets.FashionMNIST(config.data_dir, train=True, download=True, transform=to_tensor)
    test = datasets.FashionMNIST(config.data_dir, train=False, download=True, transform=to_tensor)
    for _ in range(epochs):
        for images, _ in DataLoader(train, batch_size=config.batch_size, shuffle=True):
            loss = model.losses(images)["loss"].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        total = sum(
            model.losses(images)["loss"].sum().item() for images, _ in DataLoader(test, batch_size=256)
        )
    print(f"test loss {total / len(test):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="run the plain loop in this process")
    arguments = parser.parse_args()
    if arguments.plain:
        plain_loop(arguments.epochs)
        return
    with tempfile.TemporaryDirectory() as run_dir:
        commands = {
            "plain PyTorch loop (torchvision + ToTensor + DataLoader)": [
                sys.executable, "-m", "bench.default_memory", "--plain", f"--epochs={arguments.epochs}"
            ],
            "`python -m vae.train` (defaults)": [
                sys.executable, "-m", "vae.train", f"epochs={arguments.epochs}", f"hydra.run.dir={run_dir}"
            ],
        }  # fmt: skip
        rows = []
        for name, command in commands.items():
            print(f"running {name} ...", flush=True)
            seconds, peak, code, output = run_process(command)
            if code:
                raise SystemExit(f"{name} failed:\n{output[-3000:]}")
            rows.append([name, f"{seconds:.0f}", "n/a" if peak is None else f"{peak / 2**30:.2f}"])
    lines = [
        f"# Peak memory of a default Fashion-MNIST run, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Default conv VAE, batch 128, {arguments.epochs} epoch(s) then the test set, on the CPU.",
        "",
        table(["run", "wall s", "peak RSS GiB"], rows),
    ]
    publish("\n".join(lines), "default-memory", datetime.datetime.now())


if __name__ == "__main__":
    main()
