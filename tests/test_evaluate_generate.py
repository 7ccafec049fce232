"""`python -m vae.evaluate` and `python -m vae.generate` on a real trained run, and safe loading."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import REPO, quick_run, run_module
from vae.checkpoints import load_run
from vae.errors import UserError
from vae.generate import MODES, latent_grid

pytestmark = pytest.mark.slow  # commands run as subprocesses, on the real data


def test_evaluate_reports_bounds_latent_usage_anomaly_and_denoising(
    finished_run: Path, data_dir: Path, tmp_path: Path
):
    out = tmp_path / "new" / "folder" / "report.json"  # a folder evaluate has to make
    result = run_module(
        "vae.evaluate",
        f"ckpt={finished_run}",
        "k=50",
        "limit=64",
        "anomaly=mnist",
        "anomaly_k=2",
        "denoise=true",
        "probe_train_images=500",
        f"out={out}",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["images"] == 64 and report["k"] == 50 and report["dataset"] == "fashion_mnist"
    trained = json.loads((finished_run / "metrics.json").read_text())["settings"]["precision"]
    assert report["precision"] == trained  # precision=auto: as trained, on the machine it trained on
    assert report["precision_reason"].startswith(f"it trained in {trained}")
    assert f"precision={trained}: it trained in" in result.stdout
    assert "not binarized" in report["likelihood"]
    assert report["iwae_nll"] <= report["negative_elbo"]
    assert report["negative_elbo"] == pytest.approx(report["recon"] + report["kl"], abs=0.01)
    assert 0 <= report["active_units"] <= 2 and len(report["kl_per_dim"]) == 2
    assert sum(report["kl_per_dim"]) == pytest.approx(report["kl"], abs=0.01)
    assert 0 <= report["anomaly"]["auroc"] <= 1 and report["anomaly"]["images"] == 64
    probe = report["linear_probe"]
    assert (probe["train_images"], probe["test_images"]) == (500, 64)
    assert 0.2 < probe["accuracy"] <= 1  # 10 classes: a 2-D code after 2 epochs is far above chance (0.1)
    assert report["denoise"]["psnr_noisy_db"] > 15  # noise of std 0.1 is about 20 dB
    assert report["denoise"]["grid"] == str(out.parent / "denoise.png")
    assert (out.parent / "denoise.png").stat().st_size > 0


@pytest.fixture(scope="module")
def loaded(finished_run: Path, data_dir: Path):
    return load_run(finished_run, batch_size=64, dataset_root=str(data_dir), device="cpu")


@pytest.mark.parametrize("mode", [mode for mode in MODES if mode != "classes"])  # classes: its own test
def test_each_generate_mode_gives_a_full_grid_of_latents(mode: str, loaded):
    model, datamodule, _ = loaded
    defaults = OmegaConf.load(REPO / "conf" / "generate.yaml")
    cfg = OmegaConf.merge(defaults, {"mode": mode, "rows": 3, "steps": 4, "encode_limit": 50})
    z, per_row = latent_grid(cfg, model, datamodule)
    expected_rows = {"prior": 3, "uniform": 3, "interpolate": 3, "traverse": 2, "manifold": 4}[
        mode
    ]  # traverse: latent_dim 2
    assert z.shape == (expected_rows * per_row, 2)
    assert model.decode(z).shape == (len(z), 1, 28, 28)


def test_generate_writes_the_same_png_for_the_same_command(
    finished_run: Path, data_dir: Path, tmp_path: Path
):
    digests = []
    for name in ("first.png", "second.png"):
        out = tmp_path / name
        result = run_module(
            "vae.generate", f"ckpt={finished_run}", "mode=interpolate", f"out={out}", data_dir=data_dir
        )
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_a_checkpoint_carrying_pickled_code_is_refused_not_run(finished_run: Path, tmp_path: Path):
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["hook"] = os.system  # unpickling would import and hand back a callable
    poisoned = tmp_path / "poisoned.ckpt"
    torch.save(checkpoint, poisoned)
    with pytest.raises(UserError, match="not a loadable vae checkpoint"):
        load_run(poisoned, batch_size=8, dataset_root=None, device="cpu")


def test_missing_and_non_checkpoint_files_are_refused(tmp_path: Path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_run(tmp_path / "missing.ckpt", batch_size=8, dataset_root=None, device="cpu")
    for name, contents in [
        ("junk.ckpt", b"this is not a checkpoint"),
        ("pickle.ckpt", b"\x80\x02 not a checkpoint"),
    ]:
        junk = tmp_path / name
        junk.write_bytes(contents)
        with pytest.raises(UserError, match="not a loadable vae checkpoint") as refused:
            load_run(junk, batch_size=8, dataset_root=None, device="cpu")
        assert "weights_only` set to `False`" not in str(refused.value)  # torch's advice would run its code
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("module", "override", "expected"),
    [
        ("vae.evaluate", None, "error: ckpt= is required"),
        ("vae.generate", None, "error: ckpt= is required"),
        ("vae.evaluate", "k=0", "error: k must be a positive integer"),
        ("vae.evaluate", "limit=0", "error: limit must be a positive integer"),
        ("vae.evaluate", "precision=16-mixed", "error: precision must be one of auto, 32-true, bf16-mixed"),
        ("vae.evaluate", "anomaly=cartoon", "error: anomaly must be one of ('mnist', 'fashion_mnist')"),
        ("vae.generate", "rows=0", "error: rows must be a positive integer"),
        ("vae.generate", "encode_limit=1", "error: encode_limit must be an integer of at least 2"),
        ("vae.fit_prior", None, "error: ckpt= is required"),
        ("vae.fit_prior", "lr=-1", "error: lr must be a positive number"),
        ("vae.fit_prior", "precision=16-mixed", "error: precision must be one of auto, 32-true, bf16-mixed"),
    ],
)
def test_bad_options_are_one_line_before_anything_is_loaded(
    module: str, override: str | None, expected: str, tmp_path: Path
):
    arguments = ["ckpt=/nonexistent", override] if override else []
    result = run_module(module, *arguments, data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith(expected)


def test_a_conditional_model_draws_a_row_per_class_and_reports_a_bound_given_the_label(
    data_dir: Path, finished_run: Path, tmp_path: Path
):
    run = tmp_path / "conditional"
    quick_run(run, "dataset=mnist", "model=mlp", "model.conditional=true", data_dir=data_dir)
    out = tmp_path / "classes.png"
    generated = run_module(
        "vae.generate", f"ckpt={run}", "mode=classes", "steps=6", f"out={out}", data_dir=data_dir
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert out.stat().st_size > 5_000
    evaluated = run_module(
        "vae.evaluate", f"ckpt={run}", "k=5", "limit=32", "probe_train_images=200", data_dir=data_dir
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((run / "evaluation.json").read_text())
    assert report["likelihood"].endswith("bounds of -log p(x|y)")
    assert report["iwae_nll"] <= report["negative_elbo"]
    refused = run_module("vae.generate", f"ckpt={finished_run}", "mode=classes", data_dir=data_dir)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: mode=classes needs a conditional model (trained with model.conditional=true); this one is not"
    ]
