"""Training and evaluation speed of the BN, GN and LN models (full and separable C blocks), timed in turns.

Run: python experiments/bench_norms.py [--rounds 7] [--steps 40] [--out experiments/bench_norms.json]

The seconds per epoch of the real runs drift with this shared machine's load: bit-identical LN runs took 30 to
40 s an epoch on different days. Here every round times each model once, in a rotating order, so all of them
share each round's drift; the README compares them by the median of the per-round ratios.

It runs unpinned (records.pin_kernels is not called): it times the CPU's own fastest kernels, as a user running
with pin_cpu = False would get them.
"""
import argparse
import contextlib
import io
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline as bench  # noqa: E402  (synthetic images, as_data, timed, machine, publish, batch, pad)
import utils  # noqa: E402  (bench_pipeline put the repository on sys.path)
from model import Net  # noqa: E402

SEPARABLE = {"block": "separable", "widths": [32, 48, 96]}  # the README's depthwise-separable variant
MODELS = {  # name: Net keyword arguments
    "bn": {"norm": "bn", "norm_1x1": True},         # as S8_BN.ipynb builds it: c3 and c6 get a norm and GELU too
    "bn_plain": {"norm": "bn", "norm_1x1": False},  # BN with exactly GN's and LN's layers: the norm's own cost
    "gn": {"norm": "gn", "norm_1x1": False},        # as S8_GN.ipynb
    "ln": {"norm": "ln", "norm_1x1": False},        # as S8_LN.ipynb
    "bn_sep": {"norm": "bn", "norm_1x1": True, **SEPARABLE},  # the same notebooks with separable C blocks
    "gn_sep": {"norm": "gn", "norm_1x1": False, **SEPARABLE},
    "ln_sep": {"norm": "ln", "norm_1x1": False, **SEPARABLE},
}


class Timed:
    """One model with its optimizer and schedule, built as utils.fit builds them, kept across rounds."""

    def __init__(self, cfg, data, steps):
        self.model = Net(**cfg).to(memory_format=torch.channels_last)
        self.opt = utils.sgd(self.model, lr=0.2)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=0.2, total_steps=10_000)
        self.data, self.steps, self.gen = data, steps, utils.set_seed(0)

    def train_ips(self):
        """Train images per second of one utils.train() call over `steps` batches (its bar line dropped)."""
        with contextlib.redirect_stdout(io.StringIO()):
            s = bench.timed(lambda: utils.train(self.model, self.data, self.opt, self.sched, bench.OUR_BATCH,
                                                bench.PAD, self.gen, 0, 0.1))
        return self.steps * bench.OUR_BATCH / s

    def eval_ips(self, x):
        return len(x) / bench.timed(lambda: utils.predict(self.model, x, self.data))


def measure(rounds, steps, eval_images, log=print):
    """Per-round train and eval images/s of every model in MODELS; round 0 only warms up and is dropped."""
    x, y = bench.synthetic(max(steps * bench.OUR_BATCH, eval_images))
    data = bench.as_data(x[:steps * bench.OUR_BATCH], y[:steps * bench.OUR_BATCH])
    data.train_table(bench.PAD)  # built once, shared by all models
    runs = {name: Timed(cfg, data, steps) for name, cfg in MODELS.items()}
    train, evals = {n: [] for n in runs}, {n: [] for n in runs}
    names = list(runs)
    for r in range(rounds + 1):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate: nobody always goes first
            t, e = runs[name].train_ips(), runs[name].eval_ips(x[:eval_images])
            if r:
                train[name].append(round(t, 1))
                evals[name].append(round(e, 1))
        if r:
            log(f"round {r}: " + "  ".join(f"{n} {train[n][-1]:,.0f}/{evals[n][-1]:,.0f}" for n in names))
    return train, evals


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds, after one warm-up round")
    ap.add_argument("--steps", type=int, default=40, help="training steps per model and round")
    ap.add_argument("--eval-images", type=int, default=5_000, help="test images per model and round")
    ap.add_argument("--out", help="also write the JSON here (e.g. experiments/bench_norms.json)")
    args = ap.parse_args()
    print("machine:", bench.machine(), "| images/s, train/eval")
    train, evals = measure(args.rounds, args.steps, args.eval_images)
    summary = {"machine": bench.machine(), "batch_size": bench.OUR_BATCH, "steps": args.steps,
               "eval_images": args.eval_images, "rounds": args.rounds,
               "models": MODELS,
               "train_ips": train, "eval_ips": evals}
    bench.publish(summary, args.out)


if __name__ == "__main__":
    main()
