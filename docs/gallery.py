"""`make gallery`: regenerates every picture in the README from short runs on the shared data.

Trains the default Fashion-MNIST VAE and its plain autoencoder (`python -m vae.compare`, 2
epochs), a Cartoon Set VAE at 64 px (5 epochs) and a conditional MNIST VAE (2 epochs), then
copies their pictures, shrunk, into docs/images/. About ten minutes on 2 CPU cores.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
SHARED = Path(os.environ.get("VAE_SHARED_DATA", DOCS.parent.parent / "shared" / "data"))
DATA = Path(os.environ.get("VAE_DATA_DIR", DOCS.parent / "data"))


def command(module: str, *overrides: str) -> None:
    env = {**os.environ, "VAE_DATA_DIR": str(DATA)}
    subprocess.run([sys.executable, "-m", module, *overrides], check=True, env=env, stdout=subprocess.DEVNULL)


def keep(source: Path, name: str, width: int) -> None:
    """``source`` shrunk to at most ``width`` pixels wide, as an optimised PNG in docs/images/."""
    image = Image.open(source)
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.save(IMAGES / name, optimize=True)


def main() -> None:
    for name in ("MNIST", "FashionMNIST"):  # the tests' way: copy the raw files, never write ../shared
        (DATA / name / "raw").mkdir(parents=True, exist_ok=True)
        for file in (SHARED / name / "raw").glob("*.gz"):
            if not (DATA / name / "raw" / file.name).exists():
                shutil.copyfile(file, DATA / name / "raw" / file.name)
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        compare, cartoon, conditional = (
            Path(scratch) / name for name in ("compare", "cartoon", "conditional")
        )
        command("vae.compare", "epochs=2", f"hydra.run.dir={compare}")
        for picture in ("latent_test", "latent_manifold", "reconstructions", "samples_prior"):
            keep(compare / "vae" / f"{picture}.png", f"fashion_{picture}.png", 400)
        for picture in ("latent_scatter", "samples"):
            keep(compare / f"compare_{picture}.png", f"compare_{picture}.png", 640)
        command(
            "vae.train",
            "dataset=cartoon",
            f"dataset.root={SHARED / 'cartoonset'}",
            "dataset.image_size=64",
            "epochs=5",
            f"hydra.run.dir={cartoon}",
        )
        keep(cartoon / "samples_prior.png", "cartoon_samples_prior.png", 400)
        keep(cartoon / "reconstructions.png", "cartoon_reconstructions.png", 400)
        command(
            "vae.train",
            "dataset=mnist",
            "model=mlp",
            "model.conditional=true",
            "epochs=2",
            f"hydra.run.dir={conditional}",
        )
        command("vae.generate", f"ckpt={conditional}", "mode=classes", f"out={conditional / 'classes.png'}")
        keep(conditional / "classes.png", "conditional_classes.png", 400)
    total = sum(file.stat().st_size for file in IMAGES.glob("*.png"))
    print(f"{len(list(IMAGES.glob('*.png')))} pictures in {IMAGES}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
