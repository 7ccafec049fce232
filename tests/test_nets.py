"""Every model preset builds, gives the right shapes, and matches the tutorials' parameter counts."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vae.nets import build_networks

PRESETS = sorted(Path(__file__).resolve().parents[1].glob("conf/model/*.yaml"))
# The image each preset is made for; a new preset must be added here to be tested.
IMAGE_SHAPES = {"conv": (1, 28, 28), "mlp": (1, 28, 28), "cartoon_conv": (3, 64, 64)}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_preset_has_a_test_image_shape():
    assert {path.stem for path in PRESETS} <= set(IMAGE_SHAPES)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
@pytest.mark.parametrize("latent_dim", [1, 2, 16, 64])
def test_preset_shapes(preset: Path, latent_dim: int):
    shape = IMAGE_SHAPES[preset.stem]
    options = OmegaConf.to_container(OmegaConf.load(preset))
    encoder, decoder = build_networks(shape, latent_dim, True, **options)
    encoder.eval(), decoder.eval()
    mu, logvar = encoder(torch.rand(3, *shape))
    assert mu.shape == logvar.shape == (3, latent_dim)
    assert decoder(mu).shape == (3, *shape)


def test_seed000_network_has_the_tutorials_parameter_counts():
    encoder, decoder = build_networks(
        (1, 32, 32),
        2,
        True,
        family="conv",
        encoder_channels=[32, 64, 128],
        encoder_strides=[2, 2, 2],
        decoder_channels=[128, 64, 32],
        decoder_strides=[2, 2, 2],
        output_stride=1,
        kernel_size=3,
        batch_norm=False,
        activation="relu",
    )
    assert (count(encoder), count(decoder)) == (100_868, 246_273)


def test_seed002_mlp_has_the_tutorials_parameter_counts():
    encoder, decoder = build_networks((1, 28, 28), 2, True, family="mlp", hidden=[512], activation="relu")
    assert (count(encoder), count(decoder)) == (403_972, 403_728)


def test_seed001_fashion_net_flattens_to_7x7x64():
    options = OmegaConf.to_container(OmegaConf.load(Path(PRESETS[0]).with_name("conv.yaml")))
    encoder, _ = build_networks((1, 28, 28), 2, True, **options)
    assert encoder.mean.in_features == 3136


def test_sizes_the_strides_cannot_produce_are_rejected():
    options = OmegaConf.to_container(OmegaConf.load(Path(PRESETS[0]).with_name("conv.yaml")))
    with pytest.raises(ValueError, match="not divisible"):
        build_networks((1, 30, 30), 2, True, **options)


def test_unknown_family_and_bad_latent_size_are_rejected():
    with pytest.raises(ValueError, match="unknown model family"):
        build_networks((1, 28, 28), 2, True, family="transformer")
    with pytest.raises(ValueError, match="positive"):
        build_networks((1, 28, 28), 0, True, family="mlp", hidden=[8], activation="relu")
