"""Recipe sweep on a held-out validation split, many runs side by side on one GPU (or two on a 2-core CPU).

The test split is never looked at: each run trains on 45,000 train images and reports accuracy on the
other 5,000 (a fixed, seeded split). Each finished run prints one JSON line; <out>/sweep.jsonl collects them.

    python experiments/sweep.py --data data/cifar10 --out experiments/tuning/gpu_sweep1 --procs 14 --plan 1
    python experiments/sweep.py --data data/cifar10 --out experiments/tuning/cpu_sweep5 --procs 2 --plan 5

Each sweep decodes the data once into its own temporary folder (removed at the end), which also holds the
workers' result files, so sweeps started side by side never touch each other's files. If a worker fails, the
sweep stops with an error naming it and writes no sweep.jsonl.

Workers run unpinned (records.pin_kernels is not called), one torch thread each on a CPU: their validation numbers
compare with each other, not bit for bit with the notebooks' pinned runs or across CPUs.

Plan 9 is not tuning: it trains each norm's recipe with batches of 1 to 128 (the small-batch table in experiments/README.md).
    python experiments/sweep.py --data data/cifar10 --out experiments/small_batch --procs 2 --plan 9 --budget 7200
    python experiments/sweep.py --data data/cifar10 --out experiments/small_batch/seed1 --procs 2 --plan 10 --budget 7200
"""
import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import records  # noqa: E402
import utils  # noqa: E402
from model import Net, count_params, whiten_  # noqa: E402

BASE = dict(norm="bn", widths=(16, 24, 32), epochs=20, bs=128, lr=0.1, wd=5e-4, ls=0.1, pad=2, pct=0.25,
            act="relu", zero_init=True, c_act=False, groups=4, seed=0, whiten=False, block="full")
VAL = 5000  # held-out train images

# model.py uses GELU; the first sweeps started from ReLU. act name -> (module, function)
ACTS = {"relu": (nn.ReLU, F.relu), "gelu": (nn.GELU, F.gelu), "silu": (nn.SiLU, F.silu)}
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


class SweepNet(Net):
    """Net with every GELU, the modules and the one ending each stage (Net.add), swapped for `act`.
    act="gelu" is Net itself: same modules, state_dict and outputs."""

    def __init__(self, *args, act="gelu", **kwargs):
        if act not in ACTS:
            raise ValueError(f"unknown act {act!r}: choose one of {', '.join(ACTS)}")
        super().__init__(*args, **kwargs)
        self.act = act
        module, self._act = ACTS[act]
        if act != "gelu":
            for parent in list(self.modules()):
                for key, child in parent.named_children():
                    if isinstance(child, nn.GELU):
                        setattr(parent, key, module())

    def end_stage(self, x, branch):
        if self.act == "gelu":
            return super().end_stage(x, branch)
        return self._act(x + branch if self.residual else branch)


def run(cfg, tensors, device):
    """Train one config; returns the final-epoch train and validation accuracy."""
    gen = utils.set_seed(cfg["seed"])
    x, y, classes = tensors
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))  # fixed split
    tr, va = order[VAL:], order[:VAL]
    data = utils.Data.from_tensors(x[tr], y[tr], x[va], y[va], classes, "val split", device)
    model = SweepNet(cfg["norm"], cfg["groups"], cfg["widths"], norm_1x1=cfg["c_act"], block=cfg["block"],
                     act=cfg["act"])
    model = model.to(device, memory_format=utils.memory_format(cfg["norm"], torch.device(device)))
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


# ----------------------------------------------------------------------------- how many workers one GPU holds

GIB = 2 ** 30
CUDA_CONTEXT_BYTES = GIB // 2  # a process's CUDA context with cuDNN and cuBLAS loaded: about 0.5 GB
SLACK_BYTES = GIB // 4         # cuDNN's workspaces and the caching allocator's rounding


@functools.lru_cache(maxsize=None)
def _saved_bytes(norm, groups, widths, c_act, block, act, size):
    model = SweepNet(norm, groups, widths, norm_1x1=c_act, block=block, act=act)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(torch.zeros(2, *size))  # noqa: F841 (keeps the saved tensors alive until all are counted)
    return sum(saved.values()) / 2


def activation_bytes(cfg, size=(3, 32, 32)):
    """Bytes a training step keeps per image for the backward pass: the tensors autograd saves in a forward pass
    of the config's network (measured on the CPU, two images, halved)."""
    return _saved_bytes(cfg["norm"], cfg["groups"], tuple(cfg["widths"]), cfg["c_act"], cfg["block"], cfg["act"],
                        tuple(size))


def worker_bytes(cfgs, n_images, size=(3, 32, 32)):
    """A rough peak of one worker's GPU memory for the hungriest of cfgs, as run() builds its data from n_images
    train images (VAL of them held out): its CUDA context; all n_images as uint8 on the device; Data.crops's table,
    float32 (N_train, 2, H, W + 2*pad, C), with the mirrored uint8 copy crop_table makes while filling it, or
    whiten_'s float64 patch matrix of 5,000 images if larger; a training batch's activations, twice what autograd
    saves (the gradients during backward); and some slack."""
    c, h, w = size
    n_train = n_images - VAL

    def run_bytes(cfg):
        table = n_train * 2 * h * (w + 2 * cfg["pad"]) * c * 4 + n_train * h * w * c
        patches = min(5000, n_train) * c * 9 * (h - 2) * (w - 2) * (4 + 4 + 8) if cfg["whiten"] else 0
        return max(table, patches) + 2 * cfg["bs"] * activation_bytes(cfg, size)

    return CUDA_CONTEXT_BYTES + n_images * c * h * w + max(run_bytes(cfg) for cfg in cfgs) + SLACK_BYTES


def cap_procs(procs, free_bytes, per_worker_bytes):
    """How many of `procs` workers fit side by side in free_bytes of GPU memory at per_worker_bytes each: all of
    them when they fit, else as many as fit, but at least one (fewer workers take more of the plan's runs each)."""
    return max(1, min(procs, int(free_bytes // per_worker_bytes)))


def free_gpu_bytes(device):
    """Free memory on the GPU `device` (torch.cuda.mem_get_info), asked in a short-lived child process: a CUDA call
    here would hold a CUDA context (about 0.5 GB) in this process for the whole sweep."""
    code = "import sys, torch; print(torch.cuda.mem_get_info(torch.device(sys.argv[1]))[0])"
    done = subprocess.run([sys.executable, "-c", code, str(device)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def gpu_procs(args, n_images):
    """args.procs, lowered (with a message saying so) to as many workers as the GPU's free memory holds."""
    cfgs = [{**BASE, **c} for c in PLANS[args.plan]]
    busy = min(args.procs, len(cfgs))  # workers past the plan's length start no run and never touch the GPU
    need, free = worker_bytes(cfgs, n_images), free_gpu_bytes(args.device)
    procs = cap_procs(busy, free, need)
    if procs == busy:
        return args.procs
    gb = lambda b: f"{b / GIB:.1f} GB"
    print(f"sweep: --procs {args.procs} lowered to {procs}: each worker needs about {gb(need)} of GPU memory (its "
          f"CUDA context, the data and its crop table, a batch's activations) and {args.device} has {gb(free)} free"
          + ("; even one worker may not fit" if need > free else ""), file=sys.stderr, flush=True)
    return procs


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
        line = records.json_text(run(cfg, tensors, args.device), indent=None).strip()  # strict: a NaN is null
        print(line, file=sys.stderr, flush=True)  # in the log even if the whole sweep is cut off
        with out.open("a") as f:
            f.write(line + "\n")


def worker_cmd(args, k, cache, work, deadline):
    """The command line of worker k: only what a worker reads, its data and result paths given explicitly."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plan", str(args.plan), "--procs", str(args.procs),
           "--device", args.device, "--cache", str(cache), "--work", str(work), "--worker", str(k),
           "--deadline", repr(deadline)]
    return cmd + (["--epochs", str(args.epochs)] if args.epochs else [])


def finish(out, work, codes):
    """Collect the workers' runs into <out>/sweep.jsonl (written atomically) and return them. codes[k] is
    worker k's exit code; if any is not 0, exit with an error naming those workers and write nothing."""
    failed = [(k, c) for k, c in enumerate(codes) if c != 0]
    if failed:
        def why(c):
            return f"exit code {c}" + (f", killed by signal {-c}" if c < 0 else "")
        listed = ", ".join(f"worker {k} ({why(c)})" for k, c in failed)
        raise SystemExit(f"sweep: {listed} failed; their runs are missing, so {Path(out, 'sweep.jsonl')} was not "
                         f"written (the workers' errors are above)")
    files = [Path(work) / f"sweep_{k}.jsonl" for k in range(len(codes))]  # none if the budget ran out first
    rows = [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines() if line.strip()]
    text = "".join(records.json_text(r, indent=None) for r in rows)
    records.atomic_write(Path(out, "sweep.jsonl"), lambda p: Path(p).write_text(text))
    return rows


def main(args):
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.work and any(Path(args.work).glob("sweep_*.jsonl")):  # another sweep's runs must not join this one
        raise SystemExit(f"sweep: {args.work} already holds sweep_*.jsonl files; give an empty --work folder "
                         f"or leave --work out (a private temporary folder)")
    tmp = Path(tempfile.mkdtemp(prefix="sweep_"))  # this sweep's alone; removed at the end, even on error
    procs = []
    try:
        cache = Path(args.cache) if args.cache else tmp / "data.pt"
        work = Path(args.work) if args.work else tmp / "runs"
        work.mkdir(parents=True, exist_ok=True)
        data = utils.load_cifar10(args.data, "cpu", train_subset=args.subset)  # decode once for all workers
        torch.save((data.x_train, data.y_train, data.classes), cache)
        if torch.device(args.device).type == "cuda":  # each worker holds its own context, data and crop table
            args.procs = gpu_procs(args, len(data.y_train))
        deadline = time.time() + args.budget
        for k in range(args.procs):  # their stderr (errors, and each run's JSON line) goes to the terminal
            procs.append(subprocess.Popen(worker_cmd(args, k, cache, work, deadline), stdout=subprocess.DEVNULL))
        rows = finish(args.out, work, [p.wait() for p in procs])
    finally:
        for p in procs:  # main failed while workers still run: stop them before their folder goes
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for r in sorted(rows, key=lambda r: -r["val_acc"]):
        print(f"{r['cfg']['norm']}  {r['name']:32s} train {r['train_acc']:6.2f}  val {r['val_acc']:6.2f}  "
              f"{r['minutes']:5.2f} min")


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/cifar10")
    p.add_argument("--out", default="experiments/tuning/sweep")
    p.add_argument("--procs", type=int, default=2,
                   help="worker processes side by side, each taking every procs-th run of the plan. On a GPU each "
                        "holds its own CUDA context (about 0.5 GB), the data, its crop table (N_train*2*H*(W+2*pad)*C "
                        "float32: 1.2-1.4 GB for 45,000 images) and a batch's activations; the sweep lowers procs "
                        "to what the GPU's free memory (torch.cuda.mem_get_info) holds, and says so")
    p.add_argument("--plan", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget", type=float, default=480, help="seconds after which no new run starts")
    p.add_argument("--cache", default=None, help="decoded data for the workers (default: in this sweep's "
                                                 "temporary folder)")
    p.add_argument("--work", default=None, help="per-worker result files (default: in this sweep's temporary "
                                                "folder)")
    p.add_argument("--subset", type=int, default=None, help="train images to load (quick checks)")
    p.add_argument("--epochs", type=int, default=None, help="override every run's epochs (quick checks)")
    p.add_argument("--worker", type=int, default=-1)
    p.add_argument("--deadline", type=float, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    a = parse_args()
    worker(a) if a.worker >= 0 else main(a)
