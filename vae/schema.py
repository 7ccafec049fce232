"""Every setting of ``python -m vae.train``, described once: its default, type, choices and meaning.

Hydra composes these defaults (registered as the ``schema`` config) with the YAML files in
``conf/``: the dataset, the network and the tutorial presets. ``check`` validates a composed
config, and the model's arguments, against the same fields; metrics.json records the groups as
they are here, and docs/configuration.md is written from them.
"""

import difflib
import math
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from vae import nets
from vae.nets import INITS
from vae.objectives import RECONSTRUCTIONS, REDUCTIONS
from vae.projections import PROJECTIONS

BINARIZATIONS = ("none", "dynamic", "static")
SAMPLER_STDS = ("exp_half_logvar", "exp_logvar")
PRIORS = ("normal", "vamp", "flow")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")  # "-true" half precisions: fp16 weights
ACTIVATIONS = tuple(nets.ACTIVATIONS)


def setting(
    default: Any,
    help: str,
    choices: tuple | None = None,
    minimum: float | None = None,
    above: float | None = None,
) -> Any:
    """A field with its meaning; ``choices``, ``minimum`` (inclusive) and ``above`` (exclusive) bound it."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "above": above}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Objective:
    """The loss per image: a reconstruction term plus beta x KL(q(z|x) || N(0, I)).

    The tutorials reduce their terms differently (summed or averaged over pixels and latent
    dimensions); each reduction is a named switch so that a reported number can say which.
    """

    variational: bool = setting(True, "false: the same network as a plain autoencoder (no sampler, no KL)")
    recon: str = setting(
        "bce",
        "bce: Bernoulli cross-entropy | mse: mse_scale x mean squared error | gaussian: a learned-variance Gaussian on dequantized pixels (bits/dim)",
        RECONSTRUCTIONS,
    )
    recon_reduction: str = setting(
        "sum", "bce over pixels: sum (the ELBO's) | mean (Keras' binary_crossentropy)", REDUCTIONS
    )
    mse_scale: float = setting(1000.0, "weight of the per-image mean squared error (LearnOpenCV's)", above=0)
    kl_reduction: str = setting(
        "sum",
        "KL over latent dims: sum (the ELBO's) | mean (the CS3232 slides', the UPM notebook's)",
        REDUCTIONS,
    )
    beta: float = setting(1.0, "weight of the KL term", minimum=0)
    kl_warmup_epochs: int = setting(0, "ramp beta up linearly from 0 over this many epochs", minimum=0)
    kl_cycles: int = setting(
        0,
        "cyclical annealing (Fu et al. 2019): beta restarts from 0 this many times, rising over each cycle's first half",
        minimum=0,
    )
    prior: str = setting(
        "normal",
        "normal: N(0, I) | vamp: the VampPrior (Tomczak & Welling 2018), a mixture of q(z|u_k) at learned pseudo-inputs u_k | flow: a RealNVP flow on z (Dinh et al. 2017), learned with the model or after it (python -m vae.fit_prior)",
        PRIORS,
    )
    prior_components: int = setting(500, "prior=vamp: how many pseudo-inputs", minimum=1)
    prior_flow_layers: int = setting(8, "prior=flow: how many affine coupling layers", minimum=1)
    free_bits: float = setting(
        0.0,
        "a KL floor per latent dim, in nats (Kingma et al. 2016): dims below it are not pushed further",
        minimum=0,
    )
    eps_std: float = setting(1.0, "std of the sampler's noise; the UPM notebook's is 0.1", above=0)
    sampler_std: str = setting(
        "exp_half_logvar",
        "z = mu + exp(logvar / 2) * eps | exp_logvar: exp(logvar) * eps, as the lab exercise and the UPM notebook write it",
        SAMPLER_STDS,
    )
    binarize: str = setting(
        "none",
        "none | dynamic: a fresh Bernoulli draw every batch | static: one fixed draw per image (MNIST family)",
        BINARIZATIONS,
    )


@dataclass
class Optim:
    """Adam's settings and the learning rate's schedule."""

    lr: float = setting(1e-3, "Adam's learning rate", above=0)
    adam_eps: float = setting(1e-8, "Adam's epsilon (PyTorch's default; Keras' is 1e-7)", above=0)
    schedule: str = setting(
        "constant",
        "constant: lr throughout | cosine: lr falls along a half cosine to 0 at the last step",
        SCHEDULES,
    )


@dataclass
class Trainer:
    """Lightning Trainer arguments (any other one with ``+trainer.<name>=``)."""

    devices: Any = setting("auto", "how many devices; with strategy=ddp, one process each")
    strategy: str = setting("auto", "ddp: data-parallel processes (gloo on CPU, nccl on GPUs)")
    num_nodes: int = setting(1, "machines for multi-node ddp (torchrun or SLURM start them)", minimum=1)
    precision: str = setting(
        "auto", "auto: bf16-mixed where the CPU or GPU runs bf16 natively, else 32-true", PRECISIONS
    )
    gradient_clip_val: float | None = setting(None, "e.g. 1.0 clips the gradient norm, if a run diverges")
    limit_train_batches: Any = setting(1.0, "a fraction of the training batches, or a count")
    limit_val_batches: Any = setting(1.0, "a fraction of the validation batches, or a count")
    limit_test_batches: Any = setting(1.0, "a fraction of the test batches, or a count")
    log_every_n_steps: int = setting(50, "how often Lightning logs step values", minimum=1)


@dataclass
class Speed:
    """Switches that change how fast a run goes, never its numbers."""

    channels_last: bool = setting(True, "NHWC memory for conv nets (faster convolutions)")
    compile: bool = setting(False, "torch.compile the loss: faster steps after seconds of compiling")
    data_on_device: bool = setting(True, "on a GPU, hold the uint8 images there when they fit")
    keep_freed_memory: bool = setting(True, "glibc keeps freed memory for the next step (vae.train only)")
    progress_every: int = setting(10, "progress bar refresh, in steps (each reads values back)", minimum=1)


@dataclass
class Plots:
    """The pictures drawn after every validation, from fixed images and fixed draws."""

    scatter_points: int = setting(2000, "validation images encoded for the latent scatter", minimum=2)
    grid_size: int = setting(8, "sample and reconstruction grids are grid_size x grid_size", minimum=1)
    manifold_size: int = setting(15, "latent_dim=2 only: decoded grid over [-3, 3]^2", minimum=1)
    projection: str = setting(
        "pca",
        "latents above 2-D in the end-of-training test scatter: pca | tsne | umap (pip install -e '.[projections]'); every epoch's scatter is PCA",
        PROJECTIONS,
    )


CONDITIONAL_HELP = "a conditional VAE: the one-hot label goes to the encoder's heads and the decoder's input"


@dataclass
class MlpNet:
    """Fully connected encoder over the flattened image; the decoder mirrors the hidden widths."""

    family: str = setting("mlp", "the network family", ("mlp",))
    hidden: list = setting([512], "hidden widths, encoder side")
    activation: str = setting("relu", "the hidden layers' activation", ACTIVATIONS)
    init: str = setting(
        "torch", "torch: PyTorch's layer defaults | glorot: Keras' (Glorot-uniform, zero biases)", INITS
    )
    conditional: bool = setting(False, CONDITIONAL_HELP)


@dataclass
class ConvNet:
    """Strided 'same' convolutions down, optional dense layers, transposed convolutions back up."""

    family: str = setting("conv", "the network family", ("conv",))
    encoder_channels: list = setting([32, 64, 64, 64], "output channels of each encoder convolution")
    encoder_strides: list = setting([1, 2, 2, 1], "stride of each encoder convolution")
    encoder_dense: list = setting([], "dense layers between the convolutions and the latent heads")
    decoder_channels: list = setting([64, 64, 32], "output channels of each transposed convolution")
    decoder_strides: list = setting([1, 2, 2], "stride of each transposed convolution")
    output_stride: int = setting(1, "stride of the last transposed convolution, to the image", minimum=1)
    kernel_size: int = setting(3, "odd: 'same' padding needs a centre pixel", minimum=1)
    batch_norm: bool = setting(True, "batch norm after every hidden layer")
    activation: str = setting("leaky_relu", "the hidden layers' activation", ACTIVATIONS)
    residual_blocks: int = setting(
        0,
        "residual blocks (x + two 'same' convolutions) after every hidden convolution, both ways",
        minimum=0,
    )
    init: str = setting(
        "torch", "torch: PyTorch's layer defaults | glorot: Keras' (Glorot-uniform, zero biases)", INITS
    )
    conditional: bool = setting(False, CONDITIONAL_HELP)


NETWORKS = {"mlp": MlpNet, "conv": ConvNet}


@dataclass
class MnistData:
    """MNIST or Fashion-MNIST: 60k training images (val_size of them held out), 10k test, 28x28."""

    name: str = setting("fashion_mnist", "mnist | fashion_mnist", ("mnist", "fashion_mnist"))
    root: str = setting("${data_dir}", "the folder holding MNIST/raw or FashionMNIST/raw")
    val_size: int = setting(
        5000, "training images held out for validation; 0 validates on the test set", minimum=0
    )
    split_seed: int = setting(0, "fixes the validation slice, independent of the training seed")
    binarize: str = setting("${objective.binarize}", "static binarization happens at loading", BINARIZATIONS)
    pad_to: int | None = setting(None, "32 pads the images to 32x32, as the Keras notebook does", minimum=28)


@dataclass
class CartoonData:
    """Google's Cartoon Set: PNG avatars decoded once into a uint8 cache, split by split_seed."""

    name: str = setting("cartoon", "cartoon", ("cartoon",))
    root: str = setting("${data_dir}/cartoonset", "cartoonset10k or cartoonset100k, subfolders allowed")
    cache_dir: str = setting(
        "${data_dir}/cache", "decoded, resized images; the image folder may be read-only"
    )
    image_size: int = setting(
        256, "side in pixels (LearnOpenCV's 256); cartoon_conv needs a multiple of 32", minimum=1
    )
    limit: int | None = setting(None, "the first N PNGs in sorted order, for quick runs", minimum=1)
    val_fraction: float = setting(0.1, "share of the images held out for validation", above=0)
    test_fraction: float = setting(0.1, "share of the images held out for testing", above=0)
    split_seed: int = setting(0, "fixes the split, independent of the training seed")
    color_by: str | None = setting("hair_color", "the CSV attribute that colours the latent scatter")


DATASETS = {"mnist": MnistData, "fashion_mnist": MnistData, "cartoon": CartoonData}


@dataclass
class Config:
    """``python -m vae.train``: the headline settings at the top, the rest in their groups."""

    latent_dim: int = setting(2, "size of z", minimum=1)
    epochs: int = setting(10, "training epochs", minimum=1)
    batch_size: int = setting(128, "images per step", minimum=1)
    seed: int = setting(0, "seeds weights, shuffling and sampling")
    accelerator: str = setting("auto", "auto | cpu | gpu")
    ckpt_path: str | None = setting(None, "resume: a .ckpt file, a run directory, or last (the newest run)")
    data_dir: str = setting("${oc.env:VAE_DATA_DIR,data}", "where the datasets live (torchvision's layout)")
    objective: Objective = field(default_factory=Objective)
    optim: Optim = field(default_factory=Optim)
    trainer: Trainer = field(default_factory=Trainer)
    speed: Speed = field(default_factory=Speed)
    plots: Plots = field(default_factory=Plots)


def known_keys() -> set[str]:
    """Every dotted key a command line may set: the top level, its groups, the datasets' and networks'."""
    keys = {key for key, _ in _documented(Config)}
    for prefix, schemas in (("dataset.", DATASETS.values()), ("model.", NETWORKS.values())):
        keys |= {key for one in schemas for key, _ in _documented(one, prefix)}
    return keys


def nearest_key(key: str, known: set[str]) -> str | None:
    """The known key a mistyped or moved ``key`` most likely means (``lr`` -> ``optim.lr``)."""
    moved = sorted(name for name in known if name.rsplit(".", 1)[-1] == key)
    if moved:
        return moved[0]
    near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
    return near[0] if near else None


def defaults(schema: type = Config) -> dict:
    """The schema's defaults as plain values: what Hydra composes the YAML files onto."""
    return {item.name: _default(item) for item in fields(schema)}


def _default(item) -> Any:
    if item.default is not MISSING:
        return item.default
    value = item.default_factory()
    return defaults(type(value)) if is_dataclass(value) else value


def check(schema: type, values: dict, prefix: str = "") -> None:
    """Raise ``ValueError`` naming the first key of ``values`` that ``schema`` does not allow.

    Unknown keys are refused with the nearest known name; values are checked for their type,
    their choices and their bounds, nested groups recursively. Interpolations are resolved first.
    """
    hints = get_type_hints(schema)
    known = {item.name: item for item in fields(schema)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            if schema is Trainer:
                continue  # any other Lightning Trainer argument
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {prefix}{near[0]}?" if near else f"; known: {', '.join(known)}"
            raise ValueError(f"unknown key {name}{hint}")
        if is_dataclass(hints[key]):
            check(hints[key], value, f"{name}.")
            continue
        _check_value(name, value, hints[key], known[key].metadata)


def _check_value(name: str, value: Any, hint: Any, metadata: dict) -> None:
    optional = hint is not Any and type(None) in getattr(hint, "__args__", ())
    if value is None and (optional or hint is Any):
        return
    wanted = next(
        (kind for kind in (bool, int, float, str, list) if kind in (hint, *getattr(hint, "__args__", ()))),
        None,
    )
    if wanted is bool and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if wanted is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer, got {value!r}; e.g. {name}={_example(metadata)}")
    if wanted is float and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if wanted is list and not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list, e.g. {name}=[32,64], got {value!r}")
    if wanted is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    choices = metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    minimum, above = metadata.get("minimum"), metadata.get("above")
    if minimum is not None and value < minimum:
        raise ValueError(
            f"{name} must be at least {minimum}, got {value!r}; e.g. {name}={_example(metadata)}"
        )
    if above is not None and value <= above:
        raise ValueError(f"{name} must be above {above}, got {value!r}")


def _example(metadata: dict) -> int:
    return max(int(metadata.get("minimum") or 1), 16)


def markdown() -> str:
    """docs/configuration.md: every key once, with its default, its choices or bounds and its meaning."""
    sections = [
        ("Top level and groups", "", Config),
        ("`dataset=mnist`, `dataset=fashion_mnist`", "dataset.", MnistData),
        ("`dataset=cartoon`", "dataset.", CartoonData),
        ("`model=` networks of the conv family", "model.", ConvNet),
        ("`model=` networks of the mlp family", "model.", MlpNet),
    ]
    lines = [
        "# Configuration",
        "",
        "Every key of `python -m vae.train`, as `vae/schema.py` describes it (this page is its output:",
        "`python -m vae.schema > docs/configuration.md`). Set any of them on the command line",
        "(`latent_dim=16 objective.beta=4 trainer.precision=32-true`); `conf/` holds the datasets,",
        "the networks and the tutorial presets that change these defaults.",
    ]
    for title, prefix, schema in sections:
        summary = (schema.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        lines += ["", f"## {title}", "", summary, ""]
        lines += ["| key | default | allowed | meaning |", "|---|---|---|---|"]
        lines += [_row(prefix, key, item) for key, item in _documented(schema)]
    return "\n".join(lines) + "\n"


def _documented(schema: type, prefix: str = "") -> list[tuple[str, Any]]:
    hints = get_type_hints(schema)
    found = []
    for item in fields(schema):
        if is_dataclass(hints[item.name]):
            found += _documented(hints[item.name], f"{prefix}{item.name}.")
        else:
            found.append((f"{prefix}{item.name}", item))
    return found


def _row(prefix: str, key: str, item: Any) -> str:
    meta = item.metadata
    default = _default(item)
    allowed = " \\| ".join(f"`{choice}`" for choice in meta["choices"]) if meta.get("choices") else ""
    if meta.get("minimum") is not None:
        allowed = f">= {meta['minimum']}"
    if meta.get("above") is not None:
        allowed = f"> {meta['above']}"
    shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
    meaning = meta["help"].replace("|", "\\|")
    return f"| `{prefix}{key}` | `{shown}` | {allowed} | {meaning} |"


if __name__ == "__main__":
    print(markdown(), end="")
