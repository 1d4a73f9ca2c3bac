#!/usr/bin/env bash
# Here, before a run on a machine with a GPU and no network: put in .device/ (git-ignored) what
# that machine lacks, to go there with the repository. It has its own Python
# (3.12) with torch, torchvision, lightning, timm, torchmetrics and pytest, but not cnnzoo, the
# CLI's jsonargparse, or the data. See docs/guides/benchmarks.md, "On a machine with a GPU".
set -euo pipefail
cd "$(dirname "$0")/../.."

rm -rf .device
mkdir -p .device/wheels .device/data
# Our packages, as wheels (pure Python): installed there without their dependencies.
uv build --all-packages --wheel --out-dir .device/wheels --quiet
# What `cnnzoo fit` needs that the machine has not, at the versions of uv.lock.
locked() { grep -A1 "^name = \"$1\"$" uv.lock | sed -n 's/^version = "\(.*\)"$/\1/p'; }
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --dest .device/wheels \
    "jsonargparse==$(locked jsonargparse)" \
    "docstring-parser==$(locked docstring-parser)" \
    "typeshed-client==$(locked typeshed-client)"
cp ../shared/data/cifar10-jpg.tar.gz .device/data/
# The commit that runs there, for the rows (the machine gets the tree without .git).
commit=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- packages apps || commit="$commit+dirty"
echo "$commit" >.device/COMMIT
du -sh .device
echo "ready: copy the repository with .device/ (and runs/<arch>, to go on with a" \
    "reproduction's sittings) to the GPU machine and run benchmarks/device/check.sh there"
