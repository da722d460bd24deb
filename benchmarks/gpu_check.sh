#!/usr/bin/env bash
# The GPU check: devswitch on a real GPU machine that has JAX and PyTorch but no TensorFlow and no network.
#
#   benchmarks/gpu_check.sh wheels    # here, with the registry: fills dist/gpu-wheels (about 2 MiB)
#   benchmarks/gpu_check.sh [OUT]     # there: runs the check, everything into OUT (default $OUT, else gpu-check)
#
# `wheels` builds devswitch's wheel and downloads Keras' (the version installed here) and the two packages of
# Keras that the GPU image lacks (namex, optree), for that image's Python (3.12, manylinux x86-64).
# The check installs them into a folder on PYTHONPATH, beside the image's own packages (JAX, PyTorch, NumPy,
# PyYAML, rich, pytest, nvidia-ml-py): Keras and its two from the local wheels, devswitch with --no-deps
# (TensorFlow stays a core dependency of devswitch; that machine runs without it). Then, in one log:
#   1. the machine: nvidia-smi, the versions, `devswitch info` on JAX and PyTorch;
#   2. the GPU lane: pytest -m gpu (tests/test_gpu.py), junit XML beside the log;
#   3. devswitch compare alexnet --backends jax,torch --devices cpu,gpu (the whitepaper's comparison).
# Each step has its own time limit, 470 s in all (under 8 minutes with the installs); not yet run on a GPU.
# Through the device tool: run(command="bash benchmarks/gpu_check.sh", carry=["dist/gpu-wheels"]).
set -uo pipefail
cd "$(dirname "$0")/.."
wheels=dist/gpu-wheels

if [[ "${1:-}" == "wheels" ]]; then
    set -e
    rm -rf "$wheels" && mkdir -p "$wheels"
    python -m build --wheel --outdir "$wheels" .
    keras=$(python -c "import importlib.metadata as m; print(m.version('keras'))")
    python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$wheels" "keras==$keras" namex optree
    ls -l "$wheels"
    exit 0
fi

out=${1:-${OUT:-gpu-check}}
mkdir -p "$out" && out=$(cd "$out" && pwd)
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
status=0
step() {  # step NAME SECONDS COMMAND...: one step, bounded in time; a failure is recorded, the next step runs
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local code=$?
    echo "=== $name: exit $code in $((SECONDS - start)) s"
    [[ $code == 0 ]] || status=1
}

ls "$wheels"/devswitch-*.whl "$wheels"/keras-*.whl >/dev/null || {
    echo "no wheels in $wheels: run 'benchmarks/gpu_check.sh wheels' first, then carry $wheels"; exit 2; }
# The image's python3 lives in a virtual environment of its own (PyTorch, JAX): install beside it, not over it.
site=/tmp/devswitch-site
python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$wheels"/keras-*.whl \
    "$wheels"/namex-*.whl "$wheels"/optree-*.whl || exit 2
python3 -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$wheels"/devswitch-*.whl || exit 2
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# -P: the checkout is not put on sys.path, so what runs is the installed wheel
devswitch=(python3 -P -m devswitch)

nvidia-smi
python3 -P -c "import sys, keras, jax, torch, devswitch; print(sys.version.split()[0], 'keras', keras.__version__,
'jax', jax.__version__, 'torch', torch.__version__, 'devswitch', devswitch.__version__, devswitch.__file__)"
step "info jax" 45 env KERAS_BACKEND=jax "${devswitch[@]}" info
step "info torch" 45 env KERAS_BACKEND=torch "${devswitch[@]}" info
step "gpu lane" 230 python3 -P -m pytest -m gpu -v -rs -p no:cacheprovider --junitxml="$out/gpu-tests.xml" \
    tests/test_gpu.py
# JAX preallocates 75% of a GPU per process: with memory growth the columns' processes share the GPU
step "alexnet" 150 env DEVSWITCH_MEMORY_GROWTH=true "${devswitch[@]}" compare alexnet --backends jax,torch \
    --devices cpu,gpu --iterations 5 --warmup 2 --out "$out/alexnet"
ls -l "$out" "$out/alexnet" 2>/dev/null
echo "gpu_check: $([[ $status == 0 ]] && echo passed || echo FAILED)"
exit $status
