#!/usr/bin/env bash
# There, on a machine with a GPU and no network, after benchmarks/device/prepare.sh here: the
# GPU checks of cnnzoo in one run of about ten minutes. Each step has its own time limit, a
# failed step does not stop the next, and everything lands under $OUT:
#   reproduce   a sitting of `cnnzoo reproduce MODEL --dataset cifar10` on the fast path
#               (on_device, chunks of CHUNK batches, channels_last, bf16-mixed, compile), as
#               long as the call has time
#               left after RESERVE seconds for the checks after it; if it fails (not a sitting's
#               clean end) it runs again uncompiled. The run folder comes back as
#               $OUT/MODEL-run.tar, to go on with in the next call (unpack it here into runs/
#               and carry runs/MODEL), and the row once the last sitting ends
#   cifar       ResNet-20 on CIFAR-10: the fast path against a plain loop, and its share of
#               the GPU's peak, with a profile of 20 steps (where a step's time goes)
#   graphs      the same, compiled with mode reduce-overhead (each step replayed as CUDA
#               graphs), cnnzoo's fast path (one step a batch, and in chunks) and the plain
#               loop only
#   tests       the GPU-marked tests (the fast path's images never leave the GPU)
#   throughput  ResNet-50 training and inference, ours against torchvision's and timm's
# Settings (environment): CHECKS (default "reproduce cifar graphs tests throughput", run in
# that order), MODEL (resnet20), DEADLINE (seconds the whole call may take, default 540),
# RESERVE (seconds of it kept from the reproduction for the checks after it, default 240),
# COMPILE (the reproduction's --model.compile, default true), CHUNK (its --data.chunk: optimiser
# steps per training step, default 10; the weights are those of 1), REPRODUCE_ARGS (more options for
# the reproduction, e.g. a shorter schedule). A check whose time limit no longer fits before
# the deadline is cut to what is left, or skipped.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/cnnzoo-device}
mkdir -p "$OUT"
CHECKS=${CHECKS:-reproduce cifar graphs tests throughput}
MODEL=${MODEL:-resnet20}
DEADLINE=${DEADLINE:-540}
RESERVE=${RESERVE:-240}
COMPILE=${COMPILE:-true}
exec > >(tee -a "$OUT/log.txt") 2>&1

python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/site \
    .device/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:benchmarks PYTHONUNBUFFERED=1 WANDB_MODE=offline
CNNZOO_GIT_COMMIT=$(cat .device/COMMIT)
export CNNZOO_GIT_COMMIT
CIFAR=.device/data/cifar10-jpg.tar.gz
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c 'import torch, torchvision, lightning, timm, cnnzoo
print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision",
      torchvision.__version__, "lightning", lightning.__version__, "timm", timm.__version__)'
echo "cnnzoo commit $CNNZOO_GIT_COMMIT; checks: $CHECKS"

step() {  # step NAME LIMIT_S COMMAND...: run it under its limit (cut to the deadline)
    local name=$1 limit=$2 start=$SECONDS left=$((DEADLINE - SECONDS - 15))
    shift 2
    if ((left < 30)); then
        echo "== $name: skipped, ${left} s left before the deadline"
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name: up to ${limit} s"
    timeout --kill-after=10 "$limit" "$@"
    local status=$?
    echo "== $name: exit $status, $((SECONDS - start)) s"
    return $status
}

reproduce() {  # reproduce COMPILE: one sitting, as long as the deadline and RESERVE allow
    local minutes=$(((DEADLINE - SECONDS - RESERVE - 60) / 60))
    if ((minutes < 1)); then
        echo "== reproduce: no time left in this call"
        return 0
    fi
    step reproduce $((minutes * 60 + 100)) python3 -m cnnzoo_classify.cli reproduce \
        "$MODEL" --dataset cifar10 --data.root "$CIFAR" --data.on_device true \
        --data.chunk "${CHUNK:-10}" --data.eval_batch_size 1000 --model.channels_last true --model.compile "$1" \
        --trainer.precision bf16-mixed --wandb.enabled false --sitting_minutes "$minutes" \
        --ckpt_path last --results "$OUT/reproductions.jsonl" ${REPRODUCE_ARGS:-} \
        --note "(the fast path: on_device, chunks of ${CHUNK:-10}, channels_last, compile $1, bf16-mixed)"
}

for check in $CHECKS; do
    case $check in
    reproduce)
        reproduce "$COMPILE"
        status=$?
        if ((status != 0 && status != 75)) && [[ $COMPILE != false ]]; then
            echo "== reproduce: failed compiled; again, uncompiled"
            reproduce false
        fi
        # For the next sitting: unpack into runs/ here and carry runs/$MODEL.
        tar -cf "$OUT/$MODEL-run.tar" -C runs "$MODEL" && ls -l "$OUT/$MODEL-run.tar" ;;
    cifar)
        step cifar 200 python3 benchmarks/cifar_resnet20_epoch.py --device cuda --root "$CIFAR" \
            --steps 200 --channels-last --bf16 --compile --profile "$OUT/cifar_profile.txt" \
            --json "$OUT/cifar_resnet20_epoch.json" ;;
    graphs)
        step graphs 150 python3 benchmarks/cifar_resnet20_epoch.py --device cuda --root "$CIFAR" \
            --steps 200 --rounds 2 --channels-last --bf16 --compile \
            --compile-mode reduce-overhead --runs cnnzoo-on-device cnnzoo-chunked \
            --json "$OUT/cifar_resnet20_epoch_graphs.json" ;;
    tests)
        # Only the files that hold GPU tests: others import what the machine lacks (wandb).
        step tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider \
            $(grep -l "mark.gpu" tests/test_*.py) ;;
    throughput)
        step throughput 120 python3 benchmarks/resnet50_throughput.py --device cuda \
            --batch-size 256 --channels-last --bf16 --json "$OUT/resnet50_throughput.json" ;;
    *)
        echo "== $check: no such check (reproduce, cifar, graphs, tests, throughput)" ;;
    esac
done
echo "== done in $SECONDS s"
