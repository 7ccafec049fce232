"""The wheel a user installs holds every config file, where Hydra's ``pkg://vae.conf`` looks."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # builds the wheel in a subprocess


def test_the_wheel_holds_every_config_file(tmp_path):
    # Built from a copy of what the build reads: setuptools would reuse files an earlier build left in build/.
    source = tmp_path / "source"
    for folder in ("vae", "conf"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / file, source / file)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("vae-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".yaml")}
    conf = REPO / "conf"
    configs = {f"vae/conf/{path.relative_to(conf).as_posix()}" for path in conf.rglob("*.yaml")}
    assert configs, "no configs found in conf/"
    assert sorted(configs - shipped) == []
