"""A multirun ends with one table of its jobs; an Optuna search minimises what vae.train returns."""

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICK, run_module
from vae.sweeps import sweep_rows, write_tables


def fake_job(folder: Path, overrides: list[str], val_loss: float | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if val_loss is not None:
        summary = {
            "metrics": {"val/loss": val_loss, "test/loss": val_loss + 1},
            "epochs_completed": 3,
            "wall_time_s": 9.5,
        }
        (folder / "metrics.json").write_text(json.dumps(summary))


def test_the_table_has_a_row_per_job_in_job_order_and_shows_only_the_settings_that_vary(tmp_path: Path):
    fake_job(tmp_path / "10_latent_dim=16", ["model=mlp", "latent_dim=16"], 101.23456)
    fake_job(tmp_path / "2_latent_dim=2", ["model=mlp", "latent_dim=2"], 150.0)
    fake_job(tmp_path / "3_latent_dim=4", ["model=mlp", "latent_dim=4"], None)  # stopped before the end
    rows = sweep_rows(tmp_path)
    assert [row["job"] for row in rows] == [2, 3, 10]  # by number, not by name
    assert rows[2] == {
        "job": 10,
        "model": "mlp",
        "latent_dim": "16",
        "val/loss": 101.2346,
        "test/loss": 102.2346,
        "epochs_done": 3,
        "wall_s": 9.5,
    }
    assert rows[1]["status"].startswith("no metrics.json")
    write_tables(rows, tmp_path)
    table = (tmp_path / "sweep.md").read_text().splitlines()
    assert table[0] == "Every job: model=mlp"
    assert table[2] == "| job | latent_dim | val/loss | test/loss | epochs_done | wall_s | status |"
    assert table[4] == "| 2 | 2 | 150.0 | 151.0 | 3 | 9.5 |  |"
    assert (tmp_path / "sweep.csv").read_text().splitlines()[
        0
    ] == "job,model,latent_dim,val/loss,test/loss,epochs_done,wall_s,status"


@pytest.mark.slow
def test_a_grid_multirun_writes_the_table_of_its_jobs(data_dir: Path, tmp_path: Path):
    result = run_module(
        "vae.train", "-m", *QUICK, "model=mlp", "epochs=1", "latent_dim=2,3", f"hydra.sweep.dir={tmp_path}",
        data_dir=data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "sweep.md").read_text().splitlines()[4:]
    for row, latent_dim in zip(rows, ("2", "3"), strict=True):
        job = next(tmp_path.glob(f"*,latent_dim={latent_dim},*"))
        val_loss = json.loads((job / "metrics.json").read_text())["metrics"]["val/loss"]
        assert row.startswith(f"| {job.name.split('_')[0]} | {latent_dim} | {round(val_loss, 4)} |")


@pytest.mark.slow
def test_an_optuna_search_minimises_the_validation_loss_each_run_returns(data_dir: Path, tmp_path: Path):
    result = run_module(
        "vae.train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *QUICK, "model=mlp",
        "epochs=1", f"hydra.sweep.dir={tmp_path}", data_dir=data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [json.loads(path.read_text())["metrics"]["val/loss"] for path in tmp_path.glob("*/metrics.json")]
    assert len(losses) == 3
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(min(losses), rel=1e-6)  # one epoch: the best val loss is the last
