"""Data, augmentation, train/test loops, results and figures for the S8 notebooks."""
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F
from tqdm import tqdm

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NORM_NAMES = {"bn": "Batch Norm", "gn": "Group Norm", "ln": "Layer Norm"}
SEED_DIR = "seed1"  # second-seed runs: results, figures and executed notebooks, inside out_dir
VARIANT_DIR = "separable"  # runs with depthwise-separable C blocks at wider stages, inside out_dir (its own seed1)
BARS = {"bn": 84.0, "gn": 82.0, "ln": 81.0}  # issue #3: final-epoch test accuracy % to reach on the JPEG copy
EVAL_BATCH = 256  # eval images per forward: on a 2-core CPU 1,000 ran ~1.8x slower (activations outgrow the cache)
OFFLINE_HINT = ("python -m zipfile -e ../shared/cifar10-jpeg.zip data/ and set data_root='data/cifar10', "
                "or run once on a machine with internet so torchvision can download CIFAR-10")


# ----------------------------------------------------------------------------- setup

def get_device(device="auto"):
    """'auto' picks cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seeded_order(n, seed, device):
    """A fixed random permutation of range(n): for picks that must not follow the stored order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)


def set_seed(seed):
    """Seed every generator a run touches; returns the generator for data order and augmentation."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def hardware(device):
    """A short human description of where the run happened."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        name = models[0] if models else name
    return f"CPU: {name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# ----------------------------------------------------------------------------- data

@dataclass
class Data:
    """CIFAR-10 as uint8 tensors on the training device, plus the train-split statistics."""
    x_train: torch.Tensor   # (N, 3, 32, 32) uint8
    y_train: torch.Tensor   # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor      # (1, 3, 1, 1) float, of x_train / 255
    std: torch.Tensor
    classes: tuple
    source: str             # what was loaded, from where
    tables: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # pad -> crops(pad), cached

    @classmethod
    def from_tensors(cls, x_train, y_train, x_test, y_test, classes, source, device="cpu"):
        """Move the splits to `device` and measure the per-channel statistics of x_train."""
        pixels = x_train.float().div_(255)
        mean = pixels.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
        std = pixels.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
        dev = torch.device(device)
        return cls(x_train.to(dev), y_train.to(dev), x_test.to(dev), y_test.to(dev),
                   mean.to(dev), std.to(dev), classes, source)

    def standardize(self, x):
        """Values with the channels in the last dim -> float, standardized with the train statistics
        (a float x is standardized in place: crops() uses that to skip a 1.4 GB copy)."""
        return x.float().sub_(255 * self.mean.view(-1)).div_(255 * self.std.view(-1))

    def normalize(self, x):
        """uint8 images (N, C, H, W) -> float, standardized per channel, channels_last."""
        x = x.contiguous(memory_format=torch.channels_last)  # reorder the bytes, not the floats
        return self.standardize(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def crops(self, pad):
        """x_train normalized once into a crop_table for `pad`: every epoch only gathers from it."""
        if pad not in self.tables:
            self.tables[pad] = self.standardize(crop_table(self.x_train, pad, torch.float32))  # in place
        return self.tables[pad]

    def denormalize(self, x):
        return (x * self.std + self.mean).clamp(0, 1)


def _read_split(folder):
    """Decode an image folder split (<class>/*) into uint8 (N, 3, H, W) and labels."""
    import numpy as np
    from PIL import Image
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder} has no class folders")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise FileNotFoundError(f"{folder / name} holds no .jpg/.png images")
        images += [np.asarray(Image.open(f).convert("RGB")) for f in files]  # (H, W, 3) uint8
        labels += [label] * len(files)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: images differ in size {sorted(shapes)}; expected one size such as 32x32")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return x, torch.tensor(labels), tuple(classes)


def _load_image_folder(root):
    train_dir, test_dir = root / "train", root / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"no folder {d}")
    x_train, y_train, classes = _read_split(train_dir)
    x_test, y_test, test_classes = _read_split(test_dir)
    if classes != test_classes:
        raise ValueError(f"train classes {classes} differ from test classes {test_classes}")
    return x_train, y_train, x_test, y_test, classes


def _load_torchvision(root):
    """torchvision's CIFAR-10, downloaded into a temp folder first so a failed download leaves nothing."""
    from torchvision.datasets import CIFAR10

    def to_tensors(ds):
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    try:
        train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
    except RuntimeError:  # not there yet: download
        created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                CIFAR10(tmp, train=True, download=True)
                shutil.move(str(Path(tmp) / "cifar-10-batches-py"), str(root / "cifar-10-batches-py"))
        finally:
            if created and not any(root.iterdir()):
                root.rmdir()  # a failed download leaves no trace
        train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
    return (*to_tensors(train), *to_tensors(test), tuple(train.classes))


def _subset(x, y, n, gen):
    """A seeded random subset of n images (all when n is None)."""
    if n is None:
        return x, y
    if n > len(y):
        raise ValueError(f"asked for a subset of {n} images but the split has only {len(y)}")
    idx = torch.randperm(len(y), generator=gen)[:n]
    return x[idx], y[idx]


def load_cifar10(data_root="data/cifar10", device="cpu", train_subset=None, test_subset=None, seed=0):
    """CIFAR-10 from an image-folder copy in data_root, else torchvision's (downloaded on first use).

    The whole dataset is decoded once and kept as uint8 tensors on `device`.
    """
    root = Path(data_root)
    errors = []
    try:
        *tensors, classes = _load_image_folder(root)
        source = f"image folder {data_root}"
    except (OSError, ValueError, RuntimeError) as e:
        errors.append(f"image folder ({root}/train/<class>/*, {root}/test/<class>/*): {e}")
        try:
            *tensors, classes = _load_torchvision(root)
            source = f"torchvision CIFAR10 in {data_root}"
        except Exception as e:  # offline, read-only, corrupt archive: all end in the same advice
            errors.append(f"torchvision CIFAR10 download into {root}: {type(e).__name__}: {e}")
            tried = "\n  ".join(errors)
            raise RuntimeError(f"could not load CIFAR-10 from data_root={data_root!r}. Tried:\n  {tried}\n"
                               f"Fix: {OFFLINE_HINT}.") from None
    x_train, y_train, x_test, y_test = tensors
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = _subset(x_train, y_train, train_subset, gen)
    x_test, y_test = _subset(x_test, y_test, test_subset, gen)
    if train_subset is not None or test_subset is not None:
        source += f" (subset: {len(y_train)} train, {len(y_test)} test)"
    return Data.from_tensors(x_train, y_train, x_test, y_test, classes, source, device)


# ----------------------------------------------------------------------------- augmentation

def reflect(i, n):
    """Indices i into range(n), mirrored at both borders without repeating the edge: -1 -> 1, n -> n - 2."""
    return i.abs().where(i < n, 2 * (n - 1) - i)


def crop_table(x, pad, dtype=None):
    """Images x (N, C, H, W) laid out for fast random crops: (N, 2, H, W + 2*pad, C), of x's dtype or `dtype`.

    Every image row is reflect-padded by `pad` pixels on both sides, once as is ([:, 0]) and once mirrored
    ([:, 1]), with the channels of a pixel side by side. Any shifted and possibly flipped crop is then H
    contiguous windows of W pixels, one per output row.
    """
    n, c, h, w = x.shape
    if not 0 <= pad < w:
        raise ValueError(f"pad={pad} must be in [0, {w - 1}] for images {w} pixels wide")
    rows = x.permute(0, 2, 3, 1)                                           # (N, H, W, C)
    table = torch.empty(n, 2, h, w + 2 * pad, c, dtype=dtype or x.dtype, device=x.device)
    table[:, 0, :, pad:pad + w] = rows
    table[:, 1, :, pad:pad + w] = rows.flip(2)
    for j in range(1, pad + 1):  # reflect() as slice copies (faster here than indexing the columns)
        table[..., pad - j, :] = table[..., pad + j, :]
        table[..., pad + w - 1 + j, :] = table[..., pad + w - 1 - j, :]
    return table


def augment(table, idx, pad, gen):
    """Images idx of a crop_table, each randomly shifted by up to `pad` pixels (reflect padding) and flipped.

    Every image draws its own shift and flip; its H output rows are windows of its padded rows (the mirrored
    copy when flipped), so the whole batch is one gather of B*H windows: no per-image Python and no index per
    pixel. idx: (B,) on the table's device. Returns (B, C, H, W), channels_last.
    """
    n, (_, _, h, wp, c), dev = len(idx), table.shape, table.device
    w = wp - 2 * pad
    dy = torch.randint(-pad, pad + 1, (n, 1), generator=gen).to(dev)
    dx = torch.randint(-pad, pad + 1, (n, 1), generator=gen).to(dev)
    flip = torch.rand(n, 1, generator=gen).to(dev) < 0.5
    rows = reflect(torch.arange(h, device=dev) + dy, h)               # (B, H) source rows
    start = pad + torch.where(flip, -dx, dx)                         # (B, 1) a mirrored row shifts the other way
    pixel = ((idx[:, None] * 2 + flip) * h + rows) * wp + start      # (B, H) first pixel of each window
    windows = table.view(-1).as_strided((table.numel() // c - w + 1, w * c), (c, 1))  # pixel k: W pixels from k on
    return windows[pixel].view(n, h, w, c).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- train / test

class _FinalLines:
    """tqdm target for notebooks and logs: drops in-place redraws, keeps each bar's final line."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""

    def write(self, s):
        parts = s.replace("\r", "\n").split("\n")
        if len(parts) > 1 and s.endswith("\n") and parts[-2].strip():
            self.last = parts[-2]
        elif parts[-1].strip():
            self.last = parts[-1]
        if s.endswith("\n") and self.last:
            self.stream.write(self.last.rstrip() + "\n")
            self.last = ""

    def flush(self):
        self.stream.flush()


def progress(iterable, desc, total):
    """A live bar in a terminal; one clean line per bar anywhere else (notebooks, logs)."""
    live = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, leave=True, ascii=not live, ncols=100,
                file=sys.stderr if live else _FinalLines(sys.stdout), mininterval=0.5 if live else 1e9)


def train_batch(data, idx, pad, gen):
    """Train images idx, normalized and augmented per image, with their labels."""
    return augment(data.crops(pad), idx, pad, gen), data.y_train[idx]


def train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing=0.0):
    """One epoch over shuffled, augmented batches. Returns (mean loss, accuracy %)."""
    model.train()
    n = len(data.y_train)
    steps = n // batch_size  # full batches only: BN sees the same batch size every step
    order = torch.randperm(n, generator=gen).to(data.x_train.device)
    total_loss = torch.zeros((), device=data.x_train.device)  # summed on the device: no sync per step
    correct = torch.zeros((), device=data.x_train.device, dtype=torch.long)
    for i in progress(range(steps), f"epoch {epoch:2d}", steps):
        x, y = train_batch(data, order[i * batch_size:(i + 1) * batch_size], pad, gen)
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
    seen = steps * batch_size
    return total_loss.item() / seen, 100.0 * correct.item() / seen


@torch.inference_mode()
def predict(model, x, data, batch_size=EVAL_BATCH):
    """Logits for uint8 images x, in no-grad batches."""
    model.eval()
    out = [model(data.normalize(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(out).float()


def test(model, data, batch_size=EVAL_BATCH):
    """Loss and accuracy % on the test split (single view)."""
    logits = predict(model, data.x_test, data, batch_size)
    return F.cross_entropy(logits, data.y_test).item(), accuracy(logits, data.y_test)


def accuracy(logits, y):
    """% of rows whose top logit is the label."""
    return 100.0 * (logits.argmax(1) == y).float().mean().item()


def param_groups(model, weight_decay):
    """Weight decay on conv weights only; norm scales/shifts and biases stay free."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    free = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def sgd(model, lr, weight_decay=5e-4, momentum=0.9, fused=False):
    """The notebooks' optimizer: SGD with Nesterov momentum, foreach (or fused) updates, decay on conv weights."""
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True,
                           foreach=not fused, fused=fused)


def fit(model, data, epochs, batch_size, lr, gen, weight_decay=5e-4, momentum=0.9,
        label_smoothing=0.1, pad=4, pct_start=0.15):
    """SGD (Nesterov) under a OneCycle schedule; returns the per-epoch history."""
    if len(data.y_train) < batch_size:
        raise ValueError(f"the train set has {len(data.y_train)} images, fewer than one batch "
                         f"(batch_size={batch_size}): lower batch_size or use a larger train_subset")
    steps = len(data.y_train) // batch_size
    opt = sgd(model, lr, weight_decay, momentum)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps,
                                                pct_start=pct_start, div_factor=10, final_div_factor=100)
    hist = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        lr_now = sched.get_last_lr()[0]
        train_loss, train_acc = train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing)
        test_loss, test_acc = test(model, data)
        for k, v in zip(hist, (train_loss, train_acc, test_loss, test_acc, lr_now, time.perf_counter() - t0)):
            hist[k].append(round(v, 6))
        print(f"epoch {epoch:2d}  train loss {train_loss:.4f} acc {train_acc:.2f}%  "
              f"test loss {test_loss:.4f} acc {test_acc:.2f}%  lr {lr_now:.4f}  {hist['seconds'][-1]:.1f}s")
    return hist


def whiten_init(model, data, n=5000, seed=0):
    """Start C1 as a whitening of the 3x3 patches of n random train images (model.whiten_)."""
    from model import whiten_
    idx = seeded_order(len(data.y_train), seed, data.x_train.device)[:n]
    whiten_(model.C1[0], data.normalize(data.x_train[idx]))


def test_flip_tta(model, data, batch_size=EVAL_BATCH):
    """Accuracy % when each test image's logits are averaged with its mirror's (an extra, not the headline)."""
    logits = predict(model, data.x_test, data, batch_size) + predict(model, data.x_test.flip(3), data, batch_size)
    return accuracy(logits, data.y_test)


def confusion_matrix(model, data, batch_size=EVAL_BATCH):
    """Test-set counts as 10 lists of 10: rows the true class, columns the predicted one (CLASSES order)."""
    pred = predict(model, data.x_test, data, batch_size).argmax(1)
    k = len(data.classes)
    return torch.bincount(data.y_test * k + pred, minlength=k * k).view(k, k).tolist()


@torch.no_grad()
def batch_stats_acc(model, data, sizes=(1, 4, 16, 64, 1000), seed=0):
    """Test accuracy % when the norm layers use the statistics of the current batch, per batch size.

    Batches are random test images (one seeded shuffle: the stored order may be sorted by class).
    BN then depends on which images share the batch; GN and LN never look across images.
    Runs on a copy in train mode: the model and its running averages stay as they are.
    """
    import copy
    probe = copy.deepcopy(model).train()
    order = seeded_order(len(data.y_test), seed, data.y_test.device)
    x, y = data.x_test[order], data.y_test[order]
    acc = {}
    for bs in sizes:
        correct = sum((probe(data.normalize(x[i:i + bs])).argmax(1) == y[i:i + bs]).sum().item()
                      for i in range(0, len(y), bs))
        acc[str(bs)] = round(100.0 * correct / len(y), 2)
    return acc


# ----------------------------------------------------------------------------- results

def _atomic_write(path, write):
    """write(tmp_path) then rename: an interrupted run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_results(out_dir, model, hist, seed, device, data, extra=None):
    """Write <out_dir>/results_<norm>.json (final-epoch accuracies, full history, provenance)."""
    from model import count_params
    res = {
        "norm": model.norm,
        "params": count_params(model),
        "epochs": len(hist["test_acc"]),
        "train_acc": hist["train_acc"][-1],
        "test_acc": hist["test_acc"][-1],
        "minutes": round(sum(hist["seconds"]) / 60, 2),
        "history": hist,
        "seed": seed,
        "device": hardware(torch.device(device)),
        "data": data.source,
        "torch": torch.__version__,
        **(extra or {}),
    }
    text = json.dumps(res, indent=1)
    _atomic_write(Path(out_dir) / f"results_{model.norm}.json", lambda p: Path(p).write_text(text + "\n"))
    return res


def load_results(out_dir="images"):
    """{norm: results} for every results_<norm>.json present, in bn, gn, ln order."""
    found = {n: Path(out_dir) / f"results_{n}.json" for n in NORM_NAMES}
    return {n: json.loads(p.read_text()) for n, p in found.items() if p.exists()}


# ----------------------------------------------------------------------------- figures

def _save_fig(fig, out_dir, name):
    import matplotlib.pyplot as plt
    _atomic_write(Path(out_dir) / name, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)  # the notebook still shows the returned figure, once
    return fig


def plot_curves(hist, norm, out_dir="images"):
    """Loss and accuracy per epoch, train vs test -> curves_<norm>.png."""
    import matplotlib.pyplot as plt
    ep = range(1, len(hist["train_loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split, label in (("train", "train (augmented batches)"), ("test", "test")):
        ax1.plot(ep, hist[f"{split}_loss"], marker=".", label=label)
        ax2.plot(ep, hist[f"{split}_acc"], marker=".", label=label)
    ax1.set(title="cross-entropy (train's includes label smoothing)", xlabel="epoch")
    ax2.set(title=f"accuracy (final test {hist['test_acc'][-1]:.2f}%)", xlabel="epoch", ylabel="%")
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{NORM_NAMES[norm]} ({norm})")
    return _save_fig(fig, out_dir, f"curves_{norm}.png")


def plot_comparison(out_dir="images"):
    """All three models on shared axes -> comparison.png; None until all three results exist."""
    import matplotlib.pyplot as plt
    results = load_results(out_dir)
    missing = [f"results_{n}.json" for n in NORM_NAMES if n not in results]
    if missing:
        print(f"comparison.png waits for {', '.join(missing)} in {out_dir}/")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    keys = (("train_loss", "train loss"), ("test_loss", "test loss"), ("test_acc", "test accuracy %"))
    for ax, (key, title) in zip(axes, keys):
        for norm, res in results.items():
            h = res["history"][key]
            ax.plot(range(1, len(h) + 1), h, marker=".", label=f"{NORM_NAMES[norm]} ({h[-1]:.2f})")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save_fig(fig, out_dir, "comparison.png")


def misclassified(model, data, n=10, seed=0):
    """Indices, predictions of n test images the model gets wrong, drawn at random (seeded) from all
    its mistakes: the stored order may be sorted by class, so the first n would all share one class."""
    pred = predict(model, data.x_test, data).argmax(1)
    wrong = (pred != data.y_test).nonzero().flatten()
    wrong = wrong[seeded_order(len(wrong), seed, wrong.device)[:n]].sort().values
    return wrong, pred[wrong]


def plot_misclassified(model, data, norm, out_dir="images", n=10, seed=0):
    """A 5x2 grid of misclassified test images, titled predicted vs true -> misclassified_<norm>.png."""
    import matplotlib.pyplot as plt
    idx, pred = misclassified(model, data, n, seed)
    if len(idx) < n:
        print(f"only {len(idx)} misclassified test images to show")
    images = data.x_test[idx].permute(0, 2, 3, 1).cpu()  # uint8 (n, H, W, 3): the un-normalized pixels
    fig, axes = plt.subplots(2, 5, figsize=(11, 6.2))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(idx):
            ax.imshow(images[k].numpy(), interpolation="nearest")
            true = data.classes[data.y_test[idx[k]]]
            ax.set_title(f"pred: {data.classes[pred[k]]}\ntrue: {true}", fontsize=10, color="firebrick")
    fig.suptitle(f"{NORM_NAMES[norm]} ({norm}): {n} misclassified test images")
    fig.tight_layout()
    return _save_fig(fig, out_dir, f"misclassified_{norm}.png")


# ----------------------------------------------------------------------------- what each norm averages over

def norm_stats(x, norm, groups=2):
    """The (mean, biased var) a normalization computes for activations x of shape (N, C, H, W).

    bn: per channel over (N, H, W) -> (C,); ln: per sample over (C, H, W) -> (N,);
    gn: per sample and group of C/groups consecutive channels -> (N, groups).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    x = x.float()
    if norm == "bn":
        dims = (0, 2, 3)
    elif norm == "ln":
        dims = (1, 2, 3)
    elif norm == "gn":
        if c % groups:
            raise ValueError(f"C={c} channels are not divisible by groups={groups}")
        x, dims = x.view(n, groups, c // groups, h, w), (2, 3, 4)
    else:
        raise ValueError(f"unknown norm {norm!r}: choose one of bn, gn, ln")
    return x.mean(dim=dims), x.var(dim=dims, unbiased=False)


def norm_sets(n, c, norm, groups=2):
    """(N, C) ids: which statistic each (sample, channel) plane is normalized with."""
    sample, channel = torch.arange(n)[:, None], torch.arange(c)[None, :]
    return {"bn": channel.expand(n, c), "ln": sample.expand(n, c),
            "gn": sample * groups + channel // (c // groups)}[norm]


def norm_example():
    """The worked example: 3 images x 4 channels x 2x2, small integers."""
    return torch.tensor([[[[1, 2], [3, 4]], [[0, 1], [0, 1]], [[2, 2], [4, 4]], [[5, 3], [1, 3]]],
                         [[[2, 2], [2, 2]], [[1, 3], [5, 7]], [[0, 0], [0, 4]], [[6, 2], [2, 6]]],
                         [[[3, 5], [1, 7]], [[4, 4], [4, 4]], [[1, 2], [1, 0]], [[8, 0], [4, 4]]]])


def norm_tables(x, groups=2):
    """Markdown tables of the means and variances BN, LN and GN(groups) compute for x."""
    n, c = x.shape[:2]
    fmt = lambda t: " | ".join(f"{v:.3f}" for v in t.tolist())
    out = []
    mean, var = norm_stats(x, "bn")
    out += ["**BN**: one statistic per channel, over all images and pixels (N, H, W)", "",
            "| | " + " | ".join(f"channel {k}" for k in range(c)) + " |", "|---" * (c + 1) + "|",
            f"| mean | {fmt(mean)} |", f"| var | {fmt(var)} |", ""]
    mean, var = norm_stats(x, "ln")
    out += ["**LN**: one statistic per image, over all its channels and pixels (C, H, W)", "",
            "| | " + " | ".join(f"image {i}" for i in range(n)) + " |", "|---" * (n + 1) + "|",
            f"| mean | {fmt(mean)} |", f"| var | {fmt(var)} |", ""]
    mean, var = norm_stats(x, "gn", groups)
    size = c // groups
    heads = [f"group {g} (ch {g * size}-{g * size + size - 1})" for g in range(groups)]
    out += [f"**GN** ({groups} groups): one statistic per image and group of {size} channels", "",
            "| | " + " | ".join(f"{h} {s}" for h in heads for s in ("mean", "var")) + " |",
            "|---" * (2 * groups + 1) + "|"]
    out += [f"| image {i} | " + " | ".join(f"{m:.3f} | {v:.3f}" for m, v in zip(mean[i].tolist(), var[i].tolist()))
            + " |" for i in range(n)]
    return "\n".join(out)


def plot_norm_sets(x, out_dir="images", groups=2):
    """Shade the (N, C, H*W) block: cells of one colour are averaged together -> norm_axes.png."""
    import matplotlib.pyplot as plt
    n, c, h, w = x.shape
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    titles = {"bn": "Batch Norm: per channel", "ln": "Layer Norm: per image", "gn": f"Group Norm ({groups} groups)"}
    for ax, norm in zip(axes, ("bn", "ln", "gn")):
        sets = norm_sets(n, c, norm, groups).repeat_interleave(h * w, dim=1)  # (N, C*H*W)
        ax.imshow(sets.numpy() % 10, cmap="tab10", vmin=0, vmax=9, alpha=0.55, aspect="auto")
        for (i, j), v in zip(torch.cartesian_prod(torch.arange(n), torch.arange(c * h * w)).tolist(),
                             x.reshape(n, -1).flatten().tolist()):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=9)
        for k in range(1, c):
            ax.axvline(k * h * w - 0.5, color="black", lw=1.5)  # channel borders
        for k in range(1, n):
            ax.axhline(k - 0.5, color="black", lw=1.5)
        ax.set_xticks([k * h * w + (h * w - 1) / 2 for k in range(c)], [f"channel {k}" for k in range(c)])
        ax.set_yticks(range(n), [f"image {i}" for i in range(n)])
        ax.set_title(titles[norm])
    fig.suptitle("Same colour = one mean and variance (columns: the H x W pixels of each channel)")
    fig.tight_layout()
    return _save_fig(fig, out_dir, "norm_axes.png")


# ----------------------------------------------------------------------------- README tables

def epoch_seconds(result):
    """Mean seconds per epoch of a results file's run (training plus the test pass)."""
    return sum(result["history"]["seconds"]) / result["epochs"]


def run_folders(out_dir="images"):
    """Every folder of results: the main runs, the second seed, and both again with separable C blocks."""
    return [base / sub for base in (Path(out_dir), Path(out_dir) / VARIANT_DIR) for sub in ("", SEED_DIR)]


def model_config(result):
    """Net keyword arguments recorded in a results file's dict (none: Net's defaults)."""
    config = result.get("config", {})
    return {k: config[k] for k in ("groups", "widths", "block", "norm_1x1") if k in config}


def layer_table(size=32, out_dir="images"):
    """The architecture as a markdown table: channels, output size, receptive field, params per variant
    (each variant as its results file says it was built)."""
    from model import Net
    results = load_results(out_dir)
    models = {norm: Net(norm, **model_config(results.get(norm, {}))) for norm in NORM_NAMES}
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.update({n: (i[0].shape[1], o.shape)}))
             for n, m in models["bn"].named_children()]
    models["bn"].eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    rows = ["| layer | what | channels in→out | output | receptive field | params BN | params GN | params LN |",
            "|---|---|---|---|---|---|---|---|"]
    rf, jump = 1, 1
    for name, layer in models["bn"].named_children():
        cin, out = shapes[name]
        if isinstance(layer, torch.nn.MaxPool2d):
            rf, jump, what = rf + jump, jump * 2, "max-pool 2x2"
        elif isinstance(layer, torch.nn.AdaptiveAvgPool2d):
            what = "global average pool"
        elif name in ("c3", "c6", "C10"):
            normed = [n.upper() for n in NORM_NAMES if not isinstance(getattr(models[n], name), torch.nn.Conv2d)]
            what = "1x1 conv" + (" to the 10 logits" if name == "C10" else "")
            what += f" (+ norm, GELU in {', '.join(normed)})" if normed else ""
        else:
            rf += 2 * jump
            conv = "3x3 conv" if isinstance(layer[0], torch.nn.Conv2d) else "depthwise 3x3 + pointwise 1x1 conv"
            what = conv + ", norm" + (", GELU" if len(layer) > 2 else " (GELU after the residual add)")
        params = [sum(p.numel() for p in getattr(models[n], name).parameters()) for n in NORM_NAMES]
        size_txt = "1x1" if name in ("GAP", "C10") else f"{out[2]}x{out[3]}"
        rf_txt = f"{rf}x{rf}" if name not in ("GAP", "C10") else "whole image"
        rows.append(f"| {name} | {what} | {cin}→{out[1]} | {size_txt} | {rf_txt} | "
                    + " | ".join(f"{p:,}" for p in params) + " |")
    totals = [sum(p.numel() for p in m.parameters()) for m in models.values()]
    rows.append("| **total** | | | | | " + " | ".join(f"**{t:,}**" for t in totals) + " |")
    return "\n".join(rows)


def results_table(out_dir="images"):
    """The README results table, as markdown, from the results files."""
    rows = ["| model | train acc % | test acc % | flip-TTA test acc % (extra) | params | epochs "
            "| minutes per run | s per epoch | hardware | data |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for norm, r in load_results(out_dir).items():
        per_epoch = epoch_seconds(r)
        rows.append(f"| {NORM_NAMES[norm]} ({norm}) | {r['train_acc']:.2f} | **{r['test_acc']:.2f}** "
                    f"| {r.get('test_acc_flip_tta', float('nan')):.2f} | {r['params']:,} | {r['epochs']} "
                    f"| {r['minutes']:.1f} | {per_epoch:.1f} | {r['device']} | {r['data']} |")
    return "\n".join(rows)


def findings(out_dir="images"):
    """The README's measured comparison of BN, GN and LN, every number read from the results files."""
    res = load_results(out_dir)
    if not res:
        return "_No results yet: run the three notebooks._"
    name = lambda n: f"{NORM_NAMES[n]} ({n.upper()})"
    lines = ["| | " + " | ".join(name(n) for n in res) + " |", "|---" * (len(res) + 1) + "|"]
    add = lambda label, fmt: lines.append(f"| {label} | " + " | ".join(fmt(n, r) for n, r in res.items()) + " |")
    base = res.get("bn")
    add("final test acc %", lambda n, r: f"{r['test_acc']:.2f}")
    add("final train acc %", lambda n, r: f"{r['train_acc']:.2f}")
    add("train - test (points)", lambda n, r: f"{r['train_acc'] - r['test_acc']:+.2f}")
    if base:
        add("test acc vs BN (points)", lambda n, r: f"{r['test_acc'] - base['test_acc']:+.2f}")
    add("best test acc in any epoch % (not used for ranking)", lambda n, r: f"{max(r['history']['test_acc']):.2f}")
    add("test acc after epoch 5 %", lambda n, r: f"{r['history']['test_acc'][4]:.2f}" if r["epochs"] >= 5 else "-")
    # no ratio to BN here: runs made on different days differ by the machine's drift (bench_norms times in turns)
    add("seconds per epoch (mean)", lambda n, r: f"{epoch_seconds(r):.1f}")
    sizes = list(next(iter(res.values())).get("batch_stats_acc", {}))
    for bs in sizes:
        add(f"test acc %, norms using the statistics of batches of {bs} random test images",
            lambda n, r, bs=bs: f"{r['batch_stats_acc'][bs]:.2f}")
    return "\n".join(lines)


def provenance(out_dir="images"):
    """Which data, hardware, torch and seed produced each results file, second-seed and separable runs included."""
    rows = ["| model | results file | data | hardware | torch | seed | minutes |", "|---|---|---|---|---|---|---|"]
    for d in run_folders(out_dir):
        rows += [f"| {NORM_NAMES[n]} | `{d.relative_to(Path(out_dir).parent).as_posix()}/results_{n}.json` | {r['data']} | {r['device']} | {r['torch']} "
                 f"| {r['seed']} | {r['minutes']:.1f} |" for n, r in load_results(d).items()]
    return "\n".join(rows)


def speed_table(out_dir="images"):
    """The README's speed numbers, from <out_dir>/bench.json (tests/bench_pipeline.py --out) and the real runs."""
    path = Path(out_dir) / "bench.json"
    if not path.exists():
        return "_No benchmark yet: run `python tests/bench_pipeline.py --out images/bench.json`._"
    b = json.loads(path.read_text())
    rows = [f"Machine: {b['machine']}.", "",
            "| measure | conventional (DataLoader + PIL transforms) | ours (tensor on device) | speed-up |",
            "|---|---|---|---|",
            f"| (a) data preparation, one epoch of 50,000 images, timed alone | {b['data_s_conventional']:.2f} s "
            f"(num_workers={b['conventional_workers']}, the faster of 0 and 2) | {b['data_s_ours']:.3f} s: "
            f"{b['data_s_ours_epoch']:.3f} s per epoch + {b['data_s_ours_setup']:.2f} s once (statistics, the "
            f"normalized crop table) shared by {b['epochs']} epochs | **{b['data_speedup']:.1f}x** |",
            f"| (a) the same, our batches timed between training steps | {b['data_s_conventional']:.2f} s "
            f"| {b['data_s_ours_epoch_in_training']:.3f} s per epoch + the same setup share "
            f"| {b['data_speedup_in_training']:.1f}x |",
            f"| (a) the same, a single epoch paying all of the setup | {b['data_s_conventional']:.2f} s "
            f"| {b['data_s_ours_epoch'] + b['data_s_ours_setup']:.2f} s "
            f"| {b['data_s_conventional'] / (b['data_s_ours_epoch'] + b['data_s_ours_setup']):.1f}x |",
            f"| (b) training, BN model, images/s | {b['train_ips_conventional']:,} | {b['train_ips_ours']:,} "
            f"| **{b['train_speedup']:.2f}x** |",
            f"| (c) evaluation, images/s | {b['eval_ips_conventional']:,} | {b['eval_ips_ours']:,} "
            f"| {b['eval_speedup']:.2f}x |",
            f"| (c) evaluation, achieved GFLOP/s | | {b['eval_gflops_ours']:.1f} | |"]
    variants = {"fused": "fused SGD instead of foreach", "1thread": "1 torch thread instead of 2",
                "compiled": "`torch.compile`"}
    rows += [f"| (b) training with {label}, images/s | | {b['train_ips_' + key]:,} "
             f"| {b['train_ips_' + key] / b['train_ips_ours']:.2f}x vs ours |"
             for key, label in variants.items() if "train_ips_" + key in b]
    res = load_results(out_dir)
    if res:
        rows += ["", "Seconds per epoch in the real runs (training plus the test pass), from the results files:", "",
                 "| model | mean | min | max |", "|---|---|---|---|"]
        rows += [f"| {NORM_NAMES[n]} | {epoch_seconds(r):.1f} | "
                 f"{min(r['history']['seconds']):.1f} | {max(r['history']['seconds']):.1f} |" for n, r in res.items()]
    return "\n".join(rows)


def norm_speed_table(out_dir="images"):
    """BN vs GN vs LN speed from <out_dir>/bench_norms.json (tests/bench_norms.py --out): medians over rounds,
    and each model's time per image against BN's, and a separable model's against the same model with full 3x3
    C blocks, as the median of the per-round ratios."""
    path = Path(out_dir) / "bench_norms.json"
    if not path.exists():
        return "_No benchmark yet: run `python tests/bench_norms.py --out images/bench_norms.json`._"
    b = json.loads(path.read_text())
    ratio = lambda ips, ref, n: median([r / m for r, m in zip(ips[ref], ips[n])])  # time ratio, same round
    block = lambda m: m.get("block", "full")
    rows = [f"{b['machine']}; {b['rounds']} rounds, each timing every model once in turn: {b['steps']} training "
            f"steps of batch {b['batch_size']} and {b['eval_images']:,} test images.", "",
            "| model | C blocks | 1x1 convs c3, c6 | train images/s (median, min-max) | train time vs BN | "
            "eval images/s (median) | eval time vs BN | train / eval time vs full 3x3 |",
            "|---|---|---|---|---|---|---|---|"]
    for n, m in b["models"].items():
        tr, ev = b["train_ips"][n], b["eval_ips"][n]
        twin = block(m) != "full" and next((f for f, o in b["models"].items()  # same model, full 3x3 C blocks
                                            if block(o) == "full" and o["norm"] == m["norm"]
                                            and o["norm_1x1"] == m["norm_1x1"]), None)
        vs_full = f"{ratio(b['train_ips'], twin, n):.2f}x / {ratio(b['eval_ips'], twin, n):.2f}x" if twin else ""
        blocks = "depthwise-separable" if block(m) == "separable" else "full 3x3"
        label = NORM_NAMES[m["norm"]] + (" (as in its notebook)" if n.removesuffix("_sep") in NORM_NAMES else "")
        rows.append(f"| {label} | {blocks} | {'norm + GELU' if m['norm_1x1'] else 'plain'} | {median(tr):,.0f} "
                    f"({min(tr):,.0f}-{max(tr):,.0f}) | {ratio(b['train_ips'], 'bn', n):.2f}x | {median(ev):,.0f} "
                    f"| {ratio(b['eval_ips'], 'bn', n):.2f}x | {vs_full} |")
    return "\n".join(rows)


def seeds_table(out_dir="images"):
    """Each model's final accuracies under the main seed and a second one (<out_dir>/seed1)."""
    main, other = load_results(out_dir), load_results(Path(out_dir) / SEED_DIR)
    if not other:
        return f"_No second-seed results yet in {Path(out_dir) / SEED_DIR}/._"
    rows = ["| model | seed | train acc % | test acc % | seed | train acc % | test acc % | test difference (points) |",
            "|---|---|---|---|---|---|---|---|"]
    for n in (n for n in NORM_NAMES if n in main and n in other):
        a, b = main[n], other[n]
        rows.append(f"| {NORM_NAMES[n]} | {a['seed']} | {a['train_acc']:.2f} | {a['test_acc']:.2f} | {b['seed']} "
                    f"| {b['train_acc']:.2f} | {b['test_acc']:.2f} | {b['test_acc'] - a['test_acc']:+.2f} |")
    return "\n".join(rows)


def blocks_table(out_dir="images"):
    """Full 3x3 C blocks (<out_dir>) against depthwise-separable ones (<out_dir>/separable): every run's final
    test accuracy, main and second seed, next to issue #3's bar."""
    from model import Net
    main, seed1, sep, sep1 = map(load_results, run_folders(out_dir))
    sets = {"full 3x3": (main, seed1), "depthwise-separable": (sep, sep1)}
    runs = {(label, n): [res[n] for res in both if n in res] for n in NORM_NAMES for label, both in sets.items()}
    rows = ["| model | C blocks | widths | params | test acc % (seed) | mean | s per epoch (first run) | bar | worst run - bar |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (label, n), rs in runs.items():
        if not rs:
            continue
        model = Net(n, **model_config(rs[0]))
        widths = "/".join(str(model.get_submodule(c)[1].weight.numel()) for c in ("C1", "C3", "C7"))  # stage widths
        accs = [r["test_acc"] for r in rs]
        rows.append(f"| {NORM_NAMES[n]} | {label} | {widths} | {rs[0]['params']:,} | "
                    + ", ".join(f"{r['test_acc']:.2f} ({r['seed']})" for r in rs)
                    + f" | {sum(accs) / len(accs):.2f} | {epoch_seconds(rs[0]):.1f} "
                    f"| {BARS[n]:.0f} | {min(accs) - BARS[n]:+.2f} |")
    return "\n".join(rows)


def tuning_table(tuning_dir="images/tuning"):
    """The validation sweeps (<tuning_dir>/<gpu or cpu>_sweep<k>/sweep.jsonl, in order of k): the seed
    spread of every recipe run under 3 or more seeds, then all runs in a collapsed block."""
    files = sorted((int(f.parent.name.rsplit("sweep", 1)[1]), f)  # (sweep number, file)
                   for f in Path(tuning_dir).glob("*_sweep*/sweep.jsonl"))
    runs = [(k, f.parent.name, json.loads(line)) for k, f in files for line in f.read_text().splitlines()]
    if not runs:
        return f"_No validation sweeps in {tuning_dir}/._"
    recipes = {}  # by name, not cfg: a key added to later sweeps at its old value leaves the name alone
    for _, _, r in runs:
        recipe = ",".join(p for p in r["name"].split(",") if not p.startswith("seed=")) or "base"
        recipes.setdefault(recipe, []).append(r)
    rows = ["| model | recipe (changes from the first sweep's base) | seeds | val acc % mean | min | max |",
            "|---|---|---|---|---|---|"]
    for recipe, group in sorted(((k, g) for k, g in recipes.items() if len(g) >= 3),
                                key=lambda kg: list(NORM_NAMES).index(kg[1][0]["cfg"]["norm"])):
        acc = [r["val_acc"] for r in group]
        rows.append(f"| {group[0]['cfg']['norm'].upper()} | `{recipe}` | {len(acc)} | {sum(acc) / len(acc):.2f} "
                    f"| {min(acc):.2f} | {max(acc):.2f} |")
    rows += ["", f"<details><summary>All {len(runs)} validation runs, best first within each sweep</summary>", "",
             "| sweep | model | changes from the first sweep's base | train acc % | val acc % |",
             "|---|---|---|---|---|"]
    for _, sweep, r in sorted(runs, key=lambda ksr: (ksr[0], -ksr[2]["val_acc"])):  # by sweep number, best first
        rows.append(f"| {sweep} | {r['cfg']['norm'].upper()} | `{r['name']}` | {r['train_acc']:.2f} | {r['val_acc']:.2f} |")
    return "\n".join(rows + ["", "</details>"])


def small_batch_table(folder="images/small_batch"):
    """Each norm's recipe trained with small batches (images/tuning/sweep.py --plan 9, and 10 for the second
    seed in <folder>/seed1; validation split): final val accuracy per training batch size, one value per seed,
    and BN's when its norms use batch statistics instead of their running averages."""
    files = [f for f in (Path(folder) / "sweep.jsonl", Path(folder) / SEED_DIR / "sweep.jsonl") if f.exists()]
    if not files:
        return f"_No small-batch runs yet in {folder}/._"
    runs = {}  # (batch size, norm) -> its runs, in seed order
    for r in sorted((json.loads(line) for f in files for line in f.read_text().splitlines()),
                    key=lambda r: r["cfg"]["seed"]):
        runs.setdefault((r["cfg"]["bs"], r["cfg"]["norm"]), []).append(r)
    cell = lambda bs, n, get: " / ".join(f"{get(r):.2f}" for r in runs.get((bs, n), [])) or "-"
    val = lambda r: r["val_acc"]
    stats = lambda size: lambda r: r["val_acc_batch_stats"][str(size)]
    rows = ["| training batch size | epochs | seeds | BN val acc % | BN, batch statistics, batches of the training "
            "size | BN, batch statistics, batches of 128 | GN val acc % | LN val acc % |",
            "|---|---|---|---|---|---|---|---|"]
    for bs in sorted({bs for bs, _ in runs}):
        same = [r for (b, _), rs in runs.items() if b == bs for r in rs]
        epochs, seeds = ("/".join(sorted({str(r["cfg"][k]) for r in same})) for k in ("epochs", "seed"))
        rows.append(f"| {bs} | {epochs} | {seeds} | {cell(bs, 'bn', val)} | {cell(bs, 'bn', stats(bs))} "
                    f"| {cell(bs, 'bn', stats(128))} | {cell(bs, 'gn', val)} | {cell(bs, 'ln', val)} |")
    return "\n".join(rows)


def replace_between(text, name, body):
    """Replace what stands between <!-- name:start --> and <!-- name:end --> with body."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} ... {end} not found")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def update_readme(readme="README.md", out_dir="images"):
    """Regenerate the README tables: results, findings and provenance from <out_dir>/results_*.json (and its
    seed1/ and separable/ folders), the architecture from model.py, the worked example from norm_stats, the
    sweeps from <out_dir>/tuning and <out_dir>/small_batch."""
    path = Path(readme)
    text = replace_between(path.read_text(), "results", results_table(out_dir))
    text = replace_between(text, "norm-tables", norm_tables(norm_example()))
    text = replace_between(text, "architecture", layer_table(out_dir=out_dir))
    text = replace_between(text, "findings", findings(out_dir))
    text = replace_between(text, "hardware", provenance(out_dir))
    text = replace_between(text, "speed", speed_table(out_dir))
    text = replace_between(text, "norm-speed", norm_speed_table(out_dir))
    text = replace_between(text, "seeds", seeds_table(out_dir))
    text = replace_between(text, "tuning", tuning_table(Path(out_dir) / "tuning"))
    text = replace_between(text, "small-batch", small_batch_table(Path(out_dir) / "small_batch"))
    separable = Path(out_dir) / VARIANT_DIR
    text = replace_between(text, "blocks", blocks_table(out_dir))
    none = f"_No runs with separable C blocks yet in {separable}/._"
    have = bool(load_results(separable))
    text = replace_between(text, "separable-results", results_table(separable) if have else none)
    text = replace_between(text, "separable-architecture", layer_table(out_dir=separable) if have else none)
    _atomic_write(path, lambda p: Path(p).write_text(text))
    print(f"{readme}: results table regenerated from {out_dir}/results_*.json")


if __name__ == "__main__":
    plot_norm_sets(norm_example())
    update_readme()
