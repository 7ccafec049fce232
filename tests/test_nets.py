"""Every model preset builds, gives the right shapes, and matches the tutorials' parameter counts."""

import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import CONF
from vae.config import compose_run_config
from vae.nets import Residual, build_networks

PRESETS = sorted(path.stem for path in CONF.glob("model/*.yaml"))
# The image each preset is made for; a new preset must be added here to be tested.
IMAGE_SHAPES = {
    "conv": (1, 28, 28),
    "mlp": (1, 28, 28),
    "cartoon_conv": (3, 64, 64),
    "keras_conv32": (1, 32, 32),
    "slides_conv": (1, 28, 28),
    "upm_dense": (1, 28, 28),
    "mnist_conv": (1, 28, 28),
    "mnist_resnet": (1, 28, 28),
    "for_mnist": (1, 28, 28),
    "for_fashion_mnist": (1, 28, 28),
    "for_cartoon": (3, 64, 64),
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.cache
def preset(name: str) -> dict:
    """The network ``model=<name>`` composes to (its file over its family's schema defaults)."""
    return OmegaConf.to_container(compose_run_config(f"model={name}").model)


def test_every_preset_has_a_test_image_shape():
    assert set(PRESETS) <= set(IMAGE_SHAPES)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("latent_dim", [1, 2, 16, 64])
def test_preset_shapes(name: str, latent_dim: int):
    shape = IMAGE_SHAPES[name]
    options = dict(preset(name))
    encoder, decoder = build_networks(shape, latent_dim, True, **options)
    encoder.eval(), decoder.eval()
    mu, logvar = encoder(torch.rand(3, *shape))
    assert mu.shape == logvar.shape == (3, latent_dim)
    assert decoder(mu).shape == (3, *shape)


def test_the_keras_notebooks_net_has_its_parameter_counts():
    encoder, decoder = build_networks((1, 32, 32), 2, True, **preset("keras_conv32"))
    assert (count(encoder), count(decoder)) == (100_868, 246_273)


# The slides' net has a Dense(20) before the heads; LearnOpenCV's flattens to 7x7x64.
@pytest.mark.parametrize(("name", "in_features"), [("slides_conv", 20), ("conv", 3136)])
def test_the_heads_take_the_width_the_tutorial_gives_them(name: str, in_features: int):
    encoder, _ = build_networks((1, 28, 28), 2, True, **preset(name))
    assert encoder.mean.in_features == in_features


def test_an_autoencoder_encoder_has_no_logvar_head():
    encoder, _ = build_networks((1, 32, 32), 2, False, **preset("keras_conv32"))
    assert encoder.logvar is None
    assert count(encoder) == 100_868 - (2048 * 2 + 2)  # the notebook's VAE encoder less one head


def test_the_lab_exercises_mlp_has_its_parameter_counts():
    encoder, decoder = build_networks((1, 28, 28), 2, True, family="mlp", hidden=[512], activation="relu")
    assert (count(encoder), count(decoder)) == (403_972, 403_728)


def test_residual_blocks_add_two_convolutions_and_their_norms_per_hidden_layer():
    plain = dict(preset("mnist_conv"))
    with_blocks = {**plain, "residual_blocks": 2}
    encoder, decoder = build_networks((1, 28, 28), 2, True, **plain)
    deep_encoder, deep_decoder = build_networks((1, 28, 28), 2, True, **with_blocks)
    per_block = {c: 2 * (c * c * 9 + c) + 2 * 2 * c for c in (32, 64)}  # two 3x3 convs, two batch norms
    assert count(deep_encoder) - count(encoder) == 2 * (per_block[32] + per_block[64])
    assert count(deep_decoder) - count(decoder) == 2 * (per_block[64] + per_block[32])


def test_a_residual_block_adds_its_input_to_what_its_convolutions_make():
    block = Residual(4, 3, batch_norm=True, activation="elu").eval()
    x = torch.randn(2, 4, 6, 6)
    assert not torch.allclose(block(x), x)
    torch.nn.init.zeros_(block.body[-1].weight)  # the last norm's scale: F(x) = its bias, zero
    assert torch.equal(block(x), x)


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


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_a_conditional_pair_takes_the_label_and_decodes_each_class_differently(family: str):
    options = {"family": "mlp", "hidden": [16], "activation": "relu"} if family == "mlp" else preset("conv")
    options = {**options, "conditional": True}
    encoder, decoder = build_networks((1, 28, 28), 3, True, classes=10, **options)
    encoder.eval(), decoder.eval()
    x, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    mu, logvar = encoder(x, labels)
    assert mu.shape == logvar.shape == (4, 3)
    assert not torch.equal(encoder(x, labels)[0], encoder(x, labels + 1)[0])  # q(z|x, y) depends on y
    z = torch.zeros(4, 3)
    images = decoder(z, labels)
    assert images.shape == (4, 1, 28, 28)
    assert not torch.allclose(images[0], images[1])  # the same z, two classes: two images
    with pytest.raises(ValueError, match="this model is conditional"):
        decoder(z)


def test_a_conditional_model_of_unlabelled_images_is_refused():
    with pytest.raises(ValueError, match="model.conditional=true needs labelled images"):
        build_networks((1, 28, 28), 2, True, family="mlp", hidden=[8], activation="relu", conditional=True)
