"""Recipe sweep on a held-out validation split, many runs side by side on one GPU (or two on a 2-core CPU).

The test split is never looked at: each run trains on 45,000 train images and reports accuracy on the
other 5,000 (a fixed, seeded split). Each finished run prints one JSON line; <out>/sweep.jsonl collects them.

    python experiments/sweep.py --data data/cifar10 --out experiments/tuning/gpu_sweep1 --procs 14 --plan 1
    python experiments/sweep.py --data data/cifar10 --out experiments/tuning/cpu_sweep5 --procs 2 --plan 5

Plan 9 is not tuning: it trains each norm's recipe with batches of 1 to 128 (the small-batch table in experiments/README.md).
    python experiments/sweep.py --data data/cifar10 --out experiments/small_batch --procs 2 --plan 9 --budget 7200
    python experiments/sweep.py --data data/cifar10 --out experiments/small_batch/seed1 --procs 2 --plan 10 --budget 7200
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import utils  # noqa: E402
from model import Net, count_params, whiten_  # noqa: E402

BASE = dict(norm="bn", widths=(16, 24, 32), epochs=20, bs=128, lr=0.1, wd=5e-4, ls=0.1, pad=2, pct=0.25,
            act="relu", zero_init=True, c_act=False, groups=4, seed=0, whiten=False, block="full")
VAL = 5000  # held-out train images

GELU = F.gelu
ACTS = {"relu": F.relu, "gelu": None, "silu": F.silu}  # model.py uses GELU; the first sweeps started from ReLU
FINAL = {"bn": {"act": "gelu", "lr": 0.2, "pct": 0.15, "c_act": True},  # the notebooks
         "gn": {"norm": "gn", "act": "gelu", "lr": 0.3, "pct": 0.15},
         "ln": {"norm": "ln", "act": "gelu", "lr": 0.3, "pct": 0.15}}

PLANS = {
    1: [{}, {"seed": 1}, {"lr": 0.2}, {"lr": 0.05}, {"wd": 2.5e-4}, {"wd": 1e-3}, {"ls": 0.0}, {"ls": 0.2},
        {"pad": 1}, {"pad": 3}, {"pad": 4}, {"pct": 0.15}, {"pct": 0.4}, {"bs": 64, "lr": 0.05},
        {"bs": 64, "lr": 0.1}, {"bs": 256, "lr": 0.2}, {"act": "gelu"}, {"act": "silu"}, {"zero_init": False},
        {"norm": "gn"}, {"norm": "ln"}, {"norm": "gn", "act": "gelu"}, {"norm": "ln", "act": "gelu"},
        {"widths": (16, 32, 24)}, {"lr": 0.2, "wd": 2.5e-4}, {"act": "gelu", "ls": 0.0}, {"bs": 512, "lr": 0.4},
        {"norm": "gn", "lr": 0.2}, {"norm": "ln", "lr": 0.2}],
    2: [{"act": "gelu", "lr": 0.2}, {"act": "gelu", "lr": 0.2, "pct": 0.15},
        {"act": "gelu", "lr": 0.2, "pct": 0.15, "seed": 1}, {"act": "gelu", "lr": 0.3, "pct": 0.15},
        {"act": "gelu", "bs": 256, "lr": 0.4, "pct": 0.15}, {"act": "gelu", "lr": 0.2, "pct": 0.15, "c_act": True},
        {"act": "gelu", "lr": 0.2, "pct": 0.15, "ls": 0.05}, {"act": "gelu", "pct": 0.15},
        {"norm": "gn", "act": "gelu", "lr": 0.2, "pct": 0.15},
        {"norm": "gn", "act": "gelu", "lr": 0.2, "pct": 0.15, "groups": 8},
        {"norm": "gn", "act": "gelu", "lr": 0.2, "pct": 0.15, "c_act": True},
        {"norm": "gn", "act": "gelu", "lr": 0.2, "pct": 0.15, "groups": 2},
        {"norm": "ln", "act": "gelu", "lr": 0.2, "pct": 0.15},
        {"norm": "ln", "act": "gelu", "lr": 0.2, "pct": 0.15, "c_act": True},
        {"norm": "ln", "act": "gelu", "lr": 0.3, "pct": 0.15}, {"norm": "ln", "act": "gelu", "pct": 0.15}],
    3: [{**b, **c} for b, cs in (
        ({"act": "gelu", "pct": 0.15, "c_act": True},
         [{"lr": 0.2, "seed": 1}, {"lr": 0.3}, {"lr": 0.4}, {"bs": 256, "lr": 0.4}, {"lr": 0.2, "ls": 0.05},
          {"lr": 0.2, "pad": 3}]),
        ({"norm": "gn", "act": "gelu", "pct": 0.15},
         [{"lr": 0.3}, {"lr": 0.4}, {"lr": 0.3, "c_act": True}, {"lr": 0.3, "ls": 0.05}, {"lr": 0.2, "wd": 2.5e-4},
          {"lr": 0.3, "seed": 1}]),
        ({"norm": "ln", "act": "gelu", "pct": 0.15},
         [{"lr": 0.4}, {"lr": 0.3, "seed": 1}, {"lr": 0.3, "c_act": True}, {"lr": 0.3, "ls": 0.05}]),
    ) for c in cs],
    4: [{**FINAL[n], "seed": k} for n in FINAL for k in range(2, 7)],  # seed spread of the final recipes
    5: [{**FINAL["bn"], "whiten": w} for w in ("train", "frozen")],  # CPU: C1 starts as patch whitening
    6: [{**FINAL[n], "whiten": "train"} for n in ("gn", "ln")],       # BN gained, so GN and LN too?
    7: [{**FINAL["bn"], "whiten": "train", **c} for c in                # CPU: was sweep 5's gain one lucky seed?
        ({"seed": 1}, {"seed": 2}, {"seed": 3}, {"bs": 256, "lr": 0.4})],
    8: [{**FINAL[n], "block": "separable", "widths": (32, 48, 96)} for n in ("bn", "gn")],  # CPU: wider, separable
    # CPU, not tuning: each norm's recipe trained with small batches, the peak lr scaled with the batch size
    9: [{**FINAL[n], "bs": bs, "lr": FINAL[n]["lr"] * bs / BASE["bs"], "epochs": 3}
        for bs in (1, 2, 4, 8, 16, 128) for n in ("bn", "gn", "ln")],
}
PLANS[10] = [{**c, "seed": 1} for c in PLANS[9]]  # the same under a second seed


def as_json(cfg):
    """cfg as it is logged: tuples (widths) become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def name(cfg):
    diff = {k: v for k, v in cfg.items() if BASE[k] != v}
    return ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in diff.items()) or "base"


def run(cfg, tensors, device):
    """Train one config; returns the final-epoch train and validation accuracy."""
    act = ACTS[cfg["act"]]
    # every GELU of the model, modules and functional, becomes `act` (undone for the worker's next run)
    F.gelu = GELU if act is None else lambda x, approximate="none", act=act: act(x)
    gen = utils.set_seed(cfg["seed"])
    x, y, classes = tensors
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))  # fixed split
    tr, va = order[VAL:], order[:VAL]
    data = utils.Data.from_tensors(x[tr], y[tr], x[va], y[va], classes, "val split", device)
    model = Net(cfg["norm"], cfg["groups"], cfg["widths"], norm_1x1=cfg["c_act"], block=cfg["block"])
    model = model.to(device, memory_format=torch.channels_last)
    if not cfg["zero_init"]:
        for block in (model.C2, model.C5, model.C9):
            nn.init.ones_(block[1].weight)
    if cfg["whiten"]:
        whiten_(model.C1[0], data.normalize(data.x_train[:5000]))
        model.C1[0].weight.requires_grad_(cfg["whiten"] == "train")
    t0 = time.time()
    hist = utils.fit(model, data, cfg["epochs"], cfg["bs"], cfg["lr"], gen, weight_decay=cfg["wd"],
                     label_smoothing=cfg["ls"], pad=cfg["pad"], pct_start=cfg["pct"])
    # val accuracy with the norms using batch statistics, at the training batch size and at the usual 128
    batch_stats = utils.batch_stats_acc(model, data, sizes=sorted({cfg["bs"], BASE["bs"]}))
    return dict(name=name(cfg), params=count_params(model), train_acc=hist["train_acc"][-1],
                val_acc=hist["test_acc"][-1], val_curve=hist["test_acc"], minutes=round((time.time() - t0) / 60, 2),
                val_acc_batch_stats=batch_stats, cfg=as_json(cfg))


def worker(args):
    torch.backends.cudnn.benchmark = True
    torch.set_num_threads(1)  # many workers share the CPU cores
    tensors = torch.load(args.cache)
    plan = [{**BASE, **c} for c in PLANS[args.plan]][args.worker::args.procs]
    if args.epochs:
        plan = [{**c, "epochs": args.epochs} for c in plan]
    out = Path(args.work) / f"sweep_{args.worker}.jsonl"
    for cfg in plan:
        if time.time() > args.deadline:
            break
        line = json.dumps(run(cfg, tensors, args.device))
        print(line, file=sys.stderr, flush=True)  # in the log even if the whole sweep is cut off
        with out.open("a") as f:
            f.write(line + "\n")


def main(args):
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for stale in Path(args.work).glob("sweep_*.jsonl"):  # an earlier sweep's runs must not join this one
        stale.unlink()
    data = utils.load_cifar10(args.data, "cpu", train_subset=args.subset)  # decode once for all workers
    torch.save((data.x_train, data.y_train, data.classes), args.cache)
    deadline = time.time() + args.budget
    procs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker", str(k),
                               "--deadline", str(deadline)], stdout=subprocess.DEVNULL)
             for k in range(args.procs)]
    for p in procs:
        p.wait()
    rows = [json.loads(line) for f in sorted(Path(args.work).glob("sweep_*.jsonl")) for line in f.open()]
    Path(args.out, "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in sorted(rows, key=lambda r: -r["val_acc"]):
        print(f"{r['cfg']['norm']}  {r['name']:32s} train {r['train_acc']:6.2f}  val {r['val_acc']:6.2f}  "
              f"{r['minutes']:5.2f} min")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/cifar10")
    p.add_argument("--out", default="experiments/tuning/sweep")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--plan", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget", type=float, default=480, help="seconds after which no new run starts")
    p.add_argument("--cache", default="/tmp/sweep_data.pt")
    p.add_argument("--work", default="/tmp/sweep_runs", help="per-worker result files")
    p.add_argument("--subset", type=int, default=None, help="train images to load (quick checks)")
    p.add_argument("--epochs", type=int, default=None, help="override every run's epochs (quick checks)")
    p.add_argument("--worker", type=int, default=-1)
    p.add_argument("--deadline", type=float, default=0)
    a = p.parse_args()
    worker(a) if a.worker >= 0 else main(a)
