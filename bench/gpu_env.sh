# Sourced by the GPU scripts: the accelerator, the log in $OUT (else bench/results/), the
# Python (.venv's, else python3 with this checkout on PYTHONPATH) and $VAE_DATA_DIR filled from
# ../shared/data. $1 names the log.
accelerator="${ACCELERATOR:-gpu}"
out_dir="${OUT:-bench/results}"
mkdir -p "$out_dir"
log="$out_dir/$1-$(date -u +%Y%m%d-%H%M%S).log"
exec > >(tee "$log") 2>&1

python=.venv/bin/python
if [ ! -x "$python" ]; then
    python=python3
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export VAE_DATA_DIR="${VAE_DATA_DIR:-$PWD/data}"
shared="${VAE_SHARED_DATA:-$PWD/../shared/data}"
for name in MNIST FashionMNIST; do
    mkdir -p "$VAE_DATA_DIR/$name/raw"
    [ -d "$shared/$name/raw" ] && cp -n "$shared/$name/raw/"*.gz "$VAE_DATA_DIR/$name/raw/" 2>/dev/null
done
cartoons="${CARTOONS:-$shared/cartoonset}"
