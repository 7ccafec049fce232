"""Timing and memory probes: the variants take turns in rounds, so that all see the same load.

The bench shares two cores with other jobs. Measuring variant A for a minute and then variant
B would compare two different machines; taking turns keeps the ratios honest even when the
absolute figures drift. A turn is a few steps rather than one, so that a small model's
weights are back in cache for most of them, as they are in a real training run.
"""

import contextlib
import ctypes
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader

from bench.workloads import Workload


@dataclass(frozen=True)
class Variant:
    """One way of running the training step: data path, memory format, precision, compilation, loop.

    ``fused_adam`` takes Adam's one-kernel CPU implementation (``fused=True``) over the
    default per-parameter loop. ``lightning`` runs the step inside ``trainer.fit`` (see
    ``bench.lightning_loop``), its progress bar and NaN check every ``refresh_rate`` steps.
    """

    name: str
    fast_data: bool = True
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    fused_adam: bool = False
    lightning: bool = False
    refresh_rate: int = 1


BASELINE = Variant("baseline: DataLoader + ToTensor, eager fp32", fast_data=False)


def training_variants(conv: bool, compile: bool, loops: list[Variant]) -> list[Variant]:
    """The baseline; the fast data path with each speed-up alone and all together; then ``loops``.

    channels_last only exists for conv nets; compile is left out of smoke runs (it takes minutes).
    """
    layout = "channels_last + " if conv else ""
    variants = [BASELINE, Variant("eager fp32")]
    if conv:
        variants.append(Variant("channels_last", channels_last=True))
    variants.append(Variant("bf16 autocast", bf16=True))
    if conv:
        variants.append(Variant("channels_last + bf16", channels_last=True, bf16=True))
    variants.append(Variant("fused Adam", fused_adam=True))
    if compile:
        variants.append(Variant("compile", compile=True))
        everything = f"compile + {layout}bf16 + fused Adam"
        variants.append(Variant(everything, channels_last=conv, bf16=True, compile=True, fused_adam=True))
    return [*variants, *loops]


@dataclass(frozen=True)
class Step:
    """One timed step: how many images, and the seconds spent fetching the batch and in total."""

    images: int
    data_seconds: float
    seconds: float


class Task(Protocol):
    """What ``measure`` times: ``run(n)`` takes n steps and says how each went."""

    def run(self, steps: int) -> list[Step]: ...


def endless(loader: DataLoader) -> Iterator:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


class Trainee:
    """One variant's model, Adam optimizer and endless batches; ``step`` is one training step.

    The loss is ``VAE.losses(x)['loss'].mean()``, the quantity ``training_step`` minimizes,
    without Lightning's loop around it (``bench.lightning_loop`` times that loop);
    channels_last and compile are switched on by the module's own ``use_fast_paths``.
    """

    def __init__(self, variant: Variant, workload: Workload) -> None:
        torch.manual_seed(0)
        self.variant = variant
        self.model = workload.model().train()
        self.model.use_fast_paths(channels_last=variant.channels_last, compile=variant.compile)
        fused = {"fused": True} if variant.fused_adam else {}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.model.optim.lr, **fused)
        self.batches = endless(workload.fast_loader() if variant.fast_data else workload.baseline_loader())

    def run(self, steps: int) -> list[Step]:
        return [self.step() for _ in range(steps)]

    def step(self) -> Step:
        started = time.perf_counter()
        images = next(self.batches)[0]
        fetched = time.perf_counter()
        x = self.model.prepare(images)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.variant.bf16):
            loss = self.model.losses(x)["loss"].mean()
        loss.backward()
        self.optimizer.step()
        return Step(len(images), fetched - started, time.perf_counter() - started)


class ResidentPeak:
    """The most resident memory the process gains inside a ``with`` block (Linux's VmHWM, reset first).

    Freed heap is handed back to the system before the reset, so memory that an earlier
    variant left cached does not hide this one's. ``gained`` stays None where /proc is missing.
    (No ``gc.collect()``: tensors are freed by reference counting, and a full collection of
    this process's heap takes a fifth of a second, a turn's worth for the small nets.)
    """

    gained: int | None = None

    def __enter__(self) -> "ResidentPeak":
        _trim_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.start = _status_bytes("VmRSS")
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.start is not None:
            self.gained = _status_bytes("VmHWM") - self.start


def _trim_heap() -> None:
    # Without glibc, freed memory may stay counted; nothing else breaks.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


@dataclass
class Record:
    """One task's measured steps, round by round."""

    first_step_seconds: float
    rounds: list[list[Step]] = field(default_factory=list)
    peak_bytes: int | None = None

    def add_round(self, steps: list[Step], peak_bytes: int | None) -> None:
        self.rounds.append(steps)
        if peak_bytes is not None:
            self.peak_bytes = max(self.peak_bytes or 0, peak_bytes)

    @property
    def steps(self) -> list[Step]:
        return [step for steps in self.rounds for step in steps]

    @property
    def images_per_second(self) -> float:
        """Images over seconds in the faster half of the rounds: the slower half mostly measures other jobs."""
        rates = sorted(
            self.rounds, key=lambda steps: sum(s.seconds for s in steps) / sum(s.images for s in steps)
        )
        kept = [step for steps in rates[: max(1, len(rates) // 2)] for step in steps]
        return sum(s.images for s in kept) / sum(s.seconds for s in kept)

    @property
    def data_share(self) -> float:
        steps = self.steps
        return sum(s.data_seconds for s in steps) / sum(s.seconds for s in steps)

    @property
    def warmup_seconds(self) -> float:
        """The first step's time beyond a typical step's: compilation, for a compiled variant."""
        return self.first_step_seconds - statistics.median(s.seconds for s in self.steps)

    def ratio_to(self, other: "Record") -> float:
        return self.images_per_second / other.images_per_second


def measure(tasks: dict[str, Task], warmup: int, steps: int, rounds: int) -> dict[str, Record]:
    """Warm every task up, then ``rounds`` rounds in which each takes its share of ``steps`` in turn.

    The order rotates each round, so that no task always runs right after the same neighbour.
    """
    rounds = max(1, min(rounds, steps))
    records = {
        name: Record(first_step_seconds=task.run(max(1, warmup))[0].seconds) for name, task in tasks.items()
    }
    names = list(tasks)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            with ResidentPeak() as memory:
                taken = tasks[name].run(steps // rounds)
            records[name].add_round(taken, memory.gained)
    return records
