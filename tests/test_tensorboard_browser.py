"""TensorBoard, this project's web page, opened in headless Chromium on a finished run.

The screenshots stay in the test's temporary folder for a person to look at.
"""

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import quick_run, unavailable

pytestmark = pytest.mark.slow  # a training run, a TensorBoard server and a browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    found = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
    if found is None:
        unavailable("no Chromium found: install Debian's chromium package (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def run_16d(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch Fashion-MNIST run with 16 latent dimensions: the projector shows latents above 2-D."""
    return quick_run(tmp_path_factory.mktemp("run16"), "latent_dim=16", data_dir=data_dir)


@pytest.fixture(scope="module")
def tensorboard(run_16d: Path) -> Iterator[str]:
    """TensorBoard serving the run on a free local port; its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_16d), "--port", str(port)]
    command += ["--host", "127.0.0.1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{address}/data/logdir", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"tensorboard exited: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    path = chromium()
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="pip install -e '.[dev]' installs playwright"
    )
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


def open_page(browser, address: str, dashboard: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{address}/#{dashboard}")
    return page


def filtered_cards(page, regex: str):
    """The dashboard's cards whose tags match ``regex`` (typed into its tag filter)."""
    page.locator("input[placeholder='Filter tags (regex)']").fill(regex)
    return page.locator("card-view")


def test_the_scalars_and_images_of_a_run_are_rendered(browser, tensorboard: str, tmp_path: Path):
    page = open_page(browser, tensorboard, "timeseries")
    page.locator("input[placeholder='Filter tags (regex)']").wait_for(timeout=60_000)
    cards = filtered_cards(page, "^val/")
    for name in ("/loss", "/recon", "/kl", "/active_units"):  # a card per loss term, titled "val" + name
        cards.filter(has_text=name).first.wait_for(timeout=60_000)
    page.screenshot(path=tmp_path / "scalars.png")
    images = filtered_cards(page, "^(latent|samples)/").locator("img")
    # The scatter, the test scatter, the KL bars, the prior and the uniform samples.
    images.nth(4).wait_for(timeout=60_000)
    drawn = [images.nth(i).evaluate("img => img.complete && img.naturalWidth") for i in range(images.count())]
    assert len(drawn) == 5 and all(width > 100 for width in drawn), (
        drawn
    )  # decoded pictures, not broken links
    page.screenshot(path=tmp_path / "images.png")


def test_the_projector_shows_every_test_mean_with_its_labels_and_thumbnails(
    browser, tensorboard: str, tmp_path: Path
):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    served = []  # the projector's requests for the labels and the thumbnails' sprite
    page.on("response", lambda response: served.append((response.url, response.status)))
    page.goto(f"{tensorboard}/#projector")
    for _ in range(120):  # the projector lives in a nested frame of its own
        projector = next((frame for frame in page.frames if "projector_binary" in frame.url), None)
        if projector is not None:
            break
        page.wait_for_timeout(500)
    assert projector is not None, [frame.url for frame in page.frames]
    # QUICK's plots.scatter_points=300 test means of a 16-D latent space, with their metadata.
    projector.get_by_text("Points: 300", exact=False).first.wait_for(timeout=90_000)
    projector.get_by_text("Dimension: 16", exact=False).first.wait_for(timeout=10_000)
    for wanted in ("plugin/projector/metadata", "plugin/projector/sprite_image"):
        assert any(wanted in url and status == 200 for url, status in served), (wanted, served)
    page.wait_for_timeout(5000)  # WebGL draws the points and their thumbnails after the data arrive
    page.screenshot(path=tmp_path / "projector.png")
    canvas = max(projector.locator("canvas").all(), key=lambda element: element.bounding_box()["width"])
    pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
    drawn = (pixels < 200).mean()  # thumbnails of dark-background images on a white canvas
    assert drawn > 0.01, f"only {drawn:.2%} of the projector's canvas is drawn; see {tmp_path}"
