#!/usr/bin/env bash
# There, on a lent GPU machine, after benchmarks/device/prepare.sh here: the GPU checks of
# cnnzoo in one call, sized to a session's device time. Each step has its own time limit, a
# failed step does not stop the next, and everything lands under $OUT:
#   tests       the GPU-marked tests (the fast path's images never leave the GPU)
#   throughput  ResNet-50 training and inference, ours against torchvision's and timm's
#   cifar       ResNet-20 on CIFAR-10: the fast path against a plain loop, and its share of
#               the GPU's peak
#   reproduce   a sitting of `cnnzoo reproduce MODEL --dataset cifar10` on the fast path, as
#               long as the call has time left; its checkpoints and log come back, to go on
#               with in the next call (carry runs/MODEL), and the row once the last ends
# Settings (environment): CHECKS (default "tests throughput cifar reproduce"), MODEL
# (resnet20), DEADLINE (seconds the whole call may take, default 540), REPRODUCE_ARGS (more
# options for the reproduction, e.g. a shorter schedule).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/cnnzoo-device}
mkdir -p "$OUT"
CHECKS=${CHECKS:-tests throughput cifar reproduce}
MODEL=${MODEL:-resnet20}
DEADLINE=${DEADLINE:-540}
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

step() {  # step NAME LIMIT_S COMMAND...: run it under its limit and say how it ended
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name: up to ${limit} s"
    timeout --kill-after=10 "$limit" "$@"
    echo "== $name: exit $?, $((SECONDS - start)) s"
}

for check in $CHECKS; do
    case $check in
    tests)
        # Only the files that hold GPU tests: others import what the machine lacks (wandb).
        step tests 150 python3 -m pytest -q -m gpu -p no:cacheprovider \
            $(grep -l "mark.gpu" tests/test_*.py) ;;
    throughput)
        step throughput 150 python3 benchmarks/resnet50_throughput.py --device cuda \
            --batch-size 256 --channels-last --bf16 --json "$OUT/resnet50_throughput.json" ;;
    cifar)
        step cifar 240 python3 benchmarks/cifar_resnet20_epoch.py --device cuda --root "$CIFAR" \
            --steps 200 --channels-last --bf16 --compile --json "$OUT/cifar_resnet20_epoch.json" ;;
    reproduce)
        # What is left of the call, less the start-up, the test and the copies (2 min).
        minutes=$(( (DEADLINE - SECONDS - 120) / 60 ))
        if (( minutes < 1 )); then
            echo "== reproduce: no time left in this call"
            continue
        fi
        step reproduce $(( minutes * 60 + 100 )) python3 -m cnnzoo_classify.cli reproduce \
            "$MODEL" --dataset cifar10 --data.root "$CIFAR" --data.on_device true \
            --model.channels_last true --model.compile true --trainer.precision bf16-mixed \
            --wandb.enabled false --sitting_minutes "$minutes" --ckpt_path last \
            --results "$OUT/reproductions.jsonl" ${REPRODUCE_ARGS:-} \
            --note "(the fast path: on_device, channels_last, compile, bf16-mixed)"
        # For the next sitting: put these back in runs/$MODEL/ here and carry runs/$MODEL.
        mkdir -p "$OUT/$MODEL-checkpoints" "$OUT/$MODEL-log"
        cp runs/"$MODEL"/checkpoints/*.ckpt "$OUT/$MODEL-checkpoints/"
        cp runs/"$MODEL"/version_*/metrics.csv "$OUT/$MODEL-log/" ;;
    *)
        echo "== $check: no such check (tests, throughput, cifar, reproduce)" ;;
    esac
done
echo "== done in $SECONDS s"
