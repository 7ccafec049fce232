"""`python -m bench.speed` (`make bench`): training speed of each preset, fast paths against a plain baseline.

For every preset the baseline (torchvision Dataset + ToTensor per sample + DataLoader, eager
fp32) and the fast variants (in-memory uint8 batches with channels_last, bf16 autocast,
torch.compile, and Lightning's loop around them) take turns in the same process, so the
table reads as ratios even on a machine that other jobs share. Then: IWAE decoding
throughput, fp32 against bf16 validation loss, and (``--reference``) the pytorch/examples
MLP script against ``vae.train``. The report is printed and written to
``bench/results/speed-<timestamp>.md``.
"""

import argparse
import datetime
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import iwae, precision, versus_reference
from bench.lightning_loop import LightningTrainee
from bench.timing import Record, Task, Trainee, Variant, measure, training_variants
from bench.workloads import BATCH_SIZE, PRESETS, Preset, Workload, load_workload

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONV_PRESET = "conv"  # the net of the IWAE and bf16 accuracy checks (skipped when not benched)
QUICK_PRESETS = ("mlp", "conv", "cartoon64")  # both families and both data paths
MIB = 2**20


@dataclass(frozen=True)
class Settings:
    """How long to measure; ``--quick`` shrinks everything to a smoke run."""

    steps: int | None  # measured steps per variant; None: each preset's own
    quick: bool
    rounds: int  # turns per variant; the steps are shared out among them
    warmup: int
    compile: bool
    accuracy_batches: int | None  # None: one full epoch
    val_images: int | None  # None: the whole validation slice

    def steps_for(self, preset: Preset) -> int:
        """``--steps`` if given, else the preset's own (an eighth of them in a smoke run)."""
        if self.steps is not None:
            return self.steps
        return max(self.rounds, preset.steps // 8) if self.quick else preset.steps


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


class CpuShare:
    """The share of the machine's CPU time that other processes took inside a ``with`` block."""

    def __enter__(self) -> "CpuShare":
        self.start = (_machine_ticks(), _own_seconds())
        return self

    def __exit__(self, *exc_info: object) -> None:
        (busy0, total0), own0 = self.start
        (busy1, total1), own1 = _machine_ticks(), _own_seconds()
        ticks = os.sysconf("SC_CLK_TCK")
        others = (busy1 - busy0) / ticks - (own1 - own0)
        self.others = max(0.0, others / ((total1 - total0) / ticks))


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of all cores since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def bench_preset(workload: Workload, settings: Settings) -> PresetResult:
    """Every variant of the preset, Lightning's loops included, taking turns."""
    torch._dynamo.reset()  # earlier presets' graphs would count against the recompile limit
    conv = workload.config.model.family == "conv"
    variants = training_variants(conv, settings.compile, workload.preset.lightning_rows)
    tasks: dict[str, Task] = {
        variant.name: (LightningTrainee if variant.lightning else Trainee)(variant, workload)
        for variant in variants
    }
    steps = settings.steps_for(workload.preset)
    records = measure(tasks, settings.warmup, steps, settings.rounds)
    return PresetResult(workload, steps, variants, records)


# The report: markdown tables, each figure beside the baseline's.


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


def reference_table(runs: list[versus_reference.ProcessRun]) -> str:
    reference = runs[0]
    rows = [
        [
            f"`python {run.command}`",
            f"{run.wall_seconds:.1f}",
            _times(run.wall_seconds / reference.wall_seconds),
            f"{run.peak_rss_bytes / 2**30:.2f}",
            "n/a" if run.test_loss is None else f"{run.test_loss:.2f}",
            str(run.returncode),
        ]
        for run in runs
    ]
    return table(["command", "wall s", "x reference", "peak RSS GiB", "test loss", "exit"], rows)


def machine_line(threads: int) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return (
        f"{model}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} "
        f"GiB; torch {torch.__version__} on CPU, {threads} threads; python {platform.python_version()}"
    )


def settings_lines(settings: Settings, threads: int, others: float) -> list[str]:
    """What the figures depend on, for the report's head."""
    return [
        f"- Machine: {machine_line(threads)}",
        f"- Other processes took {100 * others:.0f}% of the machine's CPU time during the run; absolute "
        "figures drift with that, ratios are taken round by round"
        + (
            ". With other jobs running, every torch thread waits for the slowest one: compare `--threads 1`"
            if others > 0.25 and threads > 1
            else ""
        ),
        f"- Batch {BATCH_SIZE}; per variant {settings.warmup} warm-up step(s), then its steps (see Presets) in "
        f"{settings.rounds} rounds in which the variants take turns; images/s counts the faster half of a "
        "variant's rounds (the slower half mostly measures other jobs), 'x baseline' is its ratio to the "
        "baseline's; data loading, memory and compile time count every step",
        "- A step: fetch the batch, to float, forward, `VAE.losses(x)['loss'].mean()`, backward, Adam. "
        "Data loading = fetching the batch (the baseline's ToTensor included; the fast path's uint8 → "
        "float is in the step). Peak step MiB = resident memory gained during a step (activations, "
        "gradients, batch). s/epoch = train images / images/s, validation excluded. Compile s = first "
        "step's time beyond a typical step's",
        "- Lightning rows: `trainer.fit` of the same module and loader, without logger, checkpoints and "
        "validation; 'today' is `precision=32-true` with the progress bar refreshed every step",
        "- Compile s depends on torch.compile's on-disk cache (`TORCHINDUCTOR_CACHE_DIR`, by default "
        "/tmp/torchinductor_<user>): a machine's first run compiles from scratch, later runs mostly load",
        "- Cartoon epoch: cartoonset100k minus 10% val and 10% test = 80,000 images. Its baseline builds "
        "PIL images from memory and decodes no PNG (~3 ms per image more in a real per-sample pipeline), "
        "so its ratios are lower bounds",
    ]


def report(started: datetime.datetime, head: list[str], sections: list[tuple[str, str]]) -> str:
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in sections)
    return f"# Training speed, {started:%Y-%m-%d %H:%M}\n\n" + "\n".join(head) + "\n\n" + body + "\n"


# Orchestration.


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, help="measured training steps per variant (default: each preset's own, 8 to 160)"
    )
    parser.add_argument(
        "--presets",
        help=f"comma-separated, from {','.join(PRESETS)} (default all; --quick: {','.join(QUICK_PRESETS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few steps, no compile, 5-batch accuracy check"
    )
    parser.add_argument(
        "--reference",
        type=int,
        nargs="?",
        const=10,
        metavar="EPOCHS",
        help="also time pytorch/examples' MLP VAE against vae.train, EPOCHS epochs each (default 10)",
    )
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (default: the cores)"
    )
    arguments = parser.parse_args()
    names = (
        arguments.presets.split(",")
        if arguments.presets
        else list(QUICK_PRESETS if arguments.quick else PRESETS)
    )
    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    arguments.presets = names
    return arguments


def settings_for(arguments: argparse.Namespace) -> Settings:
    if arguments.quick:
        return Settings(
            arguments.steps, True, rounds=2, warmup=1, compile=False, accuracy_batches=5, val_images=512
        )
    return Settings(
        arguments.steps, False, rounds=8, warmup=2, compile=True, accuracy_batches=None, val_images=None
    )


def conv_sections(conv: Workload, settings: Settings) -> list[tuple[str, str]]:
    """IWAE decoding throughput and, on real data, the fp32 against bf16 accuracy check."""
    print("timing IWAE decoding ...", flush=True)
    rounds = max(1, settings.rounds // 4)  # a decoding step takes seconds: a few rounds are plenty
    decoding = measure(iwae.decoding_tasks(conv), warmup=1, steps=rounds, rounds=rounds)
    sections = [(f"IWAE decoding, {CONV_PRESET} net, k = {iwae.K}", iwae_table(decoding))]
    if conv.val_set is None:
        return [*sections, ("bf16 accuracy", "skipped: it needs the real Fashion-MNIST files")]
    print("training fp32 and bf16 for the accuracy check ...", flush=True)
    runs = precision.compare_precisions(conv, settings.accuracy_batches, settings.val_images)
    title = f"bf16 accuracy: {CONV_PRESET} net, validation loss after the same training"
    return [*sections, (title, precision_table(runs) + "\n\n" + precision_verdict(runs))]


def reference_sections(epochs: int) -> list[tuple[str, str]]:
    print(f"timing pytorch/examples against vae.train, {epochs} epoch(s) each ...", flush=True)
    runs = [versus_reference.reference_run(epochs), versus_reference.project_run(epochs)]
    title = f"pytorch/examples MLP VAE against vae.train, {epochs} epoch(s), wall time from launch to exit"
    return [(title, reference_table(runs))]


def main() -> None:
    arguments = parse_arguments()
    settings = settings_for(arguments)
    torch.set_num_threads(arguments.threads)
    started = datetime.datetime.now()
    with CpuShare() as share:
        results = []
        for name in arguments.presets:
            print(f"timing {name} ...", flush=True)
            results.append(bench_preset(load_workload(PRESETS[name]), settings))
        sections = [
            ("Summary: each preset's fastest variant against its baseline", summary_table(results)),
            ("Every variant", detail_table(results)),
            ("Presets", presets_table(results)),
        ]
        conv = next((r.workload for r in results if r.workload.preset.name == CONV_PRESET), None)
        if conv is not None:
            sections += conv_sections(conv, settings)
        if arguments.reference:
            sections += reference_sections(arguments.reference)
    text = report(started, settings_lines(settings, arguments.threads, share.others), sections)
    print("\n" + text)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"speed-{started:%Y%m%d-%H%M%S}.md"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
