"""Encoder and decoder builders, one per network family, driven by plain config values.

A tutorial's network is a list of widths and strides in ``conf/model/``, not a class here.
Decoders return logits; the caller applies the sigmoid (or a loss on logits).
"""

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    # Keras' default slope (0.3), which LearnOpenCV's LeakyReLU() layers use.
    "leaky_relu": lambda: nn.LeakyReLU(0.3),
    "elu": nn.ELU,  # the IAF paper's ResNet VAE
}

ImageShape = tuple[int, int, int]


def one_hot(labels: Tensor | None, classes: int, like: Tensor) -> Tensor:
    """Labels as one-hot rows of ``like``'s dtype and device; a conditional net cannot do without them."""
    if labels is None:
        raise ValueError("this model is conditional (model.conditional=true): give the images' labels")
    return nn.functional.one_hot(labels.long(), classes).to(like)


class GaussianEncoder(nn.Module):
    """Maps images to the mean and log-variance of the diagonal Gaussian q(z|x) (q(z|x, y) with
    ``classes``: the one-hot label joins the features before the heads).

    With its log-variance head removed (``build_networks(variational=False)``) it is a plain
    autoencoder's encoder and returns ``(code, None)``.
    """

    def __init__(self, body: nn.Module, features: int, latent_dim: int, classes: int = 0) -> None:
        super().__init__()
        self.body = body
        self.classes = classes
        self.mean = nn.Linear(features + classes, latent_dim)
        self.logvar: nn.Linear | None = nn.Linear(features + classes, latent_dim)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h = self.body(x)
        if self.classes:
            h = torch.cat([h, one_hot(labels, self.classes, h)], dim=1)
        return self.mean(h), (self.logvar(h) if self.logvar is not None else None)


class ConditionalDecoder(nn.Sequential):
    """A decoder of p(x|z, y): the one-hot label joins z at its input. A Sequential, so its
    parameters are named as an unconditional decoder's."""

    def __init__(self, layers: nn.Sequential, classes: int) -> None:
        super().__init__(*layers)
        self.classes = classes

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return super().forward(torch.cat([z, one_hot(labels, self.classes, z)], dim=1))


INITS = ("torch", "glorot")


def build_networks(
    image_shape: ImageShape,
    latent_dim: int,
    variational: bool,
    family: str,
    init: str = "torch",
    conditional: bool = False,
    classes: int = 0,
    **options,
) -> tuple[GaussianEncoder, nn.Module]:
    """Build the (encoder, decoder) pair of ``family`` for images of ``image_shape`` (C, H, W).

    ``init="glorot"`` draws weights as Keras does by default (Glorot-uniform, zero biases),
    for reproducing the Keras tutorials' numbers; ``torch`` keeps PyTorch's layer defaults.
    ``conditional`` makes a pair that also takes the one-hot label of one of ``classes`` classes.
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
    builders = {"mlp": build_mlp, "conv": build_conv}
    if family not in builders:
        raise ValueError(f"unknown model family {family!r}; choose one of {sorted(builders)}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if conditional and classes < 2:
        raise ValueError(
            "model.conditional=true needs labelled images: MNIST, Fashion-MNIST, or the Cartoon Set with its attribute CSVs"
        )
    classes = classes if conditional else 0
    encoder, decoder = builders[family](tuple(image_shape), latent_dim, classes=classes, **options)
    if classes:
        decoder = ConditionalDecoder(decoder, classes)
    if not variational:
        encoder.logvar = None
    if init == "glorot":
        for layer in [*encoder.modules(), *decoder.modules()]:
            if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return encoder, decoder


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {tuple(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def build_mlp(
    image_shape: ImageShape, latent_dim: int, hidden: Sequence[int], activation: str, classes: int = 0
) -> tuple[GaussianEncoder, nn.Module]:
    """Fully connected encoder over flattened pixels; the decoder mirrors the hidden widths."""
    pixels = math.prod(image_shape)
    encoder_layers: list[nn.Module] = [nn.Flatten()]
    width = pixels
    for size in hidden:
        encoder_layers += [nn.Linear(width, size), _activation(activation)]
        width = size
    encoder = GaussianEncoder(nn.Sequential(*encoder_layers), width, latent_dim, classes)

    decoder_layers: list[nn.Module] = []
    width = latent_dim + classes
    for size in reversed(hidden):
        decoder_layers += [nn.Linear(width, size), _activation(activation)]
        width = size
    decoder_layers += [nn.Linear(width, pixels), nn.Unflatten(1, image_shape)]
    return encoder, nn.Sequential(*decoder_layers)


def _block(layer: nn.Module, features: int, batch_norm: bool, activation: str) -> list[nn.Module]:
    """A layer, its batch norm (2-D for conv layers, 1-D for dense ones), its activation."""
    norm = nn.BatchNorm1d if isinstance(layer, nn.Linear) else nn.BatchNorm2d
    return [layer, *([norm(features)] if batch_norm else []), _activation(activation)]


def build_conv(
    image_shape: ImageShape,
    latent_dim: int,
    encoder_channels: Sequence[int],
    encoder_strides: Sequence[int],
    encoder_dense: Sequence[int],
    decoder_channels: Sequence[int],
    decoder_strides: Sequence[int],
    output_stride: int,
    kernel_size: int,
    batch_norm: bool,
    activation: str,
    residual_blocks: int = 0,
    classes: int = 0,
) -> tuple[GaussianEncoder, nn.Module]:
    """Strided 'same' convolutions down, optional dense layers, transposed convolutions back up.

    The decoder starts from ``decoder_channels[0]`` maps at the image size divided by the
    product of all its strides (``output_stride`` included), as in the Keras tutorials.
    ``residual_blocks`` ``Residual`` blocks follow every hidden convolution, both ways.
    """
    if len(encoder_channels) != len(encoder_strides):
        raise ValueError("encoder_channels and encoder_strides need one entry per layer")
    if len(decoder_channels) != len(decoder_strides) or not decoder_channels:
        raise ValueError("decoder_channels and decoder_strides need one entry per layer")
    if kernel_size % 2 == 0:  # 'same' sizes need a centre pixel: (k - 1) / 2 padding each side
        raise ValueError(f"kernel_size must be odd for 'same' convolutions, got {kernel_size}")
    in_channels, height, width = image_shape
    padding = kernel_size // 2

    encoder_layers: list[nn.Module] = []
    channels = in_channels
    for out, stride in zip(encoder_channels, encoder_strides, strict=True):
        conv = nn.Conv2d(channels, out, kernel_size, stride, padding)
        encoder_layers += _block(conv, out, batch_norm, activation)
        encoder_layers += [Residual(out, kernel_size, batch_norm, activation) for _ in range(residual_blocks)]
        channels = out
        height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
    encoder_layers.append(nn.Flatten())
    features = channels * height * width
    for size in encoder_dense:  # the CS3232 slides' Dense(20) between the convolutions and the heads
        encoder_layers += _block(nn.Linear(features, size), size, batch_norm, activation)
        features = size
    encoder = GaussianEncoder(nn.Sequential(*encoder_layers), features, latent_dim, classes)

    upsampling = math.prod(decoder_strides) * output_stride
    if image_shape[1] % upsampling or image_shape[2] % upsampling:
        raise ValueError(
            f"image size {image_shape[1]}x{image_shape[2]} is not divisible by the decoder's "
            f"total stride {upsampling}; change the strides or the image size"
        )
    start = (decoder_channels[0], image_shape[1] // upsampling, image_shape[2] // upsampling)
    decoder_layers: list[nn.Module] = [
        nn.Linear(latent_dim + classes, math.prod(start)),
        nn.Unflatten(1, start),
    ]
    channels = decoder_channels[0]
    for out, stride in zip(decoder_channels, decoder_strides, strict=True):
        deconv = _transposed(channels, out, kernel_size, stride)
        decoder_layers += _block(deconv, out, batch_norm, activation)
        decoder_layers += [Residual(out, kernel_size, batch_norm, activation) for _ in range(residual_blocks)]
        channels = out
    decoder_layers.append(_transposed(channels, in_channels, kernel_size, output_stride))
    return encoder, nn.Sequential(*decoder_layers)


class Residual(nn.Module):
    """x + F(x), F two 'same' convolutions (each with its batch norm, the first with its
    activation): depth without the vanishing gradients of a plain stack (He et al. 2016)."""

    def __init__(self, channels: int, kernel_size: int, batch_norm: bool, activation: str) -> None:
        super().__init__()
        conv = functools.partial(nn.Conv2d, channels, channels, kernel_size, padding=kernel_size // 2)
        second = [conv(), *([nn.BatchNorm2d(channels)] if batch_norm else [])]
        self.body = nn.Sequential(*_block(conv(), channels, batch_norm, activation), *second)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _transposed(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
    """A transposed convolution that multiplies the size by ``stride`` exactly ('same')."""
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride, kernel_size // 2, output_padding=stride - 1
    )
