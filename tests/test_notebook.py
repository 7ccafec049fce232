"""The classroom notebook runs top to bottom through the package's Python API."""

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains for three epochs and starts TensorBoard

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "tour.ipynb"


def test_the_tour_notebook_runs_and_shows_its_pictures(data_dir: Path, tmp_path: Path):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' installs nbclient")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' installs nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(
        not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"
    )  # committed clean
    folder = tmp_path / "notebooks"
    folder.mkdir()  # the notebook writes ../outputs/tour, here inside tmp_path
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute(env={**os.environ, "VAE_DATA_DIR": str(data_dir)})
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if any(kind.startswith("image/") for kind in output.get("data", {}))
    ]
    assert len(images) == 4  # the scatter, the manifold, the interpolation, the samples
    assert (tmp_path / "outputs" / "tour" / "metrics.json").exists()
