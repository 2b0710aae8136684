"""BN, GN and LN under shifted and corrupted test images: the committed models, no training.

Each corruption is applied to the uint8 test images before the notebooks' normalization, as a camera would, at
severities 1 to 5 (0 = the clean images). The three headline models are evaluated with their stored statistics,
and BN a second time with the statistics of each (corrupted) test batch instead of its running averages. Every
model sees its inputs standardized with the mean and std it was trained with (its results file's), whatever copy
of the images is loaded now.

    python experiments/shift.py --data data/cifar10 --out experiments/shift   # results.json records the minutes

--models evaluates other saved models instead (each model_<norm>.pt needs its results file beside it) and needs
--out (a folder of its own: experiments/shift holds the committed models' results), e.g. the runs without
normalization under one corruption:
    --models experiments/ablation/no_norm/lr0.2/seed0/model_none.pt --corruptions scale --out experiments/ablation/scale

On a CPU the kernels are pinned (records.pin_kernels: AVX2, 2 threads), so any x86-64 CPU with AVX2 gives the same
numbers; --no-pin runs this CPU's own kernels instead, and results.json records which ("kernels").

How close the corruptions are to CIFAR-10-C (Hendrycks & Dietterich, 2019, github.com/hendrycks/robustness,
ImageNet-C/create_c/make_cifar_c.py, which works in float64 with numpy, scikit-image, scipy and Pillow):
- Contrast, brightness and blur repeat the reference's operations in float64, in its order, so one uint8 image
  gives the same bytes: checked on 2,000 real test images at every severity against scikit-image 0.26 and scipy
  1.17 on a CPU (on a GPU, the channel means' running sum and the last bits may differ). Each result goes back
  to bytes as CIFAR-10-C's did, np.uint8(np.clip(x, 0, 1) * 255): TRUNCATED, not rounded.
  contrast: (x - mean) * c + mean, the mean per image and channel (numpy's running sum over the pixels).
  brightness: scikit-image's rgb2hsv, the value + c clipped to 1, hsv2rgb, formula for formula.
  gaussian_blur: skimage.filters.gaussian(x, sigma=c, channel_axis=-1) (the reference's multichannel=True):
  scipy's Gaussian, exp(-x^2 / 2 sigma^2) over the radius int(4 sigma + 0.5), normalized, along the rows then
  the columns, with edge-repeat padding (mode='nearest'; torchvision's gaussian_blur reflects instead).
- gaussian_noise: the same formula (x + c * z, clipped, truncated) on float64 normal draws, fresh at each
  severity as in the reference, but from torch's generator seeded with 10 * --seed + severity, not numpy's
  unseeded global one: the same distribution, other noise.
- jpeg: the same Pillow call (save at quality c, Pillow's default 4:2:0 chroma subsampling, decode), so the same
  bytes as the reference with the same Pillow (checked too); another libjpeg build under Pillow may differ.
- The images: CIFAR-10-C corrupts the original (lossless) test images (its ToTensor/ToPILImage round trip gives
  back the same bytes). The image-folder copy of data/cifar10 is JPEG at quality 75 already (its quantization
  tables are Pillow's at 75, with 4:2:0 subsampling), so our "clean" images, and every corruption of them, differ
  from CIFAR-10-C's input, and jpeg re-encodes an already compressed image. torchvision's download has the
  original images.
- scale is ours, not CIFAR-10-C's: every pixel times c (darker), in float32, back to bytes ROUNDED (as this study
  first made it, so that the models without normalization, evaluated under scale then, still compare).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import records  # noqa: E402
import utils  # noqa: E402

# Severities 1-5 of each corruption: CIFAR-10-C's, but for "scale" (see the docstring).
SEVERITIES = {
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],           # pixels pulled towards each channel's image mean by c
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],         # c added to the HSV value (brightest channel), on 0-1
    "scale": [0.8, 0.6, 0.4, 0.2, 0.1],                # ours, not CIFAR-10-C's: every pixel times c (darker)
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # std of added noise, on 0-1 pixels
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],        # sigma in pixels
    "jpeg": [80, 65, 58, 50, 40],                      # JPEG quality, Pillow (our copy is already quality 75)
}
RANDOM = ("gaussian_noise",)  # the corruptions that draw random numbers: from a generator seeded with the seed
TO_UINT8 = {c: "rounded" if c == "scale" else "truncated" for c in SEVERITIES}  # back to bytes, per corruption
BN_BATCH = 250   # batch size when BN uses the statistics of the test batch (random batches, seeded): 250 divides
                 # the 10,000 test images, so every batch has as many images (256 left a last batch of 16, whose
                 # statistics are noisier than the others')
MODELS = ("bn", "gn", "ln", "bn_batch_stats")
LABELS = {"bn": "BN (running averages)", "gn": "GN", "ln": "LN",
          "bn_batch_stats": f"BN, test-batch statistics ({BN_BATCH})"}
DEVICE = torch.device("cpu")  # where the models run


# ----------------------------------------------------------------------------- corruptions (uint8 in, uint8 out)

def as_float(x):
    """uint8 images -> float64 on 0-1, as the reference's np.array(img) / 255."""
    return x.double() / 255


def as_uint8(x):
    """0-1 floats back to 0-255 bytes as CIFAR-10-C: np.uint8(np.clip(x, 0, 1) * 255), clipped, then truncated."""
    return x.clamp(0, 1).mul(255).trunc().to(torch.uint8)


def contrast(x, c):
    x = as_float(x)
    n, channels, h, w = x.shape
    # per image and channel, as CIFAR-10-C; a running sum over the pixels in their order, as numpy's mean over
    # an image's (H, W) axes adds them, so the mean carries the same bits (torch's mean sums in another order)
    mean = x.flatten(2).cumsum(-1)[..., -1:].div(h * w).view(n, channels, 1, 1)
    return as_uint8((x - mean) * c + mean)


def brightness(x, c):
    """HSV value + c with hue and saturation kept (a black pixel turns grey), through scikit-image's rgb2hsv and
    hsv2rgb formula for formula, as CIFAR-10-C."""
    x = as_float(x)
    r, g, b = x.unbind(1)
    v = x.amax(dim=1)
    delta = v - x.amin(dim=1)
    grey = delta == 0  # skimage's 0 / 0, set to hue 0 and saturation 0
    d = torch.where(grey, 1.0, delta)
    s = torch.where(grey, 0.0, delta / torch.where(grey, 1.0, v))
    h = torch.where(b == v, 4.0 + (r - g) / d, torch.where(g == v, 2.0 + (b - r) / d, (g - b) / d))  # blue wins ties
    h = torch.where(grey, 0.0, (h / 6.0).remainder(1.0))
    v = (v + c).clamp(0, 1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.to(torch.uint8) % 6
    pick = lambda *options: sum((hi == k) * o for k, o in enumerate(options))  # one option per hue sextant
    return as_uint8(torch.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], dim=1))


def scale(x, c):
    """Ours, not CIFAR-10-C's: every pixel times c, back to bytes ROUNDED, in float32: exactly as this study first
    made it, so the models without normalization, evaluated under scale then (their weights are not committed),
    compare with the headline models byte for byte."""
    return (x.float() / 255 * c).clamp(0, 1).mul(255).round().to(torch.uint8)


def gaussian_noise(x, c, gen):
    """Seeded with gen, a CPU generator (TF.gaussian_noise draws from the global one, so results would depend on what
    ran before); drawn on the CPU, then moved to the images' device: the same noise on any device."""
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)
    return as_uint8(as_float(x) + c * noise)


def gaussian_kernel(sigma, truncate=4.0):
    """scipy.ndimage's 1-D Gaussian, which skimage's gaussian() applies along each axis: exp(-x^2 / 2 sigma^2) for x
    from -r to r, r = int(truncate * sigma + 0.5), normalized to sum 1. Computed with numpy as scipy does, bit for
    bit."""
    radius = int(truncate * sigma + 0.5)
    xs = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * xs ** 2)
    return torch.from_numpy(phi / phi.sum())


def blur_along(x, kernel, dim):
    """x correlated with a symmetric kernel along dim (2: rows, 3: columns), the edge pixel repeated beyond the image
    (scipy's mode='nearest'). Summed as scipy's correlate1d sums: the centre, then each pair of taps from the
    outermost in."""
    r, n = len(kernel) // 2, x.shape[dim]
    padded = F.pad(x, (r, r, 0, 0) if dim == 3 else (0, 0, r, r), mode="replicate")
    tap = lambda j: padded.narrow(dim, r + j, n)
    w = kernel.tolist()
    out = tap(0) * w[r]
    for j in range(r, 0, -1):
        out = out + (tap(-j) + tap(j)) * w[r - j]
    return out


def gaussian_blur(x, c):
    """skimage.filters.gaussian(x, sigma=c) per channel, as CIFAR-10-C: along the rows (H) first, then the columns."""
    kernel = gaussian_kernel(c)
    return as_uint8(blur_along(blur_along(as_float(x), kernel, 2), kernel, 3))


def jpeg(x, c):
    """Re-encoded at quality c with Pillow, as CIFAR-10-C did (TF.jpeg goes through torchvision.io, deprecated)."""
    import io

    from PIL import Image

    def once(img):  # (3, H, W) uint8
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=c)
        return torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)
    return torch.stack([once(img) for img in x.cpu()]).to(x.device)


CORRUPT = {"contrast": contrast, "brightness": brightness, "scale": scale, "gaussian_noise": gaussian_noise,
           "gaussian_blur": gaussian_blur, "jpeg": jpeg}


def corrupt(x, name, severity, seed=0):
    """uint8 images (N, 3, H, W) under corruption `name` at severity 0 (unchanged) to 5."""
    if name not in CORRUPT:
        raise ValueError(f"unknown corruption {name!r}: choose one of {', '.join(CORRUPT)}")
    if not 0 <= severity <= 5:
        raise ValueError(f"severity {severity} must be 0 (none) to 5")
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    if severity == 0:
        return x
    c = SEVERITIES[name][severity - 1]
    if name not in RANDOM:
        return CORRUPT[name](x, c)
    # fresh noise at each severity, as CIFAR-10-C draws anew for each: one generator per (seed, severity)
    return CORRUPT[name](x, c, torch.Generator().manual_seed(10 * seed + severity))


# ----------------------------------------------------------------------------- evaluation

def predict(model, stats, x, data, batch_stats=False, seed=0):
    """Logits for uint8 images x, standardized with the mean and std the model was trained with (stats: its results
    file or checkpoint), not the loaded data's own; with batch_stats, BN uses the statistics of each test batch
    (seeded random batches of BN_BATCH) instead of its running averages."""
    as_trained = records.as_trained(data, stats)
    if batch_stats:
        return utils.batch_stats_predict(model, x, as_trained, BN_BATCH, seed)
    return utils.predict(model, x, as_trained)


def accuracies(models, data, seed=0, corruptions=tuple(CORRUPT)):
    """{model: {corruption: [accuracy % at severity 0..5]}} for models {name: (model, stats)}; with a "bn" model,
    "bn_batch_stats" is the same model using the statistics of each test batch."""
    names = [*models, *(["bn_batch_stats"] if "bn" in models else [])]
    acc = {m: {c: [] for c in corruptions} for m in names}
    for name in corruptions:
        for severity in range(6):
            x = corrupt(data.x_test, name, severity, seed)
            for m in names:
                logits = (predict(*models[m], x, data) if m != "bn_batch_stats"
                          else predict(*models["bn"], x, data, batch_stats=True, seed=seed))
                acc[m][name].append(round(utils.accuracy(logits, data.y_test), 2))
            print(f"{name:15s} severity {severity}: " + "  ".join(f"{m} {acc[m][name][-1]:.2f}" for m in names),
                  flush=True)
    return acc


def plot(result, out_dir):
    """Accuracy against severity, a panel per corruption, a line per model -> shift.png."""
    import matplotlib.pyplot as plt
    acc = result["accuracy"]
    corruptions = list(next(iter(acc.values())))
    cols = min(3, len(corruptions))
    rows = -(-len(corruptions) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(corruptions):]:
        ax.remove()
    for ax, name in zip(axes.flat, corruptions):
        for m in acc:
            ax.plot(range(6), acc[m][name], marker=".", label=LABELS.get(m, m),
                    linestyle="--" if m == "bn_batch_stats" else "-")
        ax.set(title=name.replace("_", " "), xlabel="severity (0 = clean)", xticks=range(6))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy %")
    axes.flat[0].legend()
    fig.suptitle(result.get("title", "The committed models on corrupted test images"))
    fig.tight_layout()
    return records.save_fig(fig, out_dir, "shift.png")


def trained_stats(path):
    """{"mean", "std"} a saved model's inputs were standardized with in training: its results file's (written
    beside it), else its checkpoint's."""
    path, results = Path(path), records.results_beside(path)
    found = (json.loads(results.read_text()) if results.exists()
             else torch.load(path, map_location="cpu", weights_only=True))
    if not all(k in found for k in ("mean", "std")):
        raise ValueError(f"{results.name} not found beside {path}, and the checkpoint records no mean and std: "
                         "the statistics its inputs were standardized with are unknown")
    return {"mean": found["mean"], "std": found["std"]}


def load_models(paths=None, images=ROOT / "images"):
    """{name: (model, stats)}: the three committed models, or each saved model in paths, named by its path (relative
    to the repository when inside it), with the statistics its inputs were standardized with in training."""
    if not paths:
        paths = [Path(images) / f"model_{n}.pt" for n in ("bn", "gn", "ln")]
        names = ["bn", "gn", "ln"]
    else:
        name = lambda p: p.resolve().relative_to(ROOT).as_posix() if p.resolve().is_relative_to(ROOT) else p.as_posix()
        names = [name(Path(p)) for p in paths]
        if len(set(names)) < len(names):
            raise ValueError(f"a model is given twice in {', '.join(names)}: name each once")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found")
    return {n: (records.load_model(p, DEVICE), trained_stats(p)) for n, p in zip(names, paths)}


def main(data_root, out_dir, seed=0, images=ROOT / "images", paths=None, corruptions=tuple(CORRUPT), pin=True):
    """Evaluate, write <out_dir>/results.json and shift.png, return the results. pin: on a CPU, pin torch's kernels
    (records.pin_kernels, before torch computes anything: it raises in a process that already did, so a test passes
    pin=False); else this CPU's own kernels. results.json records which."""
    unknown = [c for c in corruptions if c not in CORRUPT]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}: choose from {', '.join(CORRUPT)}")
    t0 = time.perf_counter()
    kernels = records.choose_kernels(DEVICE, pin_cpu=pin, off_switch="--no-pin")
    models = load_models(paths, images)  # before the data: a wrong path fails at once
    data = utils.load_cifar10(data_root, "cpu")
    res = {"data": data.source, "device": records.hardware(DEVICE), "kernels": kernels, "torch": torch.__version__,
           "seed": seed, "bn_batch_size": BN_BATCH, "to_uint8": {c: TO_UINT8[c] for c in corruptions},
           "severities": {c: SEVERITIES[c] for c in corruptions},
           "accuracy": accuracies(models, data, seed, corruptions)}
    if paths:  # what each model is: its norm, seed and recipe
        res["title"] = "Saved models on corrupted test images"
        info = [json.loads(records.results_beside(p).read_text()) for p in paths]
        res["models"] = {m: {k: r[k] for k in ("norm", "seed", "config")} for m, r in zip(models, info)}
    res["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    text = records.json_text(res)
    records.atomic_write(Path(out_dir) / "results.json", lambda p: Path(p).write_text(text))
    plot(res, out_dir)
    print(f"{out_dir}/results.json and shift.png written in {res['minutes']} min")
    return res


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/cifar10", help="image-folder copy, else where torchvision downloads")
    ap.add_argument("--out", help="folder for results.json and shift.png (default: experiments/shift, the committed "
                                  "models' results; required with --models)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the noise and the batches of the BN test")
    ap.add_argument("--models", nargs="+", metavar="PT", help="saved models to evaluate (default: the committed three)")
    ap.add_argument("--corruptions", nargs="+", default=list(CORRUPT), choices=list(CORRUPT), metavar="NAME",
                    help=f"which corruptions (default: all of {', '.join(CORRUPT)})")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="run this CPU's own kernels, not AVX2 on 2 threads (the last digits then differ by CPU)")
    args = ap.parse_args(argv)
    if args.out is None:
        if args.models:
            ap.error("--models needs --out: a folder of its own (e.g. --out experiments/ablation/scale), since the "
                     "default experiments/shift holds the committed models' results and would be overwritten")
        args.out = "experiments/shift"
    return args


if __name__ == "__main__":
    args = parse_args()
    try:
        main(args.data, args.out, args.seed, paths=args.models, corruptions=args.corruptions, pin=args.pin)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        sys.exit(f"shift.py: {e}")
