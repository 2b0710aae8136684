"""The tables and figures of experiments/README.md, from the studies' committed results.

    python experiments/tables.py    # regenerates every table between <!-- name:start --> and <!-- name:end -->

The headline README's tables, and the helpers both pages share (rows, spreads, provenance), are in report.py.
"""
import json
import math
import os
import sys
from pathlib import Path
from statistics import median

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import report  # noqa: E402
import records  # noqa: E402
from model import settings  # noqa: E402
from report import (ABLATION, HEADLINE, IMAGES, SEED1, SEEDS, SEPARABLE, STUDIES,  # noqa: E402
                    header, model_config, norm_example, norm_tables, provenance,
                    row, seed_runs, spread)
from records import load_results  # noqa: E402
from utils import NORM_NAMES  # noqa: E402

UNPINNED = "unpinned"  # inside ABLATION: the first ablation runs (1 thread, kernels not pinned), kept for the record
SCALE = f"{ABLATION}/{UNPINNED}/scale"  # inside STUDIES: the models without normalization under the scale corruption
DEFAULT_WIDTHS = settings()["widths"]  # for results files that predate `widths`


def time_ratio(ips, ref, name):
    """Median over rounds of name's time per image relative to ref's, both timed in the same round."""
    return median(r / m for r, m in zip(ips[ref], ips[name]))


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


def like_for_like_table(folder=IMAGES, studies=STUDIES):
    """Test accuracy per seed: BN with its recipe, BN on GN's and LN's network (report.like_for_like_runs), GN, LN."""
    same = {r["seed"]: r for r in report.like_for_like_runs(studies)}
    if not same:
        return "_No like-for-like runs yet._"
    runs = {n: {r["seed"]: r for r in rs} for n, rs in seed_runs(folder, studies).items()}
    cols = {"BN, its recipe": runs["bn"], "BN, the same network as GN and LN": same, "GN": runs["gn"], "LN": runs["ln"]}
    rows = header("seed", *(f"{c}: test acc %" for c in cols))
    for s in sorted(same):
        rows.append(row(str(s), [f"{c[s]['test_acc']:.2f}" if s in c else "-" for c in cols.values()]))
    rows.append(row("mean (range)", [spread([r["test_acc"] for k, r in c.items() if k in same]) for c in cols.values()]))
    return "\n".join(rows)


RECIPE_VS_SAME = "BN's recipe - BN on the same network"  # report.comparisons' label


def like_for_like_text(folder=IMAGES, studies=STUDIES):
    """The like-for-like study's answer: BN's lead on GN's and LN's very network, and what its recipe adds, each as
    the mean (range) of the paired differences with the rule's verdict."""
    c = report.comparisons(folder, studies)
    if "BN - GN, the same network" not in c:
        return "_No like-for-like runs yet._"
    say = lambda k: f"{report.gap(c[k]).replace(' (', ' points (', 1)}, {'real' if c[k]['real'] else 'not shown'}"
    n = len(c["BN - GN, the same network"]["diffs"])
    return (f"On the same network, BN against GN: {say('BN - GN, the same network')}; against LN: "
            f"{say('BN - LN, the same network')}. BN's recipe against BN on the same network: "
            f"{say(RECIPE_VS_SAME)}. Paired differences over {n} seed{'s' if n > 1 else ''}, by the "
            "[rule](#paired-differences).")


def blocks_table(folder=IMAGES, studies=STUDIES):
    """Full 3x3 C blocks (the headline) against depthwise-separable ones: every run's final test accuracy. No
    timing: single runs at different times and places do not rank speed (the norm-speed benchmark does)."""
    sep = Path(studies) / SEPARABLE
    sets = {"full 3x3": [folder, *(Path(studies) / d for d in SEEDS)], "depthwise-separable": [sep, sep / SEED1]}
    rows = header("model", "C blocks", "widths", "params", "test acc % (seed)", "mean")
    for n in NORM_NAMES:
        for label, folders in sets.items():
            rs = [res[n] for res in map(load_results, folders) if n in res]
            if not rs:
                continue
            widths = model_config(rs[0]).get("widths", DEFAULT_WIDTHS)
            accs = [r["test_acc"] for r in rs]
            rows.append(row(NORM_NAMES[n], [label, "/".join(map(str, widths)), f"{rs[0]['params']:,}",
                                            ", ".join(f"{r['test_acc']:.2f} ({r['seed']})" for r in rs),
                                            f"{sum(accs) / len(accs):.2f}"]))
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
    runs = small_batch_runs(folder)
    if not runs:
        return "_No small-batch runs yet._"
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


def small_batch_runs(folder=STUDIES / "small_batch"):
    """{(training batch size, norm): runs, in seed order} of the small-batch sweeps (the second seed in <folder>/seed1)."""
    files = [f for f in (Path(folder) / "sweep.jsonl", Path(folder) / SEED1 / "sweep.jsonl") if f.exists()]
    runs = {}
    for r in sorted((json.loads(line) for f in files for line in f.read_text().splitlines()),
                    key=lambda r: r["cfg"]["seed"]):
        runs.setdefault((r["cfg"]["bs"], r["cfg"]["norm"]), []).append(r)
    return runs


def small_batch_text(folder=STUDIES / "small_batch"):
    """The small-batch answer: every difference the rule calls real, paired by seed, at each training batch size:
    between the norms, and BN's running averages against the statistics of batches of its training size."""
    runs = small_batch_runs(folder)
    if not runs:
        return "_No small-batch runs yet._"
    as_runs = lambda rs, get: [{"seed": r["cfg"]["seed"], "test_acc": get(r)} for r in rs]
    val = lambda r: r["val_acc"]
    real, tested = {}, 0
    for bs in sorted({bs for bs, _ in runs}):
        pairs = [(f"{a.upper()} - {b.upper()}", as_runs(runs.get((bs, a), []), val), as_runs(runs.get((bs, b), []), val))
                 for a, b in (("bn", "gn"), ("bn", "ln"), ("gn", "ln"))]
        pairs.append(("BN's running averages - its batch statistics", as_runs(runs.get((bs, "bn"), []), val),
                      as_runs(runs.get((bs, "bn"), []), lambda r: r["val_acc_batch_stats"][str(bs)])))
        for name, a, b in pairs:
            p = report.paired(a, b)
            tested += bool(p["diffs"])
            if p["real"]:
                real.setdefault(bs, []).append(f"{name} {report.gap(p)}")
    n = sorted({len(rs) for rs in runs.values()})
    said = "; ".join(f"batch {bs}: {', '.join(found)}" for bs, found in real.items()) or "none"
    count = sum(map(len, real.values()))
    return (f"Real by the [rule](#paired-differences) ({' or '.join(map(str, n))} seeds paired, validation accuracy, "
            f"points): {said}. The other {tested - count} of the {tested} differences are not shown.")


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


def ablation_folders(studies=STUDIES, unpinned=False):
    """The folders of results files under <studies>/ablation, sorted: the pinned runs the findings rest on, or
    (unpinned=True) also the earlier runs kept in ablation/unpinned/ for the record."""
    found = sorted({f.parent for f in (Path(studies) / ABLATION).rglob("results_*.json")})
    return [d for d in found if unpinned or UNPINNED not in d.relative_to(Path(studies) / ABLATION).parts]


def arm(r):
    """What an ablation run changed: (norm, residual additions, peak lr)."""
    config = r.get("config", {})
    return r["norm"], config.get("residual", True), config.get("lr")


def ablation_arms(images=IMAGES, studies=STUDIES):
    """{arm: {seed: results}} for the headline recipes (seeds 0, 1, 2) and every pinned ablation run, headline
    arms first, then by norm, additions, peak lr."""
    arms = {}
    runs = [r for rs in seed_runs(images, studies).values() for r in rs]
    runs += [r for d in ablation_folders(studies) for r in load_results(d).values()]
    for r in runs:
        arms.setdefault(arm(r), {})[r["seed"]] = r
    order = lambda k: ((HEADLINE + ("none",)).index(k[0]), not k[1], k[2] or 0)
    return dict(sorted(arms.items(), key=lambda kv: order(kv[0])))


def headline_of(key, arms):
    """The arm an ablation arm is set against: its norm's headline recipe (BN's, whose notebook the runs without
    normalization use); None for a headline arm itself."""
    ref = next((k for k in arms if k[0] == ("bn" if key[0] == "none" else key[0]) and k[1]), None)
    return None if ref == key or ref is None else ref


def failure(r):
    """How a run failed, or None: a loss that turned NaN (after test accuracy fell to chance, if it did), or test
    accuracy stuck at chance (10%) to the end. A run that blew up is a result too."""
    nan = next((e for e, loss in enumerate(r["history"]["train_loss"], 1) if not math.isfinite(loss)), None)
    acc = r["history"]["test_acc"]
    stuck = next((e for e in range(1, len(acc) + 1) if max(acc[e - 1:]) <= 10.5), None)  # 10 classes
    if nan:
        return f"{f'at chance from epoch {stuck}, ' if stuck and stuck < nan else ''}loss NaN in epoch {nan}"
    return f"at chance from epoch {stuck}" if stuck else None


def arm_name(key):
    norm, residual, lr = key
    name = "no norm (BN's notebook)" if norm == "none" else norm.upper()
    return f"{name}{'' if residual else ', **no additions**'}, peak lr {lr:g}"


NO_NORM, NO_ADDITIONS = "Without normalization (BN's notebook), by peak lr", "Without the additions"


def arm_label(key):
    """How the answers name an arm: 'peak 0.2' without normalization, else its norm ('GN')."""
    return f"peak {key[2]:g}" if key[0] == "none" else key[0].upper()


def arm_group(key):
    return NO_NORM if key[0] == "none" else NO_ADDITIONS


def arm_result(runs, ref):
    """An ablation arm against its headline, seed by seed: report.paired() of the runs that trained, with the runs
    that failed counted apart (a failed run has no accuracy to pair)."""
    trained = [r for r in runs.values() if not failure(r)]
    return {**report.paired(trained, list(ref.values())), "failed": len(runs) - len(trained), "n": len(runs)}


def seeds(n):
    return f"{n} seed{'s' * (n != 1)}"


def failed_part(p):
    """'k of n seeds fail' and what introduces the seeds that trained: ('2 of 3 seeds fail', 'the other')."""
    return f"{p['failed']} of {p['n']} seeds fail", f"the other{'s' * (len(p['diffs']) > 1)}"


def arm_verdict(p):
    """The rule's verdict on an arm; failed runs cannot be paired, so they are counted and the rule speaks of the
    pairs that trained."""
    if not p["failed"]:
        return report.verdict(p) + ("" if p["n"] == 3 else f"; {seeds(p['n'])}")
    failed, others = failed_part(p)
    return f"{failed}; {others}: {report.verdict(p)}" if p["diffs"] else failed


def paired_arms(arms):
    """(arm, its runs, arm_result against its headline) for each ablation arm of arms; headline arms skipped."""
    for key, runs in arms.items():
        ref = headline_of(key, arms)
        if ref is not None:
            yield key, runs, arm_result(runs, arms[ref])


def ablation_table(images=IMAGES, studies=STUDIES):
    """Each arm's final test accuracy per seed, its paired differences from the headline recipe of the same norm
    and seed (BN's for the runs without normalization), their mean and the rule's verdict."""
    arms = ablation_arms(images, studies)
    if not any(headline_of(k, arms) for k in arms):
        return "_No ablation runs yet: see the commands above._"
    seen = sorted({s for runs in arms.values() for s in runs})
    acc = lambda r: "not run" if r is None else failure(r) or f"{r['test_acc']:.2f}"
    rows = header("model", *(f"seed {s}: test acc %" for s in seen), "vs the headline, same seed (points)",
                  "mean", "verdict")
    for key, runs in arms.items():
        ref = headline_of(key, arms)
        cells = [acc(runs.get(s)) for s in seen]
        if ref is None:
            rows.append(row(f"{arm_name(key)} (the headline)", [*cells, "", "", ""]))
            continue
        p = arm_result(runs, arms[ref])
        vs = " / ".join(f"{p['by_seed'][s]:+.2f}" if s in p["by_seed"] else "-" for s in seen)
        rows.append(row(arm_name(key), [*cells, vs, f"{p['mean']:+.2f}" if p["diffs"] else "-", arm_verdict(p)]))
    return "\n".join(rows)


def ablation_clauses(images=IMAGES, studies=STUDIES):
    """{arm: (NO_NORM or NO_ADDITIONS, what its paired differences say)}, e.g. (NO_ADDITIONS, 'LN -0.50 (-0.60
    to -0.40), real'): the words both READMEs quote (a test holds them to the committed runs)."""
    said = {}
    for key, runs, p in paired_arms(ablation_arms(images, studies)):
        what, group = arm_label(key), arm_group(key)
        others = " and ".join(f"{d:+.2f}" for d in p["diffs"])
        verdict = "real" if p["real"] else "not shown"
        if p["n"] < 3:  # too few seeds for the rule to say much: the differences and their count
            said[key] = group, f"{what} {others} ({seeds(p['n'])}, {p['failed']} failed), {verdict}"
            continue
        failed, the_others = failed_part(p)
        said[key] = group, (f"{what} {report.gap(p)}, {verdict}" if not p["failed"] else
                            f"{what}: {failed}" + (f", {the_others} {others}, {verdict}" if p["diffs"] else ""))
    return said


def ablation_summary(images=IMAGES, studies=STUDIES):
    """The ablation in one line for the studies table: each arm of three seeds that all trained, as its mean and
    verdict; for the arms without normalization, how many seeds failed at each peak; arms of fewer seeds counted."""
    trained, failed, short = {}, {}, 0
    for key, runs, p in paired_arms(ablation_arms(images, studies)):
        if len(runs) < 3:
            short += 1
            continue
        if key[0] == "none":
            failed[key[2]] = p["failed"]
        if not p["failed"]:
            verdict = "real" if p["real"] else "not shown"
            trained.setdefault(arm_group(key), []).append(f"{arm_label(key)} {p['mean']:+.2f} ({verdict})")
    said = []
    if NO_NORM in trained or failed:
        fails = [f"seeds failing at peak{'s' * (len(failed) > 1)} {', '.join(f'{k:g}' for k in failed)}: "
                 f"{', '.join(map(str, failed.values()))} of 3"] if any(failed.values()) else []
        parts = ([", ".join(trained[NO_NORM])] if NO_NORM in trained else []) + fails
        said.append(f"Without norms, against BN: {'; '.join(parts)}.")
    if NO_ADDITIONS in trained:
        said.append(f"Without the additions, against each norm: {', '.join(trained[NO_ADDITIONS])}.")
    if short:
        said.append(f"{short} arm{'s' * (short > 1)} of fewer than 3 seeds: no finding.")
    return " ".join(["Points, paired over 3 pinned seeds.", *said]) if trained or failed else "No arm of 3 seeds yet."


def ablation_text(images=IMAGES, studies=STUDIES):
    """The ablation's answer: per group of arms, each arm's mean (range) of paired differences and the verdict."""
    said = ablation_clauses(images, studies)
    if not said:
        return "_No pinned ablation runs yet._"
    groups = {}
    for group, clause in said.values():
        groups.setdefault(group, []).append(clause)
    return "Against the headline of the same seed, in points. " + " ".join(
        f"{group}: {'; '.join(clauses)}." for group, clauses in sorted(groups.items()))


def ablation_scale_table(studies=STUDIES):
    """The input's scale: test accuracy with every pixel times c, for the headline models (<studies>/shift) and the
    models without normalization (<studies>/<SCALE>, from shift.py --models ... --corruptions scale)."""
    paths = [Path(studies) / "shift" / "results.json", Path(studies) / SCALE / "results.json"]
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


def plot_ablation(images=IMAGES, studies=STUDIES, seed=0):
    """Test accuracy per epoch at one seed: each norm with and without the residual additions (left), the network
    without normalization at each peak lr against the headline norms (right) -> <studies>/ablation/ablation.png."""
    arms = {k: runs[seed] for k, runs in ablation_arms(images, studies).items() if seed in runs}
    headline = {k[0]: k for k in arms if headline_of(k, arms) is None}
    no_residual = [k for k in arms if not k[1] and k[0] in headline]
    no_norm = [k for k in arms if k[0] == "none"]
    if not no_residual and not no_norm:
        return None
    panels = [p for p in ("without the residual additions (dashed)" if no_residual else None,
                          "without normalization (dashed)" if no_norm else None) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.5), sharey=True, squeeze=False)
    ax = dict(zip(panels, axes[0]))
    curve = lambda ax, key, **kw: ax.plot(range(1, len(arms[key]["history"]["test_acc"]) + 1),
                                          arms[key]["history"]["test_acc"], **kw)
    color = {"bn": "C0", "gn": "C1", "ln": "C2"}
    for key in no_residual:
        left = ax[panels[0]]
        curve(left, headline[key[0]], color=color[key[0]], label=f"{key[0].upper()}, with additions")
        curve(left, key, color=color[key[0]], ls="--", label=f"{key[0].upper()}, without")
    right = ax[panels[-1]]
    for n, key in headline.items() if no_norm else ():
        curve(right, key, color=color[n], lw=1, ls=":", label=f"{n.upper()}, peak lr {key[2]:g}")
    for i, key in enumerate(no_norm):
        curve(right, key, color=f"C{i + 3}", ls="--", label=f"no norm, peak lr {key[2]:g}")
    for title, a in ax.items():
        a.set(title=f"{title}, seed {seed}", xlabel="epoch", xticks=range(0, 21, 5))
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)  # below: curves fill the axes
    axes[0][0].set_ylabel("test accuracy %")
    fig.tight_layout()
    return records.save_fig(fig, Path(studies) / ABLATION, "ablation.png")


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


def studies_tables(images=IMAGES, studies=STUDIES, root=ROOT):
    studies, sep = Path(studies), Path(studies) / SEPARABLE
    lfl = sorted((studies / report.LIKE_FOR_LIKE).glob("seed*"))
    return {"seeds": seeds_table(images, studies), "pairs": report.pairs_table(images, studies),
            "like-for-like": like_for_like_table(images, studies),
            "like-for-like-answer": like_for_like_text(images, studies), "blocks": blocks_table(images, studies),
            "tuning": tuning_table(studies / "tuning"), "small-batch": small_batch_table(studies / "small_batch"),
            "small-batch-answer": small_batch_text(studies / "small_batch"),
            "speed": speed_table(studies), "norm-speed": norm_speed_table(studies),
            "ablation": ablation_table(images, studies), "ablation-answer": ablation_text(images, studies),
            "ablation-scale": ablation_scale_table(studies), "shift": shift_table(studies),
            "norm-tables": norm_tables(norm_example()), "per-class": report.per_class_table(images),
            "hardware": provenance([*(studies / d for d in SEEDS), *lfl, sep, sep / SEED1, *ablation_folders(studies, unpinned=True)],
                                   root)}


def main(images=IMAGES, studies=STUDIES, root=ROOT):
    plot_ablation(images, studies)
    path = Path(studies) / "README.md"
    text = report.render(path, studies_tables(images, studies, root))
    records.atomic_write(path, lambda p: Path(p).write_text(text))
    print(f"{Path(os.path.relpath(path, root)).as_posix()}: tables regenerated")


if __name__ == "__main__":
    main()
