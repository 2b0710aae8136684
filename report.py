"""The tables of both READMEs, the figure of what each norm averages over, and the check of the committed weights.

`python report.py` regenerates the tables of README.md (experiments/tables.py those of experiments/README.md)
from the committed results: each sits between <!-- name:start --> and <!-- name:end --> markers and is rebuilt
from the results files, the benchmark files and model.py; the prose around them stays.
`python report.py --check` evaluates the committed models against their results files.
"""
import math
import os
import re
from pathlib import Path
from statistics import median

import matplotlib.pyplot as plt
import torch

import records
import utils
from model import Net
from records import load_results
from utils import CLASSES, NORM_NAMES

ROOT = Path(__file__).resolve().parent
IMAGES = ROOT / "images"            # the headline runs: results_<norm>.json and figures
STUDIES = ROOT / "experiments"      # everything beyond the assignment
HEADLINE = ("bn", "gn", "ln")       # the assignment's three models
SEED1 = "seed1"                     # the same notebooks under seed 1, inside a folder of runs
SEEDS = (SEED1, "seed2")            # the headline notebooks under seeds 1 and 2, inside STUDIES
LIKE_FOR_LIKE = "like_for_like"     # BN on GN's and LN's network (no norm after c3, c6), seed<k>/, inside STUDIES
SEPARABLE = "separable"             # the notebooks with depthwise-separable C blocks, inside STUDIES
ABLATION = "ablation"               # the notebooks without residual additions or without normalization, inside STUDIES


# ----------------------------------------------------------------------------- helpers

def model_config(result):
    """Net keyword arguments recorded in a results file, norm aside (none: Net's defaults)."""
    settings = records.net_settings({"norm": None, **result})
    return {k: v for k, v in settings.items() if k != "norm" and v is not None}  # groups None: Net's default


def seed_runs(folder=IMAGES, studies=STUDIES):
    """{norm: its headline notebook's results under every seed committed}: seed 0 in folder, the others in SEEDS."""
    found = [load_results(d) for d in (folder, *(Path(studies) / s for s in SEEDS))]
    return {n: [res[n] for res in found if n in res] for n in NORM_NAMES}


def like_for_like_runs(studies=STUDIES):
    """BN's runs on GN's and LN's network, one per seed folder of LIKE_FOR_LIKE."""
    folders = sorted((Path(studies) / LIKE_FOR_LIKE).glob("seed*"))
    return [r for r in (load_results(d).get("bn") for d in folders) if r]


def comparisons(folder=IMAGES, studies=STUDIES):
    """{label: paired()} for every comparison the README's findings make, over the committed seeds."""
    runs, same = seed_runs(folder, studies), like_for_like_runs(studies)
    pairs = {"BN - GN, each with its recipe": (runs["bn"], runs["gn"]),
             "BN - LN, each with its recipe": (runs["bn"], runs["ln"]),
             "GN - LN": (runs["gn"], runs["ln"])}
    if same:
        pairs |= {"BN - GN, the same network": (same, runs["gn"]), "BN - LN, the same network": (same, runs["ln"]),
                  "BN's recipe - BN on the same network": (runs["bn"], same)}
    return {label: paired(a, b) for label, (a, b) in pairs.items()}


def gaps_text(folder=IMAGES, studies=STUDIES):
    """The README's first claim in plain words: BN's lead over GN and LN, averaged over the seeds (lowest to
    highest seed after them), with each norm's own recipe and, where committed, with the same layers; and whether
    the rule finds each lead too large to be the luck of the seed (real) or not (not shown)."""
    c = comparisons(folder, studies)
    mean = lambda k: f"{c[k]['mean']:.2f}"
    spans = lambda a, b: " and ".join(f"{min(c[k]['diffs']):.2f} to {max(c[k]['diffs']):.2f}" for k in (a, b))
    n = lambda k: len(c[k]["diffs"])
    recipe, same = ["BN - GN, each with its recipe", "BN - LN, each with its recipe"], ["BN - GN, the same network",
                                                                                      "BN - LN, the same network"]
    if not all(c[k]["diffs"] for k in recipe):
        return "_No runs of BN, GN and LN under one seed yet._"

    def judged(keys):  # what the rule says of BN's leads over GN and LN
        real = [c[k]["real"] for k in keys]
        return ("too large to be the luck of the seed" if all(real) else "small enough to be the luck of the seed"
                if not any(real) else f"too large to be the luck of the seed against {'GN' if real[0] else 'LN'} only")
    text = (f"Over {n(recipe[0])} seeds, BN leads GN by {mean(recipe[0])} points on average and LN by "
            f"{mean(recipe[1])} (by seed: {spans(*recipe)}).")
    verdicts = f"Both leads are {judged(recipe)}"
    if same[0] in c:
        text += (f" With GN's and LN's exact layers (no extra norms after c3, c6), "
                 f"BN still leads GN by {mean(same[0])} and LN by {mean(same[1])} ({spans(*same)}" +
                 (f"; over {n(same[0])} seeds)." if n(same[0]) != n(recipe[0]) else ")."))
        verdicts = (f"All four leads are {judged(recipe)}" if judged(recipe) == judged(same) else
                    f"The leads with each recipe are {judged(recipe)}; with the same layers, {judged(same)}")
    gn_ln = "too" if c["GN - LN"]["real"] else "not"
    return f"{text} {verdicts} ([how we judge](#findings-about-normalization)); the gap between GN and LN is {gn_ln}."


def pairs_table(folder=IMAGES, studies=STUDIES):
    """Paired differences of test accuracy, seed by seed, with the rule's verdict."""
    found = {k: p for k, p in comparisons(folder, studies).items() if p["diffs"]}
    if not found:
        return "_No seeds to pair yet._"
    seeds = sorted(r["seed"] for r in seed_runs(folder, studies)["bn"])
    rows = header("test acc, points", *(f"seed {s}" for s in seeds), "mean", "verdict")
    for label, p in found.items():
        rows.append(row(label, [*(f"{d:+.2f}" for d in p["diffs"]), f"{p['mean']:+.2f}", verdict(p)]))
    return "\n".join(rows)


def gap(p, sign="+"):
    """A paired() comparison as 'mean (lowest to highest)' of its differences; sign="" drops the plus signs."""
    f = f"{sign}.2f"
    return f"{p['mean']:{f}} ({min(p['diffs']):{f}} to {max(p['diffs']):{f}})"


def spread(values):
    """'mean (min-max)' of a list of accuracies."""
    return f"{sum(values) / len(values):.2f} ({min(values):.2f}-{max(values):.2f})"


# The one rule for every claim that two settings differ: a paired t-test over the seeds (the same seed gives both
# runs the same data order), two-sided at 5%. With n seeds, the mean difference must exceed T[n] times its standard
# error, std / sqrt(n); with three seeds, 2.48 standard deviations of the three differences.
T = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}  # Student's t, two-sided 5%, by number of pairs (n - 1 degrees)


def paired(a, b):
    """Runs a and b of the same seeds: {"diffs": a - b per seed, "by_seed": {seed: diff}, "mean", "sd", "t", "real"}.
    Not real below two pairs, or when the differences do not vary (no spread, no t)."""
    base = {r["seed"]: r["test_acc"] for r in b}
    by_seed = {r["seed"]: r["test_acc"] - base[r["seed"]] for r in a if r["seed"] in base}
    diffs = list(by_seed.values())
    n = len(diffs)
    mean = sum(diffs) / n if n else math.nan
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else math.nan
    t = mean / (sd / math.sqrt(n)) if n > 1 and sd > 0 else math.nan
    return {"diffs": diffs, "by_seed": by_seed, "mean": mean, "sd": sd, "t": t, "real": n in T and abs(t) > T[n]}


def verdict(p):
    """How a paired() comparison reads in a table: 'real' or 'not shown', with the sign count."""
    signs = {d > 0 for d in p["diffs"]}
    return ("**real**" if p["real"] else "not shown") + ("; one sign" if len(signs) == 1 else "; signs differ")


def epoch_seconds(result):
    """Median seconds per epoch of a run (training plus the test pass): one stalled epoch does not move it."""
    return median(result["history"]["seconds"])


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
            what = "1x1 conv" + (" to the 10 class scores" if name == "C10" else "")
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
    norms = ["params, BN", "params, GN", "params, LN"]
    if all(r[-2] == r[-1] for r in rows):  # GN and LN alike in every layer: one column for both
        rows, norms = [r[:-1] for r in rows], ["params, BN", "params, GN and LN"]
    return "\n".join(header("layer", "what", "channels", "output", "receptive field", *norms) +
                     [row(r[0], r[1:]) for r in rows])


def findings_table(folder=IMAGES, studies=STUDIES):
    """The numbers behind the findings, one column per norm: the seeds' spread, and the batch-statistics test."""
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
    sizes = list(next(iter(res.values())).get("batch_stats_acc", {}))
    if sizes:
        def by_size(n, r):
            accs = [f"{r['batch_stats_acc'][s]:.2f}" for s in sizes]
            return f"{accs[0]} at every size" if len(set(accs)) == 1 else " / ".join(accs)
        add(f"test acc % with the statistics of test batches of {' / '.join(sizes)}", by_size)
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
    for ax, norm in zip(axes, ("bn", "gn", "ln")):  # the README's order
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
    return records.save_fig(fig, out_dir, "norm_axes.png")


def norm_tables(x, groups=2):
    """Markdown tables of the means and variances BN, LN and GN(groups) compute for x (norm_stats)."""
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
    cpu = f" (a CPU with {k['cpu_isa']})" if k.get("cpu_isa") else ""
    return f"{isa}, {k['threads']} threads, {'pinned' if k['pinned'] else 'not pinned'}{cpu}"


def provenance(folders, root=ROOT, short=False):
    """Which data, hardware, kernels, torch and seed produced each results file in folders (short: hardware and
    seed only, for a page that states the data, kernels and torch in its text)."""
    cols = ("results file", "hardware", "seed") if short else (
        "results file", "data", "hardware", "kernels", "torch", "seed")
    lines = []
    for d in folders:
        where = Path(os.path.relpath(d, root)).as_posix()
        for n, r in load_results(d).items():
            cells = {"results file": f"`{where}/results_{n}.json`", "data": r["data"], "hardware": r["device"],
                     "kernels": kernels(r), "torch": r["torch"], "seed": str(r["seed"])}
            lines.append((n, where, [cells[c] for c in cols]))
    common = [c for k, c in enumerate(cols) if c in ("data", "torch") and len({cells[k] for *_, cells in lines}) == 1]
    keep = [k for k, c in enumerate(cols) if c not in common]
    said = f"Every run below: {'; '.join(f'{c} {lines[0][2][cols.index(c)]}' for c in common)}.\n\n" if common else ""
    return said + "\n".join([*header("models", *(cols[k] for k in keep)),
                              *(row(names, [cells[k] for k in keep]) for names, cells in merged(lines, cols))])


def sibling(folder, part):
    """folder with its `/<part><number>` component made `/<part>*`: the key its sibling folders share."""
    return re.sub(rf"/{part}[\d.]+(?=/|$)", f"/{part}*", folder)


def braced(folders, part):
    """Sibling folders (alike but for a `/<part><number>` component) written as one: `a/seed{0,1}/b`."""
    if len(folders) == 1:
        return folders[0]
    number = re.compile(rf"/{part}([\d.]+)(?=/|$)")
    return number.sub(f"/{part}{{" + ",".join(number.search(f)[1] for f in folders) + "}", folders[0], count=1)


def merged(lines, cols):
    """Provenance rows alike but for the norm, the seed of sibling seed<k> folders, or the peak of sibling lr<x>
    folders, as one row each: [(models, cells)], the files written `folder/results_{bn,gn}.json`,
    `.../seed{0,1,2}/results_bn.json` or `.../lr{0.1,0.2}/seed{0,1}/results_none.json`."""
    scol = cols.index("seed")
    other = [c for c in cols if c not in ("results file", "seed")]
    folders = {}  # the norms of one folder
    for n, where, cells in lines:
        folders.setdefault((where, cells[scol], tuple(cells[cols.index(c)] for c in other)), []).append(n)
    siblings = {}  # the seed folders of one study, with the same norms
    for (where, seed, rest), norms in folders.items():
        siblings.setdefault((sibling(where, "seed"), tuple(norms), rest), []).append((where, seed))
    peaks = {}  # the learning-rate folders of one study, alike in all else
    for (_, norms, rest), found in siblings.items():
        folder = braced([w for w, _ in found], "seed")
        seeds = ", ".join(s for _, s in found)
        peaks.setdefault((sibling(folder, "lr"), norms, rest, seeds), []).append(folder)
    out = []
    for (_, norms, rest, seeds), found in peaks.items():
        folder = braced(found, "lr")
        file = f"results_{norms[0]}.json" if len(norms) == 1 else "results_{" + ",".join(norms) + "}.json"
        cells = dict(zip(other, rest)) | {"results file": f"`{folder}/{file}`", "seed": seeds}
        names = NORM_NAMES[norms[0]] if len(norms) == 1 else ", ".join(n.upper() for n in norms)
        out.append((names, [cells[c] for c in cols]))
    return out


# ----------------------------------------------------------------------------- writing

def readme_tables(images=IMAGES, studies=STUDIES, root=ROOT):
    return {"results": results_table(images, timing=False), "architecture": layer_table(images),
            "findings": findings_table(images, studies),
            "gaps": gaps_text(images, studies),
            "hardware": provenance([images], root, short=True)}


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

GPU_MARGIN = 1e-3  # on a GPU, an image whose top two logits lie closer than this may change its answer


def near_ties(logits, margin=GPU_MARGIN):
    """Indices of the images whose two highest logits lie within margin: another GPU's sums may swap them."""
    top2 = logits.topk(2, dim=1).values
    return ((top2[:, 0] - top2[:, 1]) < margin).nonzero().flatten().tolist()


def within_ties(diff, ties, n):
    """Whether an accuracy difference of diff points (of n test images) is no more than the near ties can flip."""
    return abs(diff) <= 100 * len(ties) / n + 1e-9


def check(data_root="data/cifar10", folder=IMAGES, device="cpu"):
    """Evaluate every model_<norm>.pt in folder on the test set and print it beside its results file's accuracy.

    On the copy of the test images the results were measured on (same sha256), the two must agree: returns 1
    (the exit status) when one does not, or when a model is missing or is not the size its results say.
    On another copy the difference is what the data moves, not an error. Inputs are normalized with the
    statistics the model was trained with (the results file's mean and std).

    On the CPU the accuracy must agree exactly. On a GPU, TF32 is turned off and an image whose top two logits
    lie within GPU_MARGIN may flip either way: the accuracy may differ by those images alone, which are listed."""
    from model import count_params
    results = load_results(folder)
    if not results:
        print(f"no results_<norm>.json in {folder}: nothing to check")
        return 1
    gpu = torch.device(device).type == "cuda"
    if gpu:  # TF32 rounds the convolutions' inputs to 10 bits: full float32, as the CPU computes
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    data = utils.load_cifar10(data_root, device)
    digest = records.data_sha256(data)
    print(f"data: {data.source}, {len(data.y_test):,} test images, sha256 {digest[:16]}...")
    print(f"{'model':<12} {'results file':>12} {'weights':>8} {'diff':>6}  verdict")
    status = 0
    for norm, res in results.items():
        path = Path(folder) / f"model_{norm}.pt"
        try:
            model = records.load_model(path, device)
        except (FileNotFoundError, ValueError) as e:  # missing, or not the run its results file describes
            problem = f"{path.name} is missing" if not path.exists() else str(e)
        except Exception as e:  # truncated, not a checkpoint at all: name it and go on to the other models
            problem = f"{path.name} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        else:
            problem = None
        if problem:
            print(f"{NORM_NAMES[norm]:<12} {res['test_acc']:>12.2f} {'-':>8} {'':>6}  ERROR: {problem}")
            status = 1
            continue
        logits = utils.predict(model, data.x_test, records.as_trained(data, res))
        acc = round(utils.accuracy(logits, data.y_test), 2)
        diff = acc - round(res["test_acc"], 2)
        ties = near_ties(logits) if gpu else []
        if count_params(model) != res["params"]:
            verdict, status = f"ERROR: {count_params(model):,} parameters, the results file says {res['params']:,}", 1
        elif res.get("test_data_sha256") != digest:
            verdict = (f"another copy of the test images than the results file's ({res['data']}): "
                       "the difference is the data's, not an error")
        elif diff and within_ties(diff, ties, len(data.y_test)):
            verdict = (f"agrees up to {len(ties)} near-tie{'s' if len(ties) > 1 else ''} (top two logits within "
                       f"{GPU_MARGIN:g}, allowed on a GPU): test images {', '.join(map(str, ties))}")
        elif diff:
            verdict, status = "ERROR: same test images, different accuracy", 1
        else:
            verdict = "agrees (same test images)"
        print(f"{NORM_NAMES[norm]:<12} {res['test_acc']:>12.2f} {acc:>8.2f} {diff:>+6.2f}  {verdict}")
    return status


def main(images=IMAGES, studies=STUDIES, root=ROOT):
    """README.md's tables and norm_axes.png; experiments/tables.py does experiments/README.md."""
    plot_norm_sets(norm_example(), images)
    path = Path(root) / "README.md"
    text = render(path, readme_tables(images, studies, root))
    records.atomic_write(path, lambda p: Path(p).write_text(text))
    print(f"{Path(os.path.relpath(path, root)).as_posix()}: tables regenerated")


if __name__ == "__main__":
    import argparse
    import sys
    ap = argparse.ArgumentParser(description="Regenerate README.md's tables (experiments/tables.py does experiments/README.md's), or --check the committed weights.")
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
