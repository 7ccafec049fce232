"""`python -m bench.studies.cartoon_memory`: peak memory of Cartoon Set training on a cache larger than RAM should allow.

Writes ``--images`` synthetic 500x500 RGBA avatars with attribute CSVs (the real set's
format), then runs ``python -m vae.train dataset=cartoon`` at ``--size`` px for ``--steps``
steps, sampling the training process's memory every 0.2 s. The cache is memory-mapped:
its pages show up as file-backed resident memory (shared, dropped by the kernel under
pressure), while the process's own (anonymous) memory must stay flat as the cache grows.
Prints the figures and writes them to ``bench/results/cartoon-memory-<timestamp>.md``.
"""

import argparse
import datetime
import os
import random
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from PIL import Image, ImageDraw

from bench.report import publish

SIDE = 500


def draw_avatar(job: tuple[Path, int]) -> None:
    """One avatar: a transparent background, a face, hair and eyes in seeded random colours."""
    path, number = job
    rng = random.Random(number)

    def colour() -> tuple[int, ...]:
        return tuple(rng.randrange(256) for _ in range(3))

    image = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    hair = rng.randrange(10)
    draw.ellipse((90, 110, 410, 470), fill=(*colour(), 255))
    draw.rectangle((80, 60 + 10 * hair, 420, 170), fill=(*colour(), 255))
    for x in (180, 320):
        draw.ellipse((x - 25, 250, x + 25, 300), fill=(255, 255, 255, 255))
        draw.ellipse((x - 10, 265, x + 10, 285), fill=(*colour(), 255))
    image.save(path)
    path.with_suffix(".csv").write_text(f'"hair_color", {hair}, 10\n"face_color", {number % 11}, 11\n')


def write_avatars(folder: Path, count: int) -> float:
    """``count`` avatars in ``folder`` (kept if already there); the seconds it took."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    missing = [
        (folder / f"cs{n:06d}.png", n) for n in range(count) if not (folder / f"cs{n:06d}.png").exists()
    ]
    with Pool() as pool:
        pool.map(draw_avatar, missing, chunksize=64)
    return time.perf_counter() - started


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident memory split into anonymous and file-backed pages, and its peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0])
    return fields


def train_and_watch(
    folder: Path, cache: Path, size: int, steps: int, run_dir: Path, overrides: list[str]
) -> dict:
    command = [
        sys.executable,
        "-m",
        "vae.train",
        "dataset=cartoon",
        f"dataset.root={folder}",
        f"dataset.cache_dir={cache}",
        f"dataset.image_size={size}",
        "epochs=1",
        f"trainer.limit_train_batches={steps}",
        "trainer.limit_val_batches=20",
        "trainer.limit_test_batches=20",
        "accelerator=cpu",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    while process.poll() is None:
        try:
            for name, value in memory_kib(process.pid).items():
                peak[name] = max(peak[name], value)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.2)
    errors = process.communicate()[1]
    if process.returncode:
        raise SystemExit(f"training failed:\n{errors[-3000:]}")
    return {**peak, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128, help="training image size in px")
    parser.add_argument("--steps", type=int, default=300, help="training steps (batch 32)")
    parser.add_argument("--folder", type=Path, default=Path("data/synthetic_cartoonset"))
    parser.add_argument(
        "overrides", nargs="*", help="more vae.train overrides, e.g. plots.scatter_points=200"
    )
    args = parser.parse_args()

    drawing = write_avatars(args.folder / "images", args.images)
    cache = args.folder / "cache"
    cache_bytes = args.images * 3 * args.size**2
    run_dir = args.folder / "run"
    watched = train_and_watch(args.folder / "images", cache, args.size, args.steps, run_dir, args.overrides)
    cached = sum(path.stat().st_size for path in cache.glob("*.npy"))
    lines = [
        f"# Cartoon Set memory, {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs",
        "",
        f"- {args.images:,} synthetic 500x500 RGBA PNGs + CSVs (drawn in {drawing:.0f} s)",
        f"- cache at {args.size} px: {cached / 2**30:.2f} GiB on disk (expected {cache_bytes / 2**30:.2f} GiB)",
        f"- `vae.train {' '.join(['dataset=cartoon', f'dataset.image_size={args.size}', *args.overrides])}`, batch 32, "
        f"{args.steps} training steps, from launch to exit (a cache build included if there was none): "
        f"{watched['seconds']:.0f} s",
        f"- peak resident memory (VmHWM): {watched['VmHWM'] / 2**20:.2f} GiB",
        f"- of which at most {watched['RssAnon'] / 2**20:.2f} GiB anonymous (the process's own) and "
        f"{watched['RssFile'] / 2**20:.2f} GiB file-backed (mapped cache pages and libraries, reclaimable)",
    ]
    publish("\n".join(lines), "cartoon-memory", datetime.datetime.now())


if __name__ == "__main__":
    main()
