"""What a trained model gets right and wrong, its figures, and the tables of both READMEs.

The notebooks call the first two parts on each run. `python report.py` regenerates every table of README.md and
experiments/README.md from the committed results: each sits between <!-- name:start --> and <!-- name:end -->
markers and is rebuilt from the results files, the benchmark files and model.py; the prose around them stays.
`python report.py --check` evaluates the committed models against their results files.
"""
import inspect
import json
import math
import os
from pathlib import Path
from statistics import median

import matplotlib.pyplot as plt
import torch

import utils
from model import Net
from utils import CLASSES, NORM_NAMES, load_results

ROOT = Path(__file__).resolve().parent
IMAGES = ROOT / "images"            # the headline runs: results_<norm>.json and figures
STUDIES = ROOT / "experiments"      # everything beyond the assignment
HEADLINE = ("bn", "gn", "ln")       # the assignment's three models
SEED1 = "seed1"                     # the same notebooks under seed 1, inside a folder of runs
SEEDS = (SEED1, "seed2")            # the headline notebooks under seeds 1 and 2, inside STUDIES
SEPARABLE = "separable"             # the notebooks with depthwise-separable C blocks, inside STUDIES
ABLATION = "ablation"               # the notebooks without residual additions or without normalization, inside STUDIES
DEFAULT_WIDTHS = inspect.signature(Net).parameters["widths"].default  # for results files that predate `widths`


# ----------------------------------------------------------------------------- helpers

def model_config(result):
    """Net keyword arguments recorded in a results file, norm aside (none: Net's defaults)."""
    return {k: v for k, v in utils.net_config({"norm": None, **result}).items() if k != "norm"}


def seed_runs(folder=IMAGES, studies=STUDIES):
    """{norm: its headline notebook's results under every seed committed}: seed 0 in folder, the others in SEEDS."""
    found = [load_results(d) for d in (folder, *(Path(studies) / s for s in SEEDS))]
    return {n: [res[n] for res in found if n in res] for n in NORM_NAMES}


def spread(values):
    """'mean (min-max)' of a list of accuracies."""
    return f"{sum(values) / len(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def epoch_seconds(result):
    """Median seconds per epoch of a run (training plus the test pass): one stalled epoch does not move it."""
    return median(result["history"]["seconds"])


def time_ratio(ips, ref, name):
    """Median over rounds of name's time per image relative to ref's, both timed in the same round."""
    return median(r / m for r, m in zip(ips[ref], ips[name]))


def row(label, cells):
    """A markdown table row; an empty cell is written "| |"."""
    return "|" + "|".join(f" {c} " if c else " " for c in (label, *cells)) + "|"


def header(*cols):
    return [row(cols[0], cols[1:]), "|---" * len(cols) + "|"]


# ----------------------------------------------------------------------------- the headline (README.md)

def results_table(folder=IMAGES, timing=True):
    """Final-epoch train and test accuracy, size and (timing: minutes, median seconds per epoch) time of each run in
    folder. Runs timed on different machines or beside other runs compare badly: the speed study times them in turns."""
    res = load_results(folder)
    if not res:
        return "_No results yet: run the three notebooks._"
    rows = header("model", "train acc %", "test acc %", "params", "epochs",
                  *(("minutes", "s per epoch (median)") if timing else ()))
    for n, r in res.items():
        time = [f"{r['minutes']:.1f}", f"{epoch_seconds(r):.1f}"] if timing else []
        rows.append(row(f"{NORM_NAMES[n]} ({n.upper()})", [f"{r['train_acc']:.2f}", f"**{r['test_acc']:.2f}**",
                                                           f"{r['params']:,}", str(r["epochs"]), *time]))
    return "\n".join(rows)


def layer_table(folder=IMAGES, size=32):
    """The architecture: channels, output size, receptive field and params of every layer, for each norm as
    its results file says it was built."""
    results = load_results(folder)
    models = {norm: Net(norm, **model_config(results.get(norm, {}))) for norm in HEADLINE}
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.update({n: (i[0].shape[1], o.shape)}))
             for n, m in models["bn"].named_children()]
    models["bn"].eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    rows, rf, jump = [], 1, 1
    for name, layer in models["bn"].named_children():
        cin, out = shapes[name]
        if isinstance(layer, torch.nn.MaxPool2d):
            rf, jump, what = rf + jump, jump * 2, "max-pool 2x2"
        elif isinstance(layer, torch.nn.AdaptiveAvgPool2d):
            what = "global average pool"
        elif name in ("c3", "c6", "C10"):
            normed = [n.upper() for n in HEADLINE if not isinstance(getattr(models[n], name), torch.nn.Conv2d)]
            what = "1x1 conv" + (" to the 10 logits" if name == "C10" else "")
            what += f" (+ norm, GELU in {', '.join(normed)})" if normed else ""
        else:
            rf += 2 * jump
            conv = "3x3 conv" if isinstance(layer[0], torch.nn.Conv2d) else "depthwise 3x3 + pointwise 1x1"
            what = conv + ", norm" + (", GELU" if len(layer) > 2 else " (GELU after the add)")
        params = [f"{sum(p.numel() for p in getattr(models[n], name).parameters()):,}" for n in HEADLINE]
        whole = name in ("GAP", "C10")
        rows.append([name, what, f"{cin}→{out[1]}", "1x1" if whole else f"{out[2]}x{out[3]}",
                     "all" if whole else f"{rf}x{rf}", *params])
    rows.append(["**total**", "", "", "", "", *(f"**{sum(p.numel() for p in m.parameters()):,}**" for m in models.values())])
    norms = ["params BN", "GN", "LN"]
    if all(r[-2] == r[-1] for r in rows):  # GN and LN alike in every layer: one column for both
        rows, norms = [r[:-1] for r in rows], ["params BN", "GN, LN"]
    return "\n".join(header("layer", "what", "channels", "output", "receptive field", *norms) +
                     [row(r[0], r[1:]) for r in rows])


def recipe_runs(tuning_dir):
    """The validation runs of the recipe search, grouped by recipe (the run's name without its seed), in
    sweep order: {recipe: [run, ...]}. Each sweep is <tuning_dir>/<gpu|cpu>_sweep<k>/sweep.jsonl."""
    files = sorted((int(f.parent.name.rsplit("sweep", 1)[1]), f) for f in Path(tuning_dir).glob("*_sweep*/sweep.jsonl"))
    groups = {}  # by name, not cfg: a key added to later sweeps at its old value leaves the name alone
    for k, f in files:
        for line in f.read_text().splitlines():
            r = dict(json.loads(line), sweep=f.parent.name, sweep_no=k)
            recipe = ",".join(p for p in r["name"].split(",") if not p.startswith("seed=")) or "base"
            groups.setdefault(recipe, []).append(r)
    return groups


def is_recipe(cfg, config):
    """Whether a recipe-search run (its cfg) trained the notebook recipe of a results file's config, with the
    notebooks' GELU, zero-init residual branches and 20 epochs. Keys that sweeps added later take their old value."""
    keys = ("batch_size", "lr", "warmup", "weight_decay", "label_smoothing", "pad", "norm_1x1", "widths", "groups")
    if not all(k in config for k in keys):
        return False
    want = {"epochs": 20, "act": "gelu", "zero_init": True, "block": config.get("block", "full"),
            "whiten": config.get("whiten") or False, "bs": config["batch_size"], "lr": config["lr"],
            "pct": config["warmup"], "wd": config["weight_decay"], "ls": config["label_smoothing"], "pad": config["pad"],
            "c_act": config["norm_1x1"], "widths": list(config["widths"]), "groups": config["groups"]}
    added_later = {"block": "full", "whiten": False}
    return all(cfg.get(k, added_later.get(k)) == v for k, v in want.items())


def findings_table(folder=IMAGES, studies=STUDIES):
    """The numbers behind the findings, one column per norm: seeds, validation, learning speed, batch statistics."""
    res = load_results(folder)
    if not res:
        return "_No results yet: run the three notebooks._"
    seeds = seed_runs(folder, studies)
    rows = header("", *(f"{NORM_NAMES[n]} ({n.upper()})" for n in res))
    add = lambda label, fmt: rows.append(row(label, [fmt(n, r) for n, r in res.items()]))
    if any(len(runs) > 1 for runs in seeds.values()):
        labels = sorted({r["seed"] for runs in seeds.values() for r in runs})
        add(f"test acc %, mean (range) over seeds {', '.join(map(str, labels))}",
            lambda n, r: spread([x["test_acc"] for x in seeds[n]]) if len(seeds[n]) > 1 else "-")
    best = {}  # norm -> the validation runs of exactly the notebook's recipe, one per seed
    for runs in recipe_runs(Path(studies) / "tuning").values():
        n = runs[0]["cfg"]["norm"]
        best.setdefault(n, []).extend(r for r in runs if n in res and is_recipe(r["cfg"], res[n].get("config", {})))
    best = {n: runs for n, runs in best.items() if runs}
    if best:
        add("validation acc %, recipe search: mean (range) over n seeds", lambda n, r: "-" if n not in best else
            f"{spread([x['val_acc'] for x in best[n]])}, n={len(best[n])}")
    add("test acc % after epoch 1 / 5 (seed 0)", lambda n, r: " / ".join(
        f"{r['history']['test_acc'][e - 1]:.2f}" for e in (1, 5) if e <= r["epochs"]))
    sizes = list(next(iter(res.values())).get("batch_stats_acc", {}))
    if sizes:
        def by_size(n, r):
            accs = [f"{r['batch_stats_acc'][s]:.2f}" for s in sizes]
            return f"{accs[0]} at every size" if len(set(accs)) == 1 else " / ".join(accs)
        add(f"test acc % when the norms use statistics of test batches of {' / '.join(sizes)}", by_size)
    return "\n".join(rows)


def per_class_table(folder=IMAGES, top=2):
    """Test accuracy per class and the most frequent confusions, from each run's confusion matrix."""
    res = {n: r for n, r in load_results(folder).items() if "confusion" in r}
    if not res:
        return "_No confusion matrices yet: rerun the notebooks._"
    cm = {n: torch.tensor(r["confusion"]) for n, r in res.items()}
    rows = header("test acc % by class", *(n.upper() for n in res))
    for k, name in enumerate(CLASSES):
        rows.append(row(name, [f"{100 * m[k, k] / m[k].sum():.1f}" for m in cm.values()]))
    rows.append("")
    for n, m in cm.items():
        wrong = m - torch.diag(torch.diag(m))
        counts, idx = wrong.flatten().topk(top)
        pairs = [f"{CLASSES[true]} as {CLASSES[pred]} ({c})"
                 for c, (true, pred) in zip(counts.tolist(), (divmod(i, len(CLASSES)) for i in idx.tolist()))]
        rows.append(f"- {n.upper()}: {int(wrong.sum()):,} mistakes; commonest " + ", ".join(pairs) + ".")
    return "\n".join(rows)


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


def plot_norm_sets(x, out_dir="images", groups=2):
    """Shade the (N, C, H*W) block: cells of one colour are averaged together -> norm_axes.png."""
    n, c, h, w = x.shape
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    titles = {"bn": "Batch Norm: per channel", "ln": "Layer Norm: per image",
              "gn": f"Group Norm: {groups} groups here (the model: 4)"}
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
    return utils.save_fig(fig, out_dir, "norm_axes.png")


def norm_tables(x, groups=2):
    """Markdown tables of the means and variances BN, LN and GN(groups) compute for x (utils.norm_stats)."""
    n, c = x.shape[:2]
    fmt = lambda t: [f"{v:.3f}" for v in t.tolist()]
    out = []
    mean, var = norm_stats(x, "bn")
    out += ["**BN**: one statistic per channel, over all images and pixels (N, H, W)", "",
            *header("", *(f"channel {k}" for k in range(c))), row("mean", fmt(mean)), row("var", fmt(var)), ""]
    mean, var = norm_stats(x, "ln")
    out += ["**LN**: one statistic per image, over all its channels and pixels (C, H, W)", "",
            *header("", *(f"image {i}" for i in range(n))), row("mean", fmt(mean)), row("var", fmt(var)), ""]
    mean, var = norm_stats(x, "gn", groups)
    size = c // groups
    heads = [f"group {g} (ch {g * size}-{g * size + size - 1})" for g in range(groups)]
    out += [f"**GN** ({groups} groups): one statistic per image and group of {size} channels", "",
            *header("", *(f"{h} {s}" for h in heads for s in ("mean", "var")))]
    out += [row(f"image {i}", [f"{v:.3f}" for mv in zip(mean[i].tolist(), var[i].tolist()) for v in mv])
            for i in range(n)]
    return "\n".join(out)


def kernels(result):
    """The CPU kernels a results file records: ATen / oneDNN / MKL instruction sets and threads, pinned or not."""
    k = result.get("kernels")
    if not k:
        return "not recorded"
    if "gpu" in k:
        return "deterministic" if k["deterministic"] else "cuDNN autotuned"
    isa = " / ".join(str(k[lib]) for lib in ("aten", "onednn", "mkl"))
    return f"{isa}, {k['threads']} threads, {'pinned' if k['pinned'] else 'not pinned'}"


def provenance(folders, root=ROOT, short=False):
    """Which data, hardware, kernels, torch and seed produced each results file in folders (short: hardware,
    kernels and seed only, for a page that states the data and torch once)."""
    cols = ("results file", "hardware", "kernels", "seed") if short else (
        "results file", "data", "hardware", "kernels", "torch", "seed")
    rows = header("model", *cols)
    for d in folders:
        where = Path(os.path.relpath(d, root)).as_posix()
        for n, r in load_results(d).items():
            cells = {"results file": f"`{where}/results_{n}.json`", "data": r["data"], "hardware": r["device"],
                     "kernels": kernels(r), "torch": r["torch"], "seed": str(r["seed"])}
            rows.append(row(NORM_NAMES[n], [cells[c] for c in cols]))
    return "\n".join(rows)


# ----------------------------------------------------------------------------- the studies (experiments/README.md)

def seeds_table(folder=IMAGES, studies=STUDIES):
    """Each headline notebook under every committed seed: final test accuracy per seed, mean and range, and the
    train-test gap."""
    runs = {n: rs for n, rs in seed_runs(folder, studies).items() if n in HEADLINE and len(rs) > 1}
    if not runs:
        return "_No results for other seeds yet._"
    labels = [r["seed"] for r in next(iter(runs.values()))]
    rows = header("model", *(f"test acc %, seed {s}" for s in labels), "mean (range)", "train acc %, mean",
                  "train - test, mean")
    for n, rs in runs.items():
        test, train = [r["test_acc"] for r in rs], [r["train_acc"] for r in rs]
        rows.append(row(NORM_NAMES[n], [*(f"{t:.2f}" for t in test), spread(test), f"{sum(train) / len(train):.2f}",
                                        f"{(sum(train) - sum(test)) / len(test):+.2f}"]))
    return "\n".join(rows)


def blocks_table(folder=IMAGES, studies=STUDIES):
    """Full 3x3 C blocks (the headline) against depthwise-separable ones: every run's final test accuracy."""
    sep = Path(studies) / SEPARABLE
    sets = {"full 3x3": [folder, *(Path(studies) / d for d in SEEDS)], "depthwise-separable": [sep, sep / SEED1]}
    rows = header("model", "C blocks", "widths", "params", "test acc % (seed)", "mean", "s per epoch, median (first run)")
    for n in NORM_NAMES:
        for label, folders in sets.items():
            rs = [res[n] for res in map(load_results, folders) if n in res]
            if not rs:
                continue
            widths = model_config(rs[0]).get("widths", DEFAULT_WIDTHS)
            accs = [r["test_acc"] for r in rs]
            rows.append(row(NORM_NAMES[n], [label, "/".join(map(str, widths)), f"{rs[0]['params']:,}",
                                            ", ".join(f"{r['test_acc']:.2f} ({r['seed']})" for r in rs),
                                            f"{sum(accs) / len(accs):.2f}", f"{epoch_seconds(rs[0]):.1f}"]))
    return "\n".join(rows)


def tuning_table(tuning_dir=STUDIES / "tuning"):
    """The recipe search: the seed spread of every recipe run under 3 or more seeds, then all runs (collapsed)."""
    groups = recipe_runs(tuning_dir)
    if not groups:
        return f"_No validation sweeps in {Path(tuning_dir).name}/._"
    rows = header("model", "recipe (changes from the first sweep's base)", "seeds", "val acc % mean", "min", "max")
    order = list(NORM_NAMES)
    for recipe, runs in sorted(((k, g) for k, g in groups.items() if len(g) >= 3),
                               key=lambda kg: order.index(kg[1][0]["cfg"]["norm"])):
        acc = [r["val_acc"] for r in runs]
        rows.append(row(runs[0]["cfg"]["norm"].upper(), [f"`{recipe}`", str(len(acc)), f"{sum(acc) / len(acc):.2f}",
                                                         f"{min(acc):.2f}", f"{max(acc):.2f}"]))
    runs = [r for g in groups.values() for r in g]
    rows += ["", f"<details><summary>All {len(runs)} validation runs, best first within each sweep</summary>", "",
             *header("sweep", "model", "changes from the first sweep's base", "train acc %", "val acc %")]
    for r in sorted(runs, key=lambda r: (r["sweep_no"], -r["val_acc"])):
        rows.append(row(r["sweep"], [r["cfg"]["norm"].upper(), f"`{r['name']}`", f"{r['train_acc']:.2f}",
                                     f"{r['val_acc']:.2f}"]))
    return "\n".join(rows + ["", "</details>"])


def small_batch_table(folder=STUDIES / "small_batch"):
    """Each norm's recipe trained with small batches (sweep.py plans 9 and 10, the second seed in <folder>/seed1;
    validation split): final val accuracy per training batch size, one value per seed, and BN's when its norms
    use batch statistics instead of their running averages."""
    files = [f for f in (Path(folder) / "sweep.jsonl", Path(folder) / SEED1 / "sweep.jsonl") if f.exists()]
    if not files:
        return "_No small-batch runs yet._"
    runs = {}  # (batch size, norm) -> its runs, in seed order
    for r in sorted((json.loads(line) for f in files for line in f.read_text().splitlines()),
                    key=lambda r: r["cfg"]["seed"]):
        runs.setdefault((r["cfg"]["bs"], r["cfg"]["norm"]), []).append(r)
    cell = lambda bs, n, get: " / ".join(f"{get(r):.2f}" for r in runs.get((bs, n), [])) or "-"
    val = lambda r: r["val_acc"]
    stats = lambda size: lambda r: r["val_acc_batch_stats"][str(size)]
    rows = header("training batch size", "epochs", "seeds", "BN val acc %", "BN, batch statistics, batches of the "
                  "training size", "BN, batch statistics, batches of 128", "GN val acc %", "LN val acc %")
    for bs in sorted({bs for bs, _ in runs}):
        same = [r for (b, _), rs in runs.items() if b == bs for r in rs]
        epochs, seeds = ("/".join(sorted({str(r["cfg"][k]) for r in same})) for k in ("epochs", "seed"))
        rows.append(row(str(bs), [epochs, seeds, cell(bs, "bn", val), cell(bs, "bn", stats(bs)),
                                  cell(bs, "bn", stats(128)), cell(bs, "gn", val), cell(bs, "ln", val)]))
    return "\n".join(rows)


def speed_table(studies=STUDIES):
    """The data pipeline against DataLoader + PIL transforms, from <studies>/bench.json (bench_pipeline.py)."""
    path = Path(studies) / "bench.json"
    if not path.exists():
        return "_No benchmark yet: run `python experiments/bench_pipeline.py --out experiments/bench.json`._"
    b = json.loads(path.read_text())
    one_epoch = b["data_s_ours_epoch"] + b["data_s_ours_setup"]
    rows = [f"Machine: {b['machine']}.", "",
            *header("measure", "conventional (DataLoader + PIL transforms)", "ours (tensor on device)", "speed-up"),
            row("(a) data preparation, one epoch of 50,000 images, timed alone",
                [f"{b['data_s_conventional']:.2f} s (num_workers={b['conventional_workers']}, the faster of 0 and 2)",
                 f"{b['data_s_ours']:.3f} s: {b['data_s_ours_epoch']:.3f} s per epoch + {b['data_s_ours_setup']:.2f} s "
                 f"once (statistics, the normalized crop table) shared by {b['epochs']} epochs",
                 f"**{b['data_speedup']:.1f}x**"]),
            row("(a) the same, our batches timed between training steps",
                [f"{b['data_s_conventional']:.2f} s", f"{b['data_s_ours_epoch_in_training']:.3f} s per epoch + the "
                 "same setup share", f"{b['data_speedup_in_training']:.1f}x"]),
            row("(a) the same, a single epoch paying all of the setup",
                [f"{b['data_s_conventional']:.2f} s", f"{one_epoch:.2f} s", f"{b['data_s_conventional'] / one_epoch:.1f}x"]),
            row("(b) training, BN model, images/s",
                [f"{b['train_ips_conventional']:,}", f"{b['train_ips_ours']:,}", f"**{b['train_speedup']:.2f}x**"]),
            row("(c) evaluation, images/s", [f"{b['eval_ips_conventional']:,}", f"{b['eval_ips_ours']:,}",
                                             f"{b['eval_speedup']:.2f}x"]),
            row("(c) evaluation, achieved GFLOP/s", ["", f"{b['eval_gflops_ours']:.1f}", ""])]
    variants = {"fused": "fused SGD instead of foreach", "1thread": "1 torch thread instead of 2",
                "compiled": "`torch.compile`"}
    rows += [row(f"(b) training with {label}, images/s", ["", f"{b['train_ips_' + key]:,}",
                                                          f"{b['train_ips_' + key] / b['train_ips_ours']:.2f}x vs ours"])
             for key, label in variants.items() if "train_ips_" + key in b]
    return "\n".join(rows)


def norm_speed_table(studies=STUDIES):
    """BN vs GN vs LN speed from <studies>/bench_norms.json (bench_norms.py): medians over rounds, each model's
    time per image against BN's, and a separable model's against the same model with full 3x3 C blocks."""
    path = Path(studies) / "bench_norms.json"
    if not path.exists():
        return "_No benchmark yet: run `python experiments/bench_norms.py --out experiments/bench_norms.json`._"
    b = json.loads(path.read_text())
    block = lambda m: m.get("block", "full")
    rows = [f"{b['machine']}; {b['rounds']} rounds, each timing every model once in turn: {b['steps']} training "
            f"steps of batch {b['batch_size']} and {b['eval_images']:,} test images. Time ratios are medians of the "
            "per-round ratios.", "",
            *header("model", "C blocks", "1x1 convs c3, c6", "train images/s (median, min-max)", "train time vs BN",
                    "eval images/s (median)", "eval time vs BN", "train / eval time vs full 3x3")]
    for n, m in b["models"].items():
        tr, ev = b["train_ips"][n], b["eval_ips"][n]
        twin = block(m) != "full" and next((f for f, o in b["models"].items()  # same model, full 3x3 C blocks
                                            if block(o) == "full" and o["norm"] == m["norm"]
                                            and o["norm_1x1"] == m["norm_1x1"]), None)
        vs_full = (f"{time_ratio(b['train_ips'], twin, n):.2f}x / {time_ratio(b['eval_ips'], twin, n):.2f}x"
                   if twin else "")
        label = NORM_NAMES[m["norm"]] + (" (as in its notebook)" if n.removesuffix("_sep") in NORM_NAMES else "")
        rows.append(row(label, ["depthwise-separable" if block(m) == "separable" else "full 3x3",
                                "norm + GELU" if m["norm_1x1"] else "plain",
                                f"{median(tr):,.0f} ({min(tr):,.0f}-{max(tr):,.0f})",
                                f"{time_ratio(b['train_ips'], 'bn', n):.2f}x", f"{median(ev):,.0f}",
                                f"{time_ratio(b['eval_ips'], 'bn', n):.2f}x", vs_full]))
    return "\n".join(rows)


def ablation_folders(studies=STUDIES):
    """Every folder of results files under <studies>/ablation, sorted."""
    return sorted({f.parent for f in (Path(studies) / ABLATION).rglob("results_*.json")})


def ablation_runs(images=IMAGES, studies=STUDIES):
    """The headline runs (seeds 0 and 1) and every ablation run, grouped by what was changed:
    {(norm, residual, peak lr): {seed: results}}."""
    groups = {}
    for folder in [Path(images), Path(studies) / SEED1, *ablation_folders(studies)]:
        for norm, r in load_results(folder).items():
            config = r.get("config", {})
            groups.setdefault((norm, config.get("residual", True), config.get("lr")), {})[r["seed"]] = r
    return groups


def failure(r):
    """How a run failed, or None: a loss that turned NaN, or test accuracy stuck at chance (10%) to the end. A run
    that blew up is a result too."""
    nan = next((e for e, loss in enumerate(r["history"]["train_loss"], 1) if not math.isfinite(loss)), None)
    if nan:
        return f"diverged: loss NaN from epoch {nan}"
    acc = r["history"]["test_acc"]
    stuck = next((e for e in range(1, len(acc) + 1) if max(acc[e - 1:]) <= 10.5), None)  # 10 classes
    return f"{r['test_acc']:.2f}: at chance from epoch {stuck}" if stuck else None


def largest_fall(r):
    """The largest drop of test accuracy between two consecutive epochs: how unsteady training was."""
    acc = r["history"]["test_acc"]
    return f"{max([0.0, *(a - b for a, b in zip(acc, acc[1:]))]):.2f}"  # 0: it never fell


def ablation_table(images=IMAGES, studies=STUDIES):
    """Each ingredient against its absence: per seed the final test and train accuracy and the difference from the
    headline recipe of the same norm and seed (BN's for the runs without normalization), with test accuracy after
    epoch 5 for the speed of learning and the largest fall between epochs for its steadiness."""
    groups = ablation_runs(images, studies)
    if not any(norm == "none" or not residual for norm, residual, _ in groups):
        return "_No ablation runs yet: see the commands above._"
    headline = {n: groups[(n, True, r.get("config", {}).get("lr"))] for n, r in load_results(images).items()}
    rows = header("model", "residual additions", "peak lr", "seed", "test acc %", "train acc %",
                  "vs the headline, same seed (points)", "test acc % after epoch 5",
                  "largest fall in test acc from one epoch to the next (points)")
    order = lambda k: ((HEADLINE + ("none",)).index(k[0]), not k[1], -(k[2] or 0))
    for key in sorted(groups, key=order):
        norm, residual, lr = key
        ref = headline.get("bn" if norm == "none" else norm, {})
        for seed, r in sorted(groups[key].items()):
            bad = failure(r)
            vs = ("(the headline)" if ref is groups[key] else "-" if bad or seed not in ref else
                  f"{r['test_acc'] - ref[seed]['test_acc']:+.2f}")
            rows.append(row(NORM_NAMES[norm], [
                "yes" if residual else "**no**", f"{lr:g}", str(seed),
                bad or f"{r['test_acc']:.2f}", "-" if bad else f"{r['train_acc']:.2f}", vs,
                f"{r['history']['test_acc'][4]:.2f}" if r["epochs"] >= 5 else "-", largest_fall(r)]))
    return "\n".join(rows)


def ablation_scale_table(studies=STUDIES):
    """The input's scale: test accuracy with every pixel times c, for the headline models (<studies>/shift) and the
    models without normalization (<studies>/ablation/scale, from shift.py --models ... --corruptions scale)."""
    paths = [Path(studies) / "shift" / "results.json", Path(studies) / ABLATION / "scale" / "results.json"]
    if not paths[1].exists():
        return "_No scale results for the ablation models yet: see the command above._"
    res = [json.loads(p.read_text()) for p in paths if p.exists()]
    factors = res[-1]["severities"]["scale"]
    if any(r["severities"]["scale"] != factors for r in res):
        raise ValueError(f"{paths[0]} and {paths[1]} scale the pixels by different factors: rerun both")
    to_uint8 = {r.get("to_uint8", {}).get("scale", "rounded") for r in res}  # older files: rounded
    if len(to_uint8) > 1:
        raise ValueError(f"{paths[0]} and {paths[1]} turned the scaled pixels back into bytes differently "
                         f"({' and '.join(sorted(to_uint8))}): rerun both")
    labels = {"bn": "BN (running averages)", "gn": "GN", "ln": "LN",
              "bn_batch_stats": f"BN, statistics of test batches of {res[0]['bn_batch_size']}"}
    rows = header("model", *(f"pixels x {c:g}" for c in [1, *factors]), f"mean loss over x {factors[0]:g} to x {factors[-1]:g} (points)")
    for r in res:
        for m, per in r["accuracy"].items():
            acc = per["scale"]
            info = r.get("models", {}).get(m, {})
            name = labels.get(m) or (f"{NORM_NAMES[info['norm']]}"
                                     f"{'' if info['config'].get('residual', True) else ', no residual additions'}"
                                     f", peak lr {info['config']['lr']:g}, seed {info['seed']}")
            rows.append(row(name, [f"{a:.2f}" for a in acc] + [f"{acc[0] - sum(acc[1:]) / len(acc[1:]):.2f}"]))
    return "\n".join(rows)


def plot_ablation(images=IMAGES, studies=STUDIES):
    """Test accuracy per epoch: each norm with and without the residual additions at seed 0 (left), every run
    without normalization against the headline norms at seed 0 (right) -> <studies>/ablation/ablation.png."""
    groups = ablation_runs(images, studies)
    runs = {k: seeds[0] for k, seeds in groups.items() if 0 in seeds}
    headline = {n: (n, True, r.get("config", {}).get("lr")) for n, r in load_results(images).items()}
    no_residual = [k for k in runs if not k[1] and k[0] in headline]
    no_norm = sorted(((k, seed) for k, seeds in groups.items() if k[0] == "none" for seed in seeds),
                     key=lambda ks: (not ks[0][1], -ks[0][2], ks[1]))
    if not no_residual and not no_norm:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.5), sharey=True)
    curve = lambda ax, r, **kw: ax.plot(range(1, r["epochs"] + 1), r["history"]["test_acc"], **kw)
    color = {"bn": "C0", "gn": "C1", "ln": "C2"}
    for key in no_residual:
        name = key[0].upper()
        curve(left, runs[headline[key[0]]], color=color[key[0]], label=f"{name}, with additions")
        curve(left, runs[key], color=color[key[0]], ls="--", label=f"{name}, without")
    for n, key in headline.items() if no_norm else ():
        if key in runs:
            curve(right, runs[key], color=color[n], lw=2 if n == "bn" else 1, ls="-" if n == "bn" else ":",
                  label=f"{n.upper()}, peak lr {key[2]:g}")
    for i, (key, seed) in enumerate(no_norm):
        label = ("no norm" + ("" if key[1] else ", no additions") + f", peak lr {key[2]:g}"
                 + (f", seed {seed}" if seed else ""))
        curve(right, groups[key][seed], color=f"C{i + 3}", ls="-" if key[1] else "--", label=label)
    for ax, title in ((left, "without the residual additions (dashed), seed 0"),
                      (right, "without normalization (dashed: without the additions too)")):
        ax.set(title=title, xlabel="epoch", xticks=range(0, 21, 5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)  # below: curves fill the axes
    left.set_ylabel("test accuracy %")
    fig.tight_layout()
    return utils.save_fig(fig, Path(studies) / ABLATION, "ablation.png")


def shift_table(studies=STUDIES):
    """The corruption study (<studies>/shift/results.json): clean and mean corrupted accuracy per model, its
    worst corruption, then every corruption's mean over its five severities."""
    path = Path(studies) / "shift" / "results.json"
    if not path.exists():
        return "_No corruption results yet: run `python experiments/shift.py`._"
    res = json.loads(path.read_text())
    acc = res["accuracy"]
    mean = lambda v: sum(v) / len(v)
    labels = {"bn": "BN", "gn": "GN", "ln": "LN", "bn_batch_stats": f"BN, statistics of test batches of {res['bn_batch_size']}"}

    def label(m):  # a headline model by its norm; one given by path (shift.py --models) by what it is, else its path
        info = res.get("models", {}).get(m)
        if m in labels or not info:
            return labels.get(m, f"`{m}`")
        config = info.get("config", {})
        lr = "" if config.get("lr") is None else f", peak lr {config['lr']:g}"
        return (f"{NORM_NAMES.get(info['norm'], info['norm'])}"
                f"{'' if config.get('residual', True) else ', no residual additions'}{lr}, seed {info['seed']}")
    sets = sum(len(v) - 1 for v in next(iter(acc.values())).values())
    made = ("corrupted as CIFAR-10-C's code does" if "to_uint8" in res else "made by shift.py before its corruptions "
            "matched CIFAR-10-C's code (bytes rounded, not truncated; the blur padded by reflection)")
    rows = [f"Data: {res['data']}; {res['device']}, torch {res['torch']}; seed {res['seed']}; {made}.", "",
            *header("model", "clean test acc %", f"mean over the {sets} corrupted test sets", "worst corruption (mean of its 5)")]
    for m, per in acc.items():
        clean = next(iter(per.values()))[0]
        worst = min(per, key=lambda c: mean(per[c][1:]))
        corrupted = [a for v in per.values() for a in v[1:]]
        rows.append(row(label(m), [f"{clean:.2f}", f"{mean(corrupted):.2f} ({mean(corrupted) - clean:+.2f})",
                                   f"{worst.replace('_', ' ')}: {mean(per[worst][1:]):.2f}"]))
    rows += ["", *header("corruption: mean test acc % over severities 1-5 (at 5)", *(label(m) for m in acc))]
    for c in next(iter(acc.values())):
        rows.append(row(c.replace("_", " "), [f"{mean(acc[m][c][1:]):.2f} ({acc[m][c][5]:.2f})" for m in acc]))
    return "\n".join(rows)


# ----------------------------------------------------------------------------- writing

def readme_tables(images=IMAGES, studies=STUDIES, root=ROOT):
    return {"results": results_table(images, timing=False), "architecture": layer_table(images),
            "per-class": per_class_table(images), "findings": findings_table(images, studies),
            "hardware": provenance([images], root, short=True)}


def studies_tables(images=IMAGES, studies=STUDIES, root=ROOT):
    studies, sep = Path(studies), Path(studies) / SEPARABLE
    return {"seeds": seeds_table(images, studies), "blocks": blocks_table(images, studies),
            "separable-results": results_table(sep), "separable-architecture": layer_table(sep),
            "tuning": tuning_table(studies / "tuning"), "small-batch": small_batch_table(studies / "small_batch"),
            "speed": speed_table(studies), "norm-speed": norm_speed_table(studies),
            "ablation": ablation_table(images, studies),
            "ablation-scale": ablation_scale_table(studies), "shift": shift_table(studies),
            "norm-tables": norm_tables(norm_example()),
            "hardware": provenance([*(studies / d for d in SEEDS), sep, sep / SEED1, *ablation_folders(studies)], root)}


def replace_between(text, name, body):
    """Replace what stands between <!-- name:start --> and <!-- name:end --> with body."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} ... {end} not found")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def render(path, tables):
    """The markdown file at path with every table regenerated."""
    text = Path(path).read_text()
    for name, body in tables.items():
        text = replace_between(text, name, body)
    return text


# ----------------------------------------------------------------------------- checking the weights

def check(data_root="data/cifar10", folder=IMAGES, device="cpu"):
    """Evaluate every model_<norm>.pt in folder on the test set and print it beside its results file's accuracy.

    On the copy of the test images the results were measured on (same sha256), the two must agree: returns 1
    (the exit status) when one does not, or when a model is missing or is not the size its results say.
    On another copy the difference is what the data moves, not an error. Inputs are normalized with the
    statistics the model was trained with (the results file's mean and std)."""
    from model import count_params
    results = load_results(folder)
    if not results:
        print(f"no results_<norm>.json in {folder}: nothing to check")
        return 1
    data = utils.load_cifar10(data_root, device)
    digest = utils.fingerprint(data)
    print(f"data: {data.source}, {len(data.y_test):,} test images, sha256 {digest[:16]}...")
    print(f"{'model':<12} {'results file':>12} {'weights':>8} {'diff':>6}  verdict")
    status = 0
    for norm, res in results.items():
        path = Path(folder) / f"model_{norm}.pt"
        try:
            model = utils.load_model(path, device)
        except (FileNotFoundError, ValueError) as e:  # missing, or not the run its results file describes
            problem = f"{path.name} is missing" if not path.exists() else str(e)
            print(f"{NORM_NAMES[norm]:<12} {res['test_acc']:>12.2f} {'-':>8} {'':>6}  ERROR: {problem}")
            status = 1
            continue
        acc = round(utils.test(model, utils.as_trained(data, res))[1], 2)
        diff = acc - round(res["test_acc"], 2)
        if count_params(model) != res["params"]:
            verdict, status = f"ERROR: {count_params(model):,} parameters, the results file says {res['params']:,}", 1
        elif res.get("test_data_sha256") != digest:
            verdict = (f"another copy of the test images than the results file's ({res['data']}): "
                       "the difference is the data's, not an error")
        elif diff:
            verdict, status = "ERROR: same test images, different accuracy", 1
        else:
            verdict = "agrees (same test images)"
        print(f"{NORM_NAMES[norm]:<12} {res['test_acc']:>12.2f} {acc:>8.2f} {diff:>+6.2f}  {verdict}")
    return status


def main(images=IMAGES, studies=STUDIES, root=ROOT):
    plot_norm_sets(norm_example(), images)
    plot_ablation(images, studies)
    pages = {path: render(path, tables) for path, tables in  # both rendered before either is written
             ((Path(root) / "README.md", readme_tables(images, studies, root)),
              (Path(studies) / "README.md", studies_tables(images, studies, root)))}
    for path, text in pages.items():
        utils._atomic_write(path, lambda p, text=text: Path(p).write_text(text))
        print(f"{Path(os.path.relpath(path, root)).as_posix()}: tables regenerated")


if __name__ == "__main__":
    import argparse
    import sys
    ap = argparse.ArgumentParser(description="Regenerate the README tables, or --check the committed weights.")
    ap.add_argument("--check", action="store_true",
                    help="evaluate images/model_<norm>.pt on the test set against images/results_<norm>.json")
    ap.add_argument("--data-root", default="data/cifar10",
                    help="image-folder copy of CIFAR-10, else where torchvision downloads it (default: data/cifar10)")
    ap.add_argument("--folder", default=IMAGES, type=Path,
                    help="where model_<norm>.pt and results_<norm>.json are (default: images)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = ap.parse_args()
    try:
        sys.exit(check(args.data_root, args.folder, args.device) if args.check else main())
    except (RuntimeError, FileNotFoundError) as e:  # no data, or a model without its results file: say why, no trace
        sys.exit(f"report.py: {e}")
