"""The plain baseline and ``vae.train``'s loop, each timed in a process of its own, taking turns.

``vae.train`` keeps freed memory for the next step (``vae.allocator.keep_freed_memory``); a plain
script leaves glibc's default, which hands it back and faults it in again every step. That
setting holds for a whole process, so the in-process table of ``bench.speed`` runs every
variant with glibc's default, and this module gives each command its own process:
``python -m bench.own_process PRESET VARIANT_JSON [--keep-freed-memory]`` times one variant
and prints its images/s as a JSON line; ``process_rounds`` runs the commands in turn.
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

import torch

from bench.lightning_loop import LightningTrainee, lightning_variants
from bench.timing import BASELINE, Task, Trainee, Variant, measure
from bench.versus_reference import run_process
from bench.workloads import PRESETS, Workload, load_workload
from vae.allocator import keep_freed_memory

RESULT_PREFIX = '{"images_per_second"'


@dataclass(frozen=True)
class Command:
    """A variant and whether its process keeps freed memory, as ``vae.train`` does."""

    label: str
    variant: Variant
    keep_freed_memory: bool


def commands_for(workload: Workload) -> list[Command]:
    """The plain script (as users run it, then with vae.train's allocator setting) and vae.train's loops."""
    as_configured = lightning_variants(workload)[0]
    return [
        Command("plain script, glibc's default allocator", BASELINE, False),
        Command("plain script keeping freed memory, as vae.train does", BASELINE, True),
        Command("vae.train's loop as configured", as_configured, True),
        Command("vae.train's loop as configured, keep_freed_memory=false", as_configured, False),
    ]


def process_rounds(
    preset: str, commands: list[Command], rounds: int, steps: int, threads: int
) -> list[list[float]]:
    """Images/s of each command in each round, in the order of ``commands``.

    The commands take turns, each in a new process, starting one later each round (as
    ``bench.timing.measure`` rotates its variants).
    """
    measured = []
    for round_index in range(rounds):
        rates = {}
        shift = round_index % len(commands)
        for index in [*range(shift, len(commands)), *range(shift)]:
            command = commands[index]
            argv = [sys.executable, "-m", "bench.own_process", preset, json.dumps(asdict(command.variant))]
            argv += [f"--steps={steps}", f"--threads={threads}"]
            argv += ["--keep-freed-memory"] if command.keep_freed_memory else []
            _, _, code, output = run_process(argv)
            lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
            if code or not lines:
                raise RuntimeError(f"{command.label} failed:\n{output[-3000:]}")
            rates[index] = json.loads(lines[-1])["images_per_second"]
        measured.append([rates[index] for index in range(len(commands))])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("variant", help="a bench.timing.Variant's fields as JSON")
    parser.add_argument("--keep-freed-memory", action="store_true", help="as vae.train's processes do")
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if arguments.keep_freed_memory:
        keep_freed_memory()
    variant = Variant(**json.loads(arguments.variant))
    workload = load_workload(PRESETS[arguments.preset])
    task: Task = (LightningTrainee if variant.lightning else Trainee)(variant, workload)
    record = measure({variant.name: task}, warmup=2, steps=arguments.steps, rounds=4)[variant.name]
    print(json.dumps({"images_per_second": record.images_per_second}))


if __name__ == "__main__":
    main()
