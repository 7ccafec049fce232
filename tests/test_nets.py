"""Every model preset builds, gives the right shapes, and matches the tutorials' parameter counts."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vae.nets import build_networks

PRESETS = sorted(Path(__file__).resolve().parents[1].glob("conf/model/*.yaml"))
# The image each preset is made for; a new preset must be added here to be tested.
IMAGE_SHAPES = {
    "conv": (1, 28, 28),
    "mlp": (1, 28, 28),
    "cartoon_conv": (3, 64, 64),
    "seed000_conv": (1, 32, 32),
    "seed003_conv": (1, 28, 28),
    "seed004_dense": (1, 28, 28),
    "mnist_conv": (1, 28, 28),
}


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


def preset(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(PRESETS[0].with_name(f"{name}.yaml")))


def test_seed000_preset_has_the_notebooks_parameter_counts():
    encoder, decoder = build_networks((1, 32, 32), 2, True, **preset("seed000_conv"))
    assert (count(encoder), count(decoder)) == (100_868, 246_273)


def test_seed003_preset_has_a_dense_20_layer_before_the_heads():
    encoder, _ = build_networks((1, 28, 28), 2, True, **preset("seed003_conv"))
    assert encoder.mean.in_features == 20


def test_an_autoencoder_encoder_has_no_logvar_head():
    encoder, _ = build_networks((1, 32, 32), 2, False, **preset("seed000_conv"))
    assert encoder.logvar is None
    assert count(encoder) == 100_868 - (2048 * 2 + 2)  # the notebook's VAE encoder less one head


def test_seed002_mlp_has_the_tutorials_parameter_counts():
    encoder, decoder = build_networks((1, 28, 28), 2, True, family="mlp", hidden=[512], activation="relu")
    assert (count(encoder), count(decoder)) == (403_972, 403_728)


def test_seed001_fashion_net_flattens_to_7x7x64():
    encoder, _ = build_networks((1, 28, 28), 2, True, **preset("conv"))
    assert encoder.mean.in_features == 3136


def test_sizes_the_strides_cannot_produce_are_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        build_networks((1, 30, 30), 2, True, **preset("conv"))


@pytest.mark.parametrize("kernel_size", [1, 5])
def test_odd_kernels_keep_the_image_size_and_even_ones_are_rejected(kernel_size: int):
    encoder, decoder = build_networks((1, 28, 28), 2, True, **{**preset("conv"), "kernel_size": kernel_size})
    assert decoder(encoder(torch.rand(3, 1, 28, 28))[0]).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        build_networks((1, 28, 28), 2, True, **{**preset("conv"), "kernel_size": kernel_size + 1})


def test_unknown_family_and_bad_latent_size_are_rejected():
    with pytest.raises(ValueError, match="unknown model family"):
        build_networks((1, 28, 28), 2, True, family="transformer")
    with pytest.raises(ValueError, match="positive"):
        build_networks((1, 28, 28), 0, True, family="mlp", hidden=[8], activation="relu")


def test_glorot_init_draws_weights_as_keras_does():
    mlp = {"family": "mlp", "hidden": [512], "activation": "relu"}
    keras_like, _ = build_networks((1, 28, 28), 2, True, init="glorot", **mlp)
    torch_default, _ = build_networks((1, 28, 28), 2, True, **mlp)
    first, default_first = keras_like.body[1], torch_default.body[1]
    glorot_bound = math.sqrt(6 / (784 + 512))  # 0.068; PyTorch's default bound is 1/sqrt(784) = 0.036
    assert 0.95 * glorot_bound < first.weight.abs().max() <= glorot_bound
    assert default_first.weight.abs().max() <= 1 / math.sqrt(784)
    assert not first.bias.any() and default_first.bias.any()
    with pytest.raises(ValueError, match="unknown init"):
        build_networks((1, 28, 28), 2, True, init="he", **mlp)
