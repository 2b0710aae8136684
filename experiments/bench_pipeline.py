"""Our tensor pipeline vs the conventional DataLoader + PIL transforms, on the same images and model.

Run: python experiments/bench_pipeline.py [--steps 30] [--variants]
Prints a table; the last line is one JSON object with data_speedup and train_speedup.
It runs unpinned (records.pin_kernels is not called): it times the CPU's own fastest kernels.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import records  # noqa: E402
import utils  # noqa: E402
from model import Net  # noqa: E402

N = 50_000              # one epoch of CIFAR-10 train images
CONV_BATCH = 128        # the conventional submissions' batch size
OUR_BATCH = 128         # the notebooks' batch_size
PAD = 2                 # the notebooks' pad
EPOCHS = 20             # the notebooks' epochs: our one-time normalization is shared by this many
NORM_1X1 = True         # the BN notebook's norm_1x1: the model both sides train
MEAN, STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)


class PILDataset(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def conventional_loader(images, labels, workers, train=True, batch_size=CONV_BATCH):
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    tf = T.Compose(aug + [T.ToTensor(), T.Normalize(MEAN, STD)])
    return DataLoader(PILDataset(images, labels, tf), batch_size=batch_size, shuffle=train,
                      num_workers=workers, persistent_workers=False)


def bn_model():
    """The BN model as the BN notebook builds it."""
    return Net("bn", norm_1x1=NORM_1X1)


def synthetic(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return x, torch.randint(0, 10, (n,), generator=g)


def as_data(x, y):
    """A utils.Data over x, y, used as both splits."""
    return utils.Data.from_tensors(x, y, x, y, utils.CLASSES, "synthetic")


def machine():
    """This machine in the results files' wording."""
    return f"{records.hardware(torch.device('cpu'))}, torch {torch.__version__}"


def publish(summary, out=None):
    """Print the summary as one JSON line; with out, also write it there (atomically)."""
    if out:
        text = json.dumps(summary, indent=1) + "\n"
        records.atomic_write(out, lambda p: Path(p).write_text(text))
    print(json.dumps(summary))


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- (a) data preparation

def sgd_step(model, opt, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def data_ours(x, y, gen, steps):
    """Seconds of what utils.train() prepares: (one-time setup, one epoch in training, one epoch alone).

    Setup: the train statistics and the normalized crop table. In training: utils.train_batch timed between
    training steps of the BN model, as utils.train() calls it, averaged over `steps` batches and scaled to
    50,000 images. Alone: all batches of one epoch in a loop that does nothing else.
    """
    t0 = time.perf_counter()
    data = as_data(x, y)
    data.train_table(PAD)  # built here, reused by every epoch
    setup = time.perf_counter() - t0
    order = torch.randperm(N, generator=gen)
    batches = [order[i:i + OUR_BATCH] for i in range(0, N, OUR_BATCH)]

    def batch(idx):  # as utils.train() makes it, with this batch's crops drawn here
        return utils.train_batch(data, idx, PAD, utils.crop_draws(1, len(idx), PAD, gen)[0])

    def epoch_alone():
        for idx in batches:
            batch(idx)  # dropped at once: keeping 391 batches would time page faults
    alone = timed(epoch_alone)
    model = bn_model().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, foreach=True)
    seconds = []
    for idx in batches[:steps + 5]:  # the first 5: warm-up, as in (b)
        t0 = time.perf_counter()
        xb, yb = batch(idx)
        seconds.append(time.perf_counter() - t0)
        sgd_step(model, opt, xb, yb)
    return setup, sum(seconds[5:]) / steps * N / OUR_BATCH, alone


def data_conventional(images, labels, workers):
    for _ in conventional_loader(images, labels, workers):
        pass


# ----------------------------------------------------------------------------- (b) training

def train_conventional(images, labels, steps, workers):
    """Plain eager defaults: NCHW, batch 128, SGD with momentum, DataLoader feeding."""
    model = bn_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    it = iter(conventional_loader(images, labels, workers))
    x, y = next(it)  # the first batch pays for worker start-up in both timings alike
    t0 = time.perf_counter()
    for step in range(steps):
        sgd_step(model, opt, x, y)
        x, y = next(it)
    return steps * CONV_BATCH / (time.perf_counter() - t0)


def train_ours(x, y, steps, compile_model=False, fused=False):
    """utils.train() itself, exactly as the notebooks call it through utils.fit(), over `steps` batches
    (compile_model, fused: variants the notebooks do not use, timed to see whether they would pay)."""
    n = steps * OUR_BATCH
    data = as_data(x[:n], y[:n])
    gen = utils.set_seed(0)
    model = bn_model().to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    opt = utils.sgd(model, lr=0.05, fused=fused)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=10 * steps)
    warm = as_data(x[:2 * OUR_BATCH], y[:2 * OUR_BATCH])  # first steps: allocator and compile warm-up
    utils.train(model, warm, opt, sched, OUR_BATCH, PAD, gen, 0, 0.1)
    seconds = timed(lambda: utils.train(model, data, opt, sched, OUR_BATCH, PAD, gen, 1, 0.1))
    return n / seconds


# ----------------------------------------------------------------------------- (c) evaluation

def conv_flops(model, size=32):
    """Multiply-adds x 2 of one forward pass of one image (convs dominate; norms and pools ignored)."""
    flops = []

    def hook(m, i, o):
        flops.append(2 * o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sum(flops)


def eval_conventional(images, labels, n):
    model = bn_model().eval()
    loader = conventional_loader(images[:n], labels[:n], 0, train=False)
    with torch.no_grad():
        seconds = timed(lambda: [model(x) for x, _ in loader])
    return n / seconds


def eval_ours(x, y, n):
    model = bn_model().to(memory_format=torch.channels_last)
    data = as_data(x[:n], y[:n])
    utils.predict(model, data.x_test[:utils.EVAL_BATCH], data)  # warm-up
    return n / timed(lambda: utils.predict(model, data.x_test, data))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="training steps timed per side")
    ap.add_argument("--eval-images", type=int, default=10_000)
    ap.add_argument("--variants", action="store_true",
                    help="also time our training with torch.compile, with fused SGD and with 1 thread")
    ap.add_argument("--out", help="also write the summary JSON here (e.g. experiments/bench.json)")
    args = ap.parse_args()
    torch.manual_seed(0)
    x, y = synthetic(N)
    images = x.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, as torchvision's CIFAR10 keeps it
    labels = y.numpy()
    print("machine:", machine())

    # (a) data preparation, one epoch of 50,000 images
    gen = torch.Generator().manual_seed(0)
    setup_a, in_training_a, alone_a = data_ours(x, y, gen, args.steps)
    ours_a = alone_a + setup_a / EPOCHS  # per epoch of a notebook run, the setup shared out
    ours_in_training_a = in_training_a + setup_a / EPOCHS
    conv_a = {w: timed(lambda: data_conventional(images, labels, w)) for w in (0, 2)}
    best_w = min(conv_a, key=conv_a.get)

    # (b) training throughput, the BN model fed by each pipeline
    ours_b = train_ours(x, y, args.steps)
    conv_b = train_conventional(images, labels, args.steps, best_w)
    variants = {}
    if args.variants:
        variants["fused"] = train_ours(x, y, args.steps, fused=True)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        variants["1thread"] = train_ours(x, y, args.steps)
        torch.set_num_threads(threads)
        variants["compiled"] = train_ours(x, y, args.steps, compile_model=True)

    # (c) evaluation throughput and achieved GFLOP/s
    flops = conv_flops(bn_model())
    ours_c = eval_ours(x, y, args.eval_images)
    conv_c = eval_conventional(images, labels, args.eval_images)

    rows = [("(a) data prep, 1 epoch (s)", f"{conv_a[best_w]:.2f} (workers={best_w}; "
             f"{conv_a[0]:.2f} / {conv_a[2]:.2f} for 0 / 2)",
             f"{ours_a:.3f} ({alone_a:.3f} + {setup_a:.2f}/{EPOCHS} setup)", conv_a[best_w] / ours_a),
            ("(a) between training steps", "", f"{ours_in_training_a:.3f} ({in_training_a:.3f} + setup share)",
             conv_a[best_w] / ours_in_training_a),
            ("(a) incl. all setup, 1 epoch (s)", f"{conv_a[best_w]:.2f}", f"{alone_a + setup_a:.2f}",
             conv_a[best_w] / (alone_a + setup_a)),
            ("(b) train images/s", f"{conv_b:,.0f} (batch {CONV_BATCH}, NCHW, eager)",
             f"{ours_b:,.0f} (batch {OUR_BATCH}, channels_last)", ours_b / conv_b),
            ("(c) eval images/s", f"{conv_c:,.0f}", f"{ours_c:,.0f}", ours_c / conv_c),
            ("(c) eval GFLOP/s achieved", f"{conv_c * flops / 1e9:.1f}", f"{ours_c * flops / 1e9:.1f}",
             ours_c / conv_c)]
    print(f"model FLOPs per image (forward): {flops / 1e6:.1f} M")
    print(f"{'measure':<28} {'conventional':<44} {'ours':<34} speedup")
    for name, conv, ours, speed in rows:
        print(f"{name:<28} {conv:<44} {ours:<34} {speed:.1f}x")
    for name, ips in variants.items():
        print(f"{'(b) train, ' + name:<28} {'':<44} {ips:<34,.0f} {ips / ours_b:.2f}x vs ours")
    summary = {"machine": machine(), "data_speedup": round(conv_a[best_w] / ours_a, 1), "train_speedup": round(ours_b / conv_b, 2),
               "eval_speedup": round(ours_c / conv_c, 2), "data_s_conventional": round(conv_a[best_w], 2),
               "data_s_ours": round(ours_a, 3), "data_s_ours_epoch": round(alone_a, 3),
               "data_s_ours_setup": round(setup_a, 2), "data_s_ours_epoch_in_training": round(in_training_a, 3),
               "data_speedup_in_training": round(conv_a[best_w] / ours_in_training_a, 1), "epochs": EPOCHS, "train_ips_conventional": round(conv_b),
               "train_ips_ours": round(ours_b), "eval_ips_conventional": round(conv_c),
               "eval_ips_ours": round(ours_c), "eval_gflops_ours": round(ours_c * flops / 1e9, 1),
               "conventional_workers": best_w, "threads": torch.get_num_threads()}
    summary.update({f"train_ips_{name}": round(ips) for name, ips in variants.items()})
    publish(summary, args.out)


if __name__ == "__main__":
    main()
