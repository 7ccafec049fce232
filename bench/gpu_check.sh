#!/usr/bin/env bash
# The prepared GPU check: run it first whenever a GPU machine is lent (at most ~8 minutes).
# It records the machine, runs the fast test tier there, trains one epoch of the default
# Fashion-MNIST VAE and of the Cartoon Set VAE at 256 px with accelerator=gpu, and runs the
# quick speed bench; all output also goes to $OUT (else bench/results/) as gpu-check-<time>.log.
#
# Python: .venv's if present, else the machine's python3 with this checkout on PYTHONPATH
# (a GPU machine without a network has torch but cannot `make install`). Data: $VAE_DATA_DIR,
# filled from ../shared/data when that exists; the Cartoon Set run is skipped without PNGs.
# Dry run on a CPU: ACCELERATOR=cpu QUICK=1 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

source bench/gpu_env.sh gpu-check
quick=()
if [ -n "${QUICK:-}" ]; then
    quick=(trainer.limit_train_batches=5 trainer.limit_val_batches=2 trainer.limit_test_batches=2 plots.scatter_points=100)
fi

echo "== machine $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
"$python" -c 'import torch, pytorch_lightning as pl; print("torch", torch.__version__, "lightning", pl.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu " + torch.backends.cpu.get_cpu_capability())'

echo "== fast tests"
timeout 240 "$python" -m pytest -q -x -m "not slow" -p no:cacheprovider tests | tail -3

train() {  # one epoch, launch to exit, then its throughput from metrics.json
    local name="$1"
    shift
    local run="$out_dir/run-$name"
    local start=$SECONDS
    timeout 240 "$python" -m vae.train accelerator="$accelerator" epochs=1 "${quick[@]}" "$@" \
        hydra.run.dir="$run" > "$run.log" 2>&1 || { echo "$name: failed, see $run.log"; tail -5 "$run.log"; return; }
    echo "$name: $((SECONDS - start)) s launch to exit; $(grep -h '^precision=' "$run.log")"
    "$python" -c 'import json, sys; s = json.load(open(sys.argv[1]))
print("  %s train images/s, test loss %.2f, %s" % (s["train_images_per_second"], s["metrics"]["test/loss"], s["settings"]["dataset"]))' "$run/metrics.json"
}

echo "== vae.train accelerator=$accelerator"
train fashion
if compgen -G "$cartoons/*.png" > /dev/null || compgen -G "$cartoons/*/*.png" > /dev/null; then
    train cartoon dataset=cartoon "dataset.root=$cartoons" latent_dim=200
else
    echo "cartoon: skipped, no PNGs in $cartoons (set CARTOONS=)"
fi

echo "== speed bench (quick)"
timeout 180 "$python" -m bench.speed --quick | tail -25
echo "== log: $log"
