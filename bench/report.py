"""The bench's report: markdown tables in which each figure stands beside the baseline's."""

import datetime
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import iwae, own_process, precision, versus_reference
from bench.timing import Record, Variant
from bench.workloads import BATCH_SIZE, Workload

MIB = 2**20


@dataclass
class PresetResult:
    """A preset's workload and its variants' records."""

    workload: Workload
    steps: int
    variants: list[Variant]
    records: dict[str, Record]

    @property
    def baseline(self) -> Record:
        return self.records[self.variants[0].name]

    def speedup(self, variant: Variant) -> float:
        return self.records[variant.name].ratio_to(self.baseline)

    def fastest(self) -> Variant:
        """The fastest raw step on the fast data path: the best combination of speed-ups."""
        return max((v for v in self.variants[1:] if not v.lightning), key=self.speedup)

    def lightning_ratios(self) -> str:
        """x baseline of Lightning's loop as ``vae.train`` runs it now, and with bf16 (+ channels_last), bar/50."""
        loops = [variant for variant in self.variants if variant.lightning]
        if not loops:
            return "not timed"
        return f"{self.speedup(loops[0]):.2f}x → {self.speedup(loops[-1]):.2f}x"


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def publish(text: str, name: str, when: datetime.datetime) -> Path:
    """Print a report and keep it as ``bench/results/<name>-<timestamp>.md``."""
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{when:%Y%m%d-%H%M%S}.md"
    path.write_text(text + "\n")
    print(f"written to {path}")
    return path


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:.0f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _memory_ratio(record: Record, baseline: Record) -> float | None:
    if record.peak_bytes is None or not baseline.peak_bytes:
        return None
    return record.peak_bytes / baseline.peak_bytes


def summary_table(results: list[PresetResult]) -> str:
    """One row per preset: the baseline against the fastest variant, each measure side by side."""
    rows = []
    for result in results:
        base, best_variant = result.baseline, result.fastest()
        best = result.records[best_variant.name]
        epoch = result.workload.epoch_size
        rows.append(
            [
                result.workload.preset.name,
                best_variant.name,
                f"{base.images_per_second:.0f} → {best.images_per_second:.0f}",
                f"**{result.speedup(best_variant):.2f}x**",
                f"{epoch / base.images_per_second:.1f} → {epoch / best.images_per_second:.1f}",
                f"{_mib(base.peak_bytes)} → {_mib(best.peak_bytes)}",
                f"{100 * base.data_share:.1f}% → {100 * best.data_share:.2f}%",
                f"{best.warmup_seconds:.0f}" if best_variant.compile else "-",
                result.lightning_ratios(),
            ]
        )
    header = [
        "preset",
        "fastest variant",
        "images/s: baseline → fastest",
        "speed-up",
        "s/epoch",
        "peak step MiB",
        "data loading share",
        "compile s",
        "Lightning loop x baseline: today → bf16 (+ channels_last), bar/50",
    ]
    return table(header, rows)


def detail_table(results: list[PresetResult]) -> str:
    """Every variant of every preset, with its ratio to that preset's baseline."""
    rows = []
    for result in results:
        base, epoch = result.baseline, result.workload.epoch_size
        for variant in result.variants:
            record = result.records[variant.name]
            rows.append(
                [
                    result.workload.preset.name,
                    variant.name,
                    f"{record.images_per_second:.0f}",
                    _times(result.speedup(variant)),
                    f"{epoch / record.images_per_second:.1f}",
                    "-" if variant.lightning else _mib(record.peak_bytes),
                    "-" if variant.lightning else _times(_memory_ratio(record, base)),
                    "-" if variant.lightning else f"{100 * record.data_share:.2f}%",
                    f"{record.warmup_seconds:.1f}" if variant.compile else "-",
                ]
            )
    header = [
        "preset",
        "variant",
        "images/s",
        "x baseline",
        "s/epoch",
        "peak step MiB",
        "x baseline",
        "data loading",
        "compile s",
    ]
    return table(header, rows)


def presets_table(results: list[PresetResult]) -> str:
    rows = [
        [
            result.workload.preset.name,
            result.workload.preset.summary,
            "`" + " ".join(result.workload.preset.overrides) + "`",
            result.workload.source,
            f"{result.workload.epoch_size:,}",
            str(result.steps),
        ]
        for result in results
    ]
    header = [
        "preset",
        "network and data",
        "Hydra overrides",
        "images",
        "epoch (train images)",
        "steps per variant",
    ]
    return table(header, rows)


def iwae_table(records: dict[str, Record]) -> str:
    base = next(iter(records.values()))
    rows = []
    for name, record in records.items():
        per_image = record.images_per_second / iwae.K
        rows.append(
            [
                name,
                f"{record.images_per_second:.0f}",
                _times(record.ratio_to(base)),
                f"{per_image:.2f}",
                f"{iwae.TEST_IMAGES / per_image / 60:.0f}",
                _mib(record.peak_bytes),
            ]
        )
    header = [
        "decoder path",
        "decodes/s",
        "x baseline",
        f"test images/s at k={iwae.K}",
        f"minutes for {iwae.TEST_IMAGES:,} test images",
        "peak MiB",
    ]
    return table(header, rows)


def precision_table(runs: list[precision.TrainedRun]) -> str:
    reference = runs[0]
    rows = [
        [
            run.label,
            str(run.seed),
            str(run.batches),
            f"{run.train_seconds:.0f}",
            f"{run.val_loss_fp32:.3f}",
            f"{run.val_loss_as_trained:.3f}",
            f"{100 * (run.val_loss_fp32 / reference.val_loss_fp32 - 1):+.2f}%",
        ]
        for run in runs
    ]
    header = [
        "training (channels_last)",
        "seed",
        "batches",
        "train s",
        "val loss, fp32 eval",
        "val loss, eval as trained",
        f"vs {reference.label} seed {reference.seed}",
    ]
    return table(header, rows)


def precision_verdict(runs: list[precision.TrainedRun]) -> str:
    """bf16's mean val loss against fp32's, next to the spread that the seed alone makes."""
    by_precision = {bf16: [run.val_loss_fp32 for run in runs if run.bf16 == bf16] for bf16 in (False, True)}
    fp32, bf16 = (statistics.mean(losses) for losses in by_precision.values())
    gap = bf16 / fp32 - 1
    spread = max((max(losses) - min(losses)) / min(losses) for losses in by_precision.values())
    within = "within" if abs(gap) <= 0.005 else "NOT within"
    return (
        f"Mean over {len(precision.SEEDS)} seeds: bf16 {bf16:.3f} against fp32 {fp32:.3f}, {100 * gap:+.2f}%: "
        f"{within} the 0.5% rule. The seed alone moves one precision's loss by up to {100 * spread:.2f}%, "
        "so a gap smaller than that is not evidence either way."
    )


def reference_table(rounds: list[list[versus_reference.ProcessRun]]) -> str:
    """One row per command: its median wall time, and the median of its per-round ratios to
    the script's run in the same round; the test loss and exit status of its first run."""
    rows = []
    for turns in zip(*rounds, strict=True):
        first = turns[0]
        walls = [run.wall_seconds for run in turns]
        ratios = [
            run.wall_seconds / round_[0].wall_seconds for run, round_ in zip(turns, rounds, strict=True)
        ]
        peaks = [run.peak_rss_bytes for run in turns if run.peak_rss_bytes is not None]
        rows.append(
            [
                f"`python {first.command}`",
                f"{statistics.median(walls):.1f} ({', '.join(f'{wall:.1f}' for wall in walls)})",
                _times(statistics.median(ratios)),
                f"{max(peaks) / 2**30:.2f}" if peaks else "n/a",
                ", ".join("n/a" if run.test_loss is None else f"{run.test_loss:.2f}" for run in turns),
                ", ".join(str(run.returncode) for run in turns),
            ]
        )
    return table(
        ["command", "median wall s (each run)", "x reference (median)", "peak RSS GiB", "test loss", "exit"],
        rows,
    )


def own_process_table(commands: list[own_process.Command], rounds: list[list[float]]) -> str:
    """One row per command: its median images/s, and the median of its per-round ratios to the
    plain script's run in the same round."""
    rows = []
    for index, command in enumerate(commands):
        rates = [round_[index] for round_ in rounds]
        ratios = [round_[index] / round_[0] for round_ in rounds]
        rows.append(
            [
                command.label,
                command.variant.name,
                f"{statistics.median(rates):.0f} ({', '.join(f'{rate:.0f}' for rate in rates)})",
                _times(statistics.median(ratios)),
            ]
        )
    return table(["process", "variant", "images/s, median (each round)", "x plain script (median)"], rows)


def _load_line(threads: int, others: float | None) -> str:
    if others is None:
        return "- Other processes' share of the CPU: unknown (no /proc/stat)"
    hint = (
        ". With other jobs running, every torch thread waits for the slowest one: compare `--threads 1`"
        if others > 0.25 and threads > 1
        else ""
    )
    return (
        f"- Other processes took {100 * others:.0f}% of the machine's CPU time during the run; absolute "
        f"figures drift with that, and the variants take turns so that they all share it{hint}"
    )


def machine_line(threads: int) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return (
        f"{model}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} "
        f"GiB; torch {torch.__version__} on CPU (capability {torch.backends.cpu.get_cpu_capability()}), "
        f"{threads} threads; python {platform.python_version()}"
    )


def settings_lines(warmup: int, rounds: int, threads: int, others: float | None) -> list[str]:
    """What the figures depend on, for the report's head."""
    return [
        f"- Machine: {machine_line(threads)}",
        _load_line(threads, others),
        f"- Batch {BATCH_SIZE}; per variant {warmup} warm-up step(s), then its steps (see Presets) in "
        f"{rounds} rounds in which the variants take turns; images/s counts the faster half of a "
        "variant's rounds (the slower half mostly measures other jobs), 'x baseline' is its ratio to the "
        "baseline's; data loading, memory and compile time count every step",
        "- A step: fetch the batch, `VAE.prepare`, forward, `VAE.losses(x)['loss'].mean()`, backward, Adam; "
        "channels_last and compile through `VAE.use_fast_paths`. "
        "Data loading = fetching the batch (the baseline's ToTensor included; the fast path's uint8 → "
        "float is in the step). Peak step MiB = resident memory gained during a step (activations, "
        "gradients, batch). s/epoch = train images / images/s, validation excluded. Compile s = first "
        "step's time beyond a typical step's",
        "- Lightning rows: `trainer.fit` of the same module and loader (a new fit each turn, its first batch "
        "untimed), without logger, checkpoints and validation; 'as vae.train runs it' takes the config's "
        "`precision`, `channels_last` and `compile`, and its progress bar and NaN check every "
        "`speed.progress_every` steps, as `vae.train` has them",
        "- Memory: these variants, the baseline included, share one process with glibc's default "
        "allocator, which hands freed memory back and faults it in again each step; `vae.train` keeps it "
        "for reuse (`vae.allocator.keep_freed_memory`), and only processes of their own can differ in that: "
        "see the table of the plain script against vae.train's loop",
        "- Compile s depends on torch.compile's on-disk cache (`TORCHINDUCTOR_CACHE_DIR`, by default "
        "/tmp/torchinductor_<user>): a machine's first run compiles from scratch, later runs mostly load",
        "- Cartoon epoch: cartoonset100k minus 10% val and 10% test = 80,000 images. Its baseline builds "
        "PIL images from memory and decodes no PNG (~3 ms per image more in a real per-sample pipeline), "
        "so its ratios are lower bounds",
    ]


def report(started: datetime.datetime, head: list[str], sections: list[tuple[str, str]]) -> str:
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in sections)
    return f"# Training speed, {started:%Y-%m-%d %H:%M}\n\n" + "\n".join(head) + "\n\n" + body + "\n"
