"""Where a training step waits for the device: the calls that copy a device value to the
host (`.item()`, `bool(tensor)`, `.tolist()`, `.cpu()`...), counted per step, on any device.

On a GPU each such call stops the host until every kernel queued before it has run, so the
next step's kernels are launched into an idle GPU: for a small network at the paper's batch
size (ResNet-20, batch 128) the step becomes the sum of launch and kernel time instead of
the larger of the two. The calls are the same on a CPU, so this counts them there:

    uv run python benchmarks/host_syncs.py                 # ResNet-20, CIFAR-10, fast path
    uv run python benchmarks/host_syncs.py --steps 120 --trace   # where each call comes from

It trains `resnet20` through `cnnzoo fit`'s trainer set-up (loggers, checkpoints, progress
bar and validation as the command has them) and reports, for the steps after a warm-up,
how many host reads each step made, and from where. `tests/test_module.py` checks that a
training step makes none between the loss logs.
"""

from __future__ import annotations

import argparse
import collections
import traceback
from pathlib import Path

import lightning as L
import torch
from torch.overrides import TorchFunctionMode

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tensor methods that return a host value read from the tensor's storage: on a GPU each is a
# synchronisation (torch.cuda.set_sync_debug_mode names the same).
HOST_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
    torch.Tensor.__format__,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
    torch.Tensor.nonzero,
    torch.unique,
    torch.Tensor.unique,
}


class HostReads(TorchFunctionMode):
    """Counts the host reads made while active, with where each came from."""

    def __init__(self, trace: bool = False) -> None:
        super().__init__()
        self.trace = trace
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            where = "".join(traceback.format_stack(limit=8)[:-1]) if self.trace else ""
            self.calls[f"{getattr(func, '__name__', func)}\n{where}"] += 1
        return func(*args, **(kwargs or {}))


class CountSteps(L.Callback):
    """Counts host reads from the start of step `first` to the start of step `last`."""

    def __init__(self, first: int, last: int, trace: bool) -> None:
        self.first, self.last = first, last
        self.mode = HostReads(trace)
        self._active = False

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.first and not self._active:
            self.mode.__enter__()
            self._active = True
        elif trainer.global_step == self.last and self._active:
            self.mode.__exit__(None, None, None)
            self._active = False
            trainer.should_stop = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", default=str(REPO_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")
    )
    parser.add_argument("--steps", type=int, default=100, help="steps counted (after 20)")
    parser.add_argument("--trace", action="store_true", help="print where each read comes from")
    args = parser.parse_args()

    from cnnzoo_classify.trainer import make_cli

    first, last = 20, 20 + args.steps
    cli = make_cli(
        [
            "--config=resnet20_cifar10",
            f"--data.root={args.root}",
            "--data.on_device=true",
            "--data.batch_size=16",
            "--wandb.enabled=false",
            "--trainer.default_root_dir=/tmp/cnnzoo-host-syncs",
            f"--trainer.max_steps={last + 1}",
            "--trainer.limit_val_batches=2",
        ],
        run=False,
    )
    counter = CountSteps(first, last, args.trace)
    cli.trainer.callbacks.append(counter)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    total = sum(counter.mode.calls.values())
    print(f"\n{total} host reads in {args.steps} training steps ({total / args.steps:.2f} a step)")
    for where, count in counter.mode.calls.most_common():
        print(f"{count:6d}  {where}")


if __name__ == "__main__":
    main()
