#!/usr/bin/env bash
# The long trainings of the likelihood issue, for the device time left after bench/gpu_check.sh:
# trains experiment=${EXPERIMENT:-mnist_binarized_resnet} (selected on the validation split only)
# and evaluates its IWAE bound at k=1000 and k=5000 on all 10,000 test images; the runs and
# their evaluation.json files go to $OUT (else bench/results/), the output to gpu-likelihood-<time>.log.
# Other settings: EXPERIMENT=mnist_binarized_conv, OVERRIDES="objective.prior=vamp".
# Dry run on a CPU: ACCELERATOR=cpu QUICK=1 bash bench/gpu_likelihood.sh
set -uo pipefail
cd "$(dirname "$0")/.."

source bench/gpu_env.sh gpu-likelihood
experiment="${EXPERIMENT:-mnist_binarized_resnet}"
read -r -a overrides <<< "${OVERRIDES:-}"
quick=() evaluate_quick=()
if [ -n "${QUICK:-}" ]; then
    quick=(epochs=1 trainer.limit_train_batches=5 trainer.limit_val_batches=2 trainer.limit_test_batches=2 plots.scatter_points=100)
    evaluate_quick=(limit=8)
fi
run="$out_dir/run-$experiment"

echo "== train experiment=$experiment ${overrides[*]} $(date -u +%FT%TZ)"
start=$SECONDS
"$python" -m vae.train experiment="$experiment" accelerator="$accelerator" "${overrides[@]}" "${quick[@]}" \
    hydra.run.dir="$run" > "$run.log" 2>&1 || { echo "training failed, see $run.log"; tail -5 "$run.log"; exit 1; }
echo "trained in $((SECONDS - start)) s; $(grep -h '^precision=' "$run.log")"

best=$(ls -t "$run"/checkpoints/best-*.ckpt | head -1)  # the epoch of lowest validation loss
for k in 1000 5000; do
    start=$SECONDS
    "$python" -m vae.evaluate ckpt="$best" k=$k accelerator="$accelerator" "${evaluate_quick[@]}" \
        out="$run/evaluation-k$k.json" > "$run/evaluate-k$k.log" 2>&1 || { echo "k=$k failed"; tail -5 "$run/evaluate-k$k.log"; continue; }
    echo "k=$k in $((SECONDS - start)) s: $("$python" -c 'import json, sys; e = json.load(open(sys.argv[1]))
print("IWAE bound %.2f, -ELBO %.2f, %d test images, %d active units" % (e["iwae_nll"], e["negative_elbo"], e["images"], e["active_units"]))' "$run/evaluation-k$k.json")"
done
echo "== log: $log"
