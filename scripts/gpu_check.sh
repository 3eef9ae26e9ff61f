#!/usr/bin/env bash
# The one command to run on a GPU machine (~8 minutes on one H200): the MuJoCo Warp figures of
# scripts/benchmark.py --sim-device cuda:0 (stepping, memory per env, training, the shipped experts on both
# backends; see scripts/benchmark_warp.py), then a 3-iteration training run on the GPU into a temp folder.
# Each command is printed before its output.
#
#   bash scripts/gpu_check.sh            # on the GPU machine, after its packages are installed
#                                        #   (../shared/device/README.md: source .whl4/install_on_device.sh && ...)
#   bash scripts/gpu_check.sh warp-cpu   # the same steps on Warp's CPU device with tiny sizes (a few minutes)
#
# Env: PYTHON (default python3), WARP_CACHE_PATH (default /tmp/warp-cache: Warp's compiled kernels; the first run
# compiles them, minutes), BENCH_TIMEOUT / TRAIN_TIMEOUT [s] (default 390 / 120: a hung step leaves time for the
# next, and the whole fits one 10-minute device call with the install). Exit status: 0 when every step succeeded,
# else the last failing step's (124: timed out).
set -u
cd "$(dirname "$0")/.."
export WARP_CACHE_PATH=${WARP_CACHE_PATH:-/tmp/warp-cache}
export GIT_PYTHON_REFRESH=quiet  # rsl_rl stores the git diff of the run when it can; no git binary is no error
python=${PYTHON:-python3}
status=0

step() {  # print the command, run it, print its wall time, remember a failure
    echo
    echo "\$ $*"
    local start=$SECONDS
    "$@" || { status=$?; echo "FAILED (exit $status): $*"; }
    echo "($((SECONDS - start)) s)"
}

case "${1:-}" in
    "") device=cuda:0 learner=cuda:0 bench=() train=(env.num_envs=4096 runner.max_iterations=3) ;;
    warp-cpu)  # Warp's CPU device, tiny sizes: a test of this script
        device=warp-cpu learner=cpu
        bench=(--num-envs 8 --steps 5 --repeats 1 --train-envs 16 --train-iterations 1 --eval-envs 2
               evaluate.duration_s=1)
        train=(env.num_envs=16 runner.max_iterations=1) ;;
    *) echo "usage: bash scripts/gpu_check.sh [warp-cpu]" >&2; exit 2 ;;
esac
run_dir=$(mktemp -d)
trap 'rm -rf "$run_dir"' EXIT

echo "== gpu_check: sim device $device, WARP_CACHE_PATH $WARP_CACHE_PATH, $(date -u '+%Y-%m-%d %H:%M:%S UTC') =="
if command -v nvidia-smi >/dev/null; then
    step nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
else
    echo "(no nvidia-smi here)"
fi
step "$python" -c "import sys, torch, mujoco, warp, mujoco_warp, rsl_rl, hydra
from importlib.metadata import version
print('python', sys.version.split()[0], '| torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '(no CUDA device)')
print(' | '.join(f'{p} {version(p)}' for p in ('mujoco', 'warp-lang', 'mujoco-warp', 'rsl-rl-lib', 'hydra-core')))"
step timeout "${BENCH_TIMEOUT:-390}" "$python" scripts/benchmark.py --sim-device "$device" "${bench[@]}"
step timeout "${TRAIN_TIMEOUT:-120}" "$python" scripts/train.py --config-name=train env=combo_go2Piper_locomotion \
    env.sim_device="$device" device="$learner" "${train[@]}" hydra.run.dir="$run_dir/train"
step ls "$run_dir/train"
exit $status
