#!/usr/bin/env bash
# The long trainings of the likelihood issue, for the device time left after bench/gpu_check.sh:
# trains experiment=${EXPERIMENT:-mnist_binarized_resnet} (selected on the validation split only)
# and evaluates its IWAE bound at k=1000 and k=5000 on all 10,000 test images, then the same with
# a flow prior fitted to its codes (vae.fit_prior; N(0, I) models only); the runs and their
# evaluation JSON files go to $OUT (else bench/results/), the output to gpu-likelihood-<time>.log.
# Other settings: EXPERIMENT=mnist_binarized_conv, OVERRIDES="objective.prior=vamp".
# Dry run on a CPU: ACCELERATOR=cpu QUICK=1 bash bench/gpu_likelihood.sh
set -uo pipefail
cd "$(dirname "$0")/.."

source bench/gpu_env.sh gpu-likelihood
experiment="${EXPERIMENT:-mnist_binarized_resnet}"
read -r -a overrides <<< "${OVERRIDES:-}"
quick=() evaluate_quick=() fit_quick=()
if [ -n "${QUICK:-}" ]; then
    quick=(epochs=1 trainer.limit_train_batches=5 trainer.limit_val_batches=2 trainer.limit_test_batches=2 plots.scatter_points=100)
    evaluate_quick=(limit=8)
    fit_quick=(steps=20)
fi
run="$out_dir/run-$experiment"

echo "== train experiment=$experiment ${overrides[*]} $(date -u +%FT%TZ)"
start=$SECONDS
"$python" -m vae.train experiment="$experiment" accelerator="$accelerator" "${overrides[@]}" "${quick[@]}" \
    hydra.run.dir="$run" > "$run.log" 2>&1 || { echo "training failed, see $run.log"; tail -5 "$run.log"; exit 1; }
echo "trained in $((SECONDS - start)) s; $(grep -h '^precision=' "$run.log")"

bounds() {  # $1: a checkpoint, $2: the name of its reports in the run folder
    for k in 1000 5000; do
        start=$SECONDS
        "$python" -m vae.evaluate ckpt="$1" k=$k accelerator="$accelerator" "${evaluate_quick[@]}" \
            out="$run/$2-k$k.json" > "$run/$2-k$k.log" 2>&1 || { echo "k=$k failed"; tail -5 "$run/$2-k$k.log"; continue; }
        echo "$2, k=$k in $((SECONDS - start)) s: $("$python" -c 'import json, sys; e = json.load(open(sys.argv[1]))
print("IWAE bound %.2f, -ELBO %.2f, %d test images, %d active units" % (e["iwae_nll"], e["negative_elbo"], e["images"], e["active_units"]))' "$run/$2-k$k.json")"
    done
}

best=$(ls -t "$run"/checkpoints/best-*.ckpt | head -1)  # the epoch of lowest validation loss
bounds "$best" evaluation
start=$SECONDS
if "$python" -m vae.fit_prior ckpt="$best" accelerator="$accelerator" "${fit_quick[@]}" > "$run/fit-prior.log" 2>&1; then
    echo "flow prior fitted in $((SECONDS - start)) s: $(grep -h '^-log p(z)' "$run/fit-prior.log")"
    bounds "$run/flow-prior/checkpoints/$(basename "$best")" evaluation-flow-prior
else
    echo "no flow prior: $(tail -1 "$run/fit-prior.log")"
fi
echo "== log: $log"
