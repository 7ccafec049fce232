"""After a multirun, one table of every job's settings and final metrics, to read a sweep at a glance."""

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

METRICS = ("val/loss", "val/recon", "val/kl", "test/loss", "test/recon", "test/kl")


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """A row per job folder: its overrides, then its final metrics (blank for a job that did not finish)."""
    rows = []
    jobs = sorted((folder for folder in sweep_dir.iterdir() if (folder / ".hydra").is_dir()), key=_job_number)
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        row: dict[str, Any] = {
            "job": _job_number(job)[0],
            **dict(override.split("=", 1) for override in overrides),
        }
        summary = job / "metrics.json"
        if summary.is_file():
            finished = json.loads(summary.read_text())
            row.update(
                {name: round(finished["metrics"][name], 4) for name in METRICS if name in finished["metrics"]}
            )
            row["epochs_done"] = finished["epochs_completed"]
            row["wall_s"] = finished["wall_time_s"]
        else:
            row["status"] = "no metrics.json: failed or stopped"
        rows.append(row)
    return rows


def _job_number(folder: Path) -> tuple[int, str]:
    number = folder.name.split("_", 1)[0]
    return (int(number), folder.name) if number.isdigit() else (-1, folder.name)


def write_tables(rows: list[dict[str, Any]], folder: Path) -> None:
    """``sweep.csv`` (every column) and ``sweep.md`` (the settings that vary, then the metrics)."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with (folder / "sweep.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    results = {"job", *METRICS, "epochs_done", "wall_s", "status"}
    shared = {
        column: rows[0].get(column)
        for column in columns
        if column not in results and all(row.get(column) == rows[0].get(column) for row in rows)
    }
    shown = [column for column in columns if column not in shared]
    lines = [
        f"Every job: {' '.join(f'{key}={value}' for key, value in shared.items()) or '(no shared override)'}",
        "",
    ]
    lines += ["| " + " | ".join(shown) + " |", "|" + " --- |" * len(shown)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in shown) + " |" for row in rows]
    (folder / "sweep.md").write_text("\n".join(lines) + "\n")


class SweepTable(Callback):
    """Hydra calls this once a multirun (a grid or an Optuna search) has run all its jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.sweep.dir)
        rows = sweep_rows(folder)
        if rows:
            write_tables(rows, folder)
            print(f"sweep table: {folder / 'sweep.md'} ({len(rows)} jobs)")
