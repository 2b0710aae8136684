"""BN, GN and LN under shifted and corrupted test images: the committed models, no training.

Each corruption is applied to the uint8 test images before the notebooks' normalization, as a camera would, at
severities 1 to 5 (0 = the clean images). The three headline models are evaluated with their stored statistics,
and BN a second time with the statistics of each (corrupted) test batch instead of its running averages.

    python experiments/shift.py --data data/cifar10 --out experiments/shift   # 15 minutes on one slow CPU core

--models evaluates other saved models instead (each model_<norm>.pt needs its results file beside it), e.g. the
runs without normalization under one corruption:
    --models experiments/ablation/no_norm/lr0.2/model_none.pt --corruptions scale
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import utils  # noqa: E402

# Severities 1-5 of each corruption. All but "scale" are CIFAR-10-C's (Hendrycks & Dietterich, 2019,
# github.com/hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py).
SEVERITIES = {
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],           # pixels pulled towards each channel's image mean by c
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],         # c added to the HSV value (brightest channel), on 0-1
    "scale": [0.8, 0.6, 0.4, 0.2, 0.1],                # ours, not CIFAR-10-C's: every pixel times c (darker)
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # std of added noise, on 0-1 pixels
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],        # sigma in pixels
    "jpeg": [80, 65, 58, 50, 40],                      # JPEG quality, Pillow (our copy is already quality 75)
}
BN_BATCH = 256   # batch size when BN uses the statistics of the test batch (random batches, seeded)
MODELS = ("bn", "gn", "ln", "bn_batch_stats")
LABELS = {"bn": "BN (running averages)", "gn": "GN", "ln": "LN",
          "bn_batch_stats": f"BN, test-batch statistics ({BN_BATCH})"}


# ----------------------------------------------------------------------------- corruptions (uint8 in, uint8 out)

def as_uint8(x):
    """0-1 floats back to 0-255 bytes, rounded, as a camera stores them."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def contrast(x, c, gen):
    x = x.float() / 255
    mean = x.mean(dim=(2, 3), keepdim=True)  # per image and channel, as CIFAR-10-C
    return as_uint8((x - mean) * c + mean)


def brightness(x, c, gen):
    """HSV value + c with hue and saturation kept: every channel scales with the value (a black pixel turns grey)."""
    x = x.float() / 255
    v = x.amax(dim=1, keepdim=True)
    new_v = (v + c).clamp(max=1)
    return as_uint8(torch.where(v > 0, x * new_v / v.clamp(min=1e-12), new_v))


def scale(x, c, gen):
    return as_uint8(x.float() / 255 * c)


def gaussian_noise(x, c, gen):
    """Seeded with gen (TF.gaussian_noise draws from the global generator, so results would depend on what ran)."""
    x = x.float() / 255
    return as_uint8(x + c * torch.randn(x.shape, generator=gen))


def gaussian_blur(x, c, gen):
    k = 2 * int(4 * c + 0.5) + 1  # the kernel skimage's gaussian() uses (truncate=4); torchvision pads by reflection
    return TF.gaussian_blur(x, kernel_size=[k, k], sigma=[c, c])


def jpeg(x, c, gen):
    """Re-encoded at quality c with Pillow, as CIFAR-10-C did (TF.jpeg goes through torchvision.io, deprecated)."""
    import io

    import numpy as np
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
    return CORRUPT[name](x, SEVERITIES[name][severity - 1], torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- evaluation

def accuracies(models, data, seed=0, corruptions=tuple(CORRUPT)):
    """{model: {corruption: [accuracy % at severity 0..5]}}; with a "bn" model, "bn_batch_stats" is the same model
    using the statistics of each test batch."""
    names = [*models, *(["bn_batch_stats"] if "bn" in models else [])]
    acc = {m: {c: [] for c in corruptions} for m in names}
    for name in corruptions:
        for severity in range(6):
            x = corrupt(data.x_test, name, severity, seed)
            for m in names:
                logits = (utils.predict(models[m], x, data) if m != "bn_batch_stats"
                          else utils.batch_stats_predict(models["bn"], x, data, BN_BATCH, seed))
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
    return utils._save_fig(fig, out_dir, "shift.png")


def load_models(paths=None, images=ROOT / "images"):
    """{name: model}: the three committed models, or each saved model in paths, named by its path (relative to
    the repository when inside it)."""
    if not paths:
        return {n: utils.load_model(Path(images) / f"model_{n}.pt") for n in ("bn", "gn", "ln")}
    name = lambda p: p.resolve().relative_to(ROOT).as_posix() if p.resolve().is_relative_to(ROOT) else p.as_posix()
    names = [name(Path(p)) for p in paths]
    if len(set(names)) < len(names):
        raise ValueError(f"a model is given twice in {', '.join(names)}: name each once")
    return {n: utils.load_model(p) for n, p in zip(names, paths)}


def main(data_root, out_dir, seed=0, images=ROOT / "images", paths=None, corruptions=tuple(CORRUPT)):
    unknown = [c for c in corruptions if c not in CORRUPT]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}: choose from {', '.join(CORRUPT)}")
    t0 = time.perf_counter()
    models = load_models(paths, images)  # before the data: a wrong path fails at once
    data = utils.load_cifar10(data_root, "cpu")
    res = {"data": data.source, "device": utils.hardware(torch.device("cpu")), "torch": torch.__version__,
           "seed": seed, "bn_batch_size": BN_BATCH, "severities": {c: SEVERITIES[c] for c in corruptions},
           "accuracy": accuracies(models, data, seed, corruptions)}
    if paths:  # what each model is: its norm, seed and recipe
        res["title"] = "Saved models on corrupted test images"
        info = [json.loads(utils.results_beside(p).read_text()) for p in paths]
        res["models"] = {m: {k: r[k] for k in ("norm", "seed", "config")} for m, r in zip(models, info)}
    res["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    text = json.dumps(res, indent=1)
    utils._atomic_write(Path(out_dir) / "results.json", lambda p: Path(p).write_text(text + "\n"))
    plot(res, out_dir)
    print(f"{out_dir}/results.json and shift.png written in {res['minutes']} min")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/cifar10", help="image-folder copy, else where torchvision downloads")
    ap.add_argument("--out", default="experiments/shift", help="folder for results.json and shift.png")
    ap.add_argument("--seed", type=int, default=0, help="seeds the noise and the batches of the BN test")
    ap.add_argument("--models", nargs="+", metavar="PT", help="saved models to evaluate (default: the committed three)")
    ap.add_argument("--corruptions", nargs="+", default=list(CORRUPT), choices=list(CORRUPT), metavar="NAME",
                    help=f"which corruptions (default: all of {', '.join(CORRUPT)})")
    args = ap.parse_args()
    try:
        main(args.data, args.out, args.seed, paths=args.models, corruptions=args.corruptions)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        sys.exit(f"shift.py: {e}")
