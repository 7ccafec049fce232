"""Pure figure makers: tensors in, an image grid tensor or a matplotlib Figure out.

They hold no state and call no model, so the training callbacks, the tests and the other
entry points all draw the same pictures.
"""

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from vae.projections import NAMES, project


def image_grid(images: Tensor, per_row: int) -> Tensor:
    """Images ``[N, C, H, W]`` in [0, 1] tiled into one ``[C, H', W']`` picture, ``per_row`` wide.

    Grey images give a one-channel grid (make_grid copies them into three), a third of the
    pixels to encode every epoch.
    """
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=per_row, padding=2, pad_value=1.0)
    return grid[:1] if images.shape[1] == 1 else grid


def pixels(picture: Tensor | Figure) -> np.ndarray:
    """uint8 pixels of a grid in [0, 1] (``[H, W]`` grey or ``[H, W, C]``) or of a figure drawn by Agg (RGB)."""
    if isinstance(picture, Figure):
        canvas = FigureCanvasAgg(picture)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3]  # opaque: the alpha channel only costs encoding
    # rounded, as save_image
    values = picture.detach().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return (values[0] if len(values) == 1 else values.permute(1, 2, 0)).numpy()


def png(values: np.ndarray) -> bytes:
    """PNG file contents of uint8 pixel values (as ``pixels`` returns them).

    zlib level 1, not PIL's 6: several times faster for files a fifth larger, which counts
    when pictures are saved after short runs.
    """
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def save_png(picture: Tensor | Figure, path: Path) -> None:
    """A grid or a figure written as a PNG file."""
    path.write_bytes(png(pixels(picture)))


def reconstruction_grid(originals: Tensor, reconstructions: Tensor, per_row: int) -> Tensor:
    """Rows of originals, each directly above the row of their reconstructions."""
    rows = len(originals) // per_row
    if rows == 0:
        raise ValueError(f"need at least {per_row} images for one row, got {len(originals)}")
    shape = (rows, 1, per_row, *originals.shape[1:])
    originals = originals[: rows * per_row].reshape(shape)
    reconstructions = reconstructions[: rows * per_row].to(originals).reshape(shape)
    paired = torch.cat([originals, reconstructions], dim=1).flatten(0, 2)
    return image_grid(paired, per_row)


def latent_scatter(
    points: Tensor,
    labels: Tensor | None,
    class_names: Sequence[str] | None,
    title: str,
    projection: str = "pca",
    seed: int = 0,
) -> Figure:
    """Latent means coloured by class, with a legend of class names (see ``LatentScatter``)."""
    return LatentScatter(labels, class_names, points.shape[1], projection, seed).draw(points, title)


class LatentScatter:
    """Latent means of a fixed set of images coloured by class, drawn again into one Figure.

    More than two dimensions are projected (``vae.projections``: PCA unless told), and the
    title and axes say how; one dimension is drawn against zero. Building the axes, ticks and legend
    costs as much as drawing them, and the training pictures show the same images after every
    epoch, so those are built once and each ``draw`` only moves the points and sets the limits
    and title: about half the time of a new figure.
    """

    def __init__(
        self,
        labels: Tensor | None,
        class_names: Sequence[str] | None,
        dims: int,
        projection: str = "pca",
        seed: int = 0,
    ) -> None:
        self.dims = dims
        self.projection, self.seed = projection, seed
        self.figure = Figure(figsize=(6.4, 5.2), layout="constrained")
        self.axes = self.figure.add_subplot()
        if labels is None:
            self.members = [slice(None)]
            self.classes = [self.axes.scatter([], [], s=3, alpha=0.6)]
        else:
            labels = labels.cpu()
            present = labels.unique().tolist()
            self.members = [labels == label for label in present]
            names = [class_names[label] if class_names else str(label) for label in present]
            self.classes = [self.axes.scatter([], [], s=3, alpha=0.6, label=name) for name in names]
            self.axes.legend(markerscale=4, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
        name = "PC" if projection == "pca" else NAMES[projection]
        axis_names = {1: ("z[0]", ""), 2: ("z[0]", "z[1]")}.get(dims, (f"{name} 1", f"{name} 2"))
        self.axes.set_xlabel(axis_names[0])
        self.axes.set_ylabel(axis_names[1])
        lay_out_once(self.figure, self.axes)

    def draw(self, points: Tensor, title: str) -> Figure:
        """The figure showing ``points`` ``[N, dims]``, one row per image of ``labels``."""
        points = points.detach().float().cpu()
        if self.dims > 2:
            points = project(points, self.projection, self.seed)
            title = f"{title} ({NAMES[self.projection]} of {self.dims}-d means)"
        elif self.dims == 1:
            points = torch.cat([points, torch.zeros_like(points)], dim=1)
        for members, collection in zip(self.members, self.classes, strict=True):
            collection.set_offsets(points[members].numpy())
        self.axes.ignore_existing_data_limits = True  # the limits of these points alone
        self.axes.update_datalim(points.numpy())
        self.axes.autoscale_view()
        self.axes.set_title(title)
        return self.figure


def lay_out_once(figure: Figure, axes) -> None:
    """Places the axes once (constrained layout, with room for wide tick labels) and keeps them.

    The per-epoch figures change only their data and title, and a layout pass at every draw
    would cost a large share of drawing them (docs/benchmarks.md).
    """
    axes.set_title("a title's height")
    axes.set_xlim(-0.0125, 0.0125)  # the widest tick labels limits usually give: -0.010 ... 0.010
    axes.set_ylim(-0.0125, 0.0125)
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    axes.relim()
    axes.autoscale()  # the limits follow the data again


class KlPerDimension:
    """A bar per latent dimension: its KL to the prior averaged over fixed images, active
    dimensions (Cov_x E[z|x] > 0.01) in colour, collapsed ones grey. Built once, like
    ``LatentScatter``; each ``draw`` only sets the bars' heights."""

    def __init__(self, dims: int) -> None:
        self.figure = Figure(figsize=(6.4, 3.2), layout="constrained")
        self.axes = self.figure.add_subplot()
        self.bars = self.axes.bar(range(dims), [0.0] * dims, width=0.8)
        self.axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # dimensions, not 2.5
        self.axes.set_xlabel("latent dimension")
        self.axes.set_ylabel("KL (nats)")
        lay_out_once(self.figure, self.axes)

    def draw(self, kl_per_dim: Tensor, active: Tensor, title: str) -> Figure:
        for bar, kl, used in zip(self.bars, kl_per_dim.tolist(), active.tolist(), strict=True):
            bar.set_height(kl)
            bar.set_color("tab:blue" if used else "tab:gray")
        self.axes.set_ylim(0, max(1e-3, float(kl_per_dim.max())) * 1.05)
        self.axes.set_title(f"{title}: {int(active.sum())} of {len(active)} dimensions active")
        return self.figure


def panels(pictures: dict[str, np.ndarray], title: str, columns: int | None = None) -> Figure:
    """Pictures (``pixels`` output) side by side, each under its label: the comparisons' layout."""
    columns = columns or len(pictures)
    rows = -(-len(pictures) // columns)
    figure = Figure(figsize=(4.2 * columns, 4.2 * rows + 0.4), layout="constrained")
    figure.suptitle(title)
    for index, (label, values) in enumerate(pictures.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(values, cmap="gray" if values.ndim == 2 else None, vmin=0, vmax=255)
        axes.set_title(label)
        axes.set_axis_off()
    return figure


def labelled_rows(grid: np.ndarray, names: Sequence[str], title: str) -> Figure:
    """An image grid (``pixels`` output, one row per name, 2-pixel padding) with each row's name at its left."""
    rows = len(names)
    cell = (grid.shape[0] - 2) / rows
    figure = Figure(figsize=(grid.shape[1] / 80 + 1.6, grid.shape[0] / 80 + 0.5), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    axes.set_yticks([2 + cell * (row + 0.5) - 1 for row in range(rows)], list(names))
    axes.set_xticks([])
    axes.set_title(title, fontsize="small")
    return figure
