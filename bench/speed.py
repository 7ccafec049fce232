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
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import iwae, own_process, precision
from bench.lightning_loop import LightningTrainee, lightning_variants
from bench.report import (
    PresetResult,
    detail_table,
    iwae_table,
    own_process_table,
    precision_table,
    precision_verdict,
    presets_table,
    publish,
    reference_table,
    report,
    settings_lines,
    summary_table,
)
from bench.timing import Task, Trainee, measure, training_variants
from bench.versus_reference import project_run, reference_run
from bench.workloads import PRESETS, Preset, Workload, load_workload

CONV_PRESET = "conv"  # the net of the IWAE and bf16 accuracy checks (skipped when not benched)
QUICK_PRESETS = ("mlp", "conv", "cartoon64")  # both families and both data paths


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


class CpuShare:
    """The share of the machine's CPU time that other processes took inside a ``with`` block."""

    def __enter__(self) -> "CpuShare":
        self.start = (_machine_ticks(), _own_seconds())
        return self

    def __exit__(self, *exc_info: object) -> None:
        (busy0, total0), own0 = self.start
        (busy1, total1), own1 = _machine_ticks(), _own_seconds()
        self.others: float | None = None
        if total1 > total0:
            ticks = os.sysconf("SC_CLK_TCK")
            others = (busy1 - busy0) / ticks - (own1 - own0)
            self.others = max(0.0, others / ((total1 - total0) / ticks))


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of all cores since boot, from /proc/stat; zeros where it is missing."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0, 0
    fields = [int(value) for value in first_line.split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def bench_preset(workload: Workload, settings: Settings) -> PresetResult:
    """Every variant of the preset, Lightning's loops included, taking turns."""
    torch._dynamo.reset()  # earlier presets' graphs would count against the recompile limit
    conv = workload.config.model.family == "conv"
    loops = lightning_variants(workload) if workload.preset.lightning_rows else []
    variants = training_variants(conv, settings.compile, loops)
    tasks: dict[str, Task] = {
        variant.name: (LightningTrainee if variant.lightning else Trainee)(variant, workload)
        for variant in variants
    }
    steps = settings.steps_for(workload.preset)
    records = measure(tasks, settings.warmup, steps, settings.rounds)
    return PresetResult(workload, steps, variants, records)


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
        "--reference-rounds", type=int, default=3, help="turns each of those commands takes (default 3)"
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="only the two speed targets: LearnOpenCV's net (the conv preset) against its plain script, "
        "each in a process of its own, and --reference",
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
    tasks = iwae.decoding_tasks(conv, evaluation=not settings.quick)  # its calls take seconds each
    decoding = measure(tasks, warmup=1, steps=rounds, rounds=rounds)
    sections = [(f"IWAE decoding, {CONV_PRESET} net, k = {iwae.K}", iwae_table(decoding))]
    if conv.val_set is None:
        return [*sections, ("bf16 accuracy", "skipped: it needs the real Fashion-MNIST files")]
    print("training fp32 and bf16 for the accuracy check ...", flush=True)
    runs = precision.compare_precisions(conv, settings.accuracy_batches, settings.val_images)
    title = f"bf16 accuracy: {CONV_PRESET} net, validation loss after the same training"
    return [*sections, (title, precision_table(runs) + "\n\n" + precision_verdict(runs))]


def own_process_sections(conv: Workload, settings: Settings, threads: int) -> list[tuple[str, str]]:
    """The plain script against vae.train's loop, each in its own process (see ``bench.own_process``)."""
    rounds, steps = max(1, settings.rounds // 2), 2 * settings.steps_for(conv.preset)
    print(f"timing the {CONV_PRESET} preset in processes of their own, {rounds} round(s) ...", flush=True)
    commands = own_process.commands_for(conv)
    measured = own_process.process_rounds(CONV_PRESET, commands, rounds, steps, threads)
    title = (
        f"{CONV_PRESET}: the plain script against vae.train's loop, each in a process of its own, "
        f"{steps} steps each, {rounds} round(s) taking turns"
    )
    return [(title, own_process_table(commands, measured))]


def reference_sections(epochs: int, rounds: int) -> list[tuple[str, str]]:
    """The script and vae.train take turns, ``rounds`` times, so that a slow spell of a shared
    machine lands on both; each round's ratio is to that round's script run."""
    print(f"timing pytorch/examples against vae.train, {epochs} epoch(s), {rounds} round(s) ...", flush=True)
    # vae.train as the preset runs it: precision=auto
    runs = [[reference_run(epochs), project_run(epochs)] for _ in range(rounds)]
    title = (
        f"pytorch/examples MLP VAE against vae.train, {epochs} epoch(s), wall time from launch "
        f"to exit, {rounds} round(s) taking turns"
    )
    return [(title, reference_table(runs))]


def all_sections(arguments: argparse.Namespace, settings: Settings) -> list[tuple[str, str]]:
    """Every preset's variants, the conv preset's own-process, IWAE and bf16 sections, --reference."""
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
        sections += own_process_sections(conv, settings, arguments.threads)
        sections += conv_sections(conv, settings)
    if arguments.reference:
        sections += reference_sections(arguments.reference, arguments.reference_rounds)
    return sections


def main() -> None:
    arguments = parse_arguments()
    settings = settings_for(arguments)
    torch.set_num_threads(arguments.threads)
    started = datetime.datetime.now()
    with CpuShare() as share:
        if arguments.targets:
            conv = load_workload(PRESETS[CONV_PRESET])
            sections = own_process_sections(conv, settings, arguments.threads)
            sections += reference_sections(arguments.reference or 10, arguments.reference_rounds)
        else:
            sections = all_sections(arguments, settings)
    head = settings_lines(settings.warmup, settings.rounds, arguments.threads, share.others)
    text = report(started, head, sections)
    publish("\n" + text, "speed", started)


if __name__ == "__main__":
    main()
