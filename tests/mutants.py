"""Hand-made mutants of model.py, utils.py, report.py, experiments/shift.py and experiments/tables.py: each is one plausible mistake,
and the suite must fail on it.

    python tests/mutants.py            # every mutant, in a scratch copy of the repository (about half an hour)
    python tests/mutants.py 3 17       # only these

Each mutant replaces one exact piece of code; the script applies it in a copy, runs the fast test files with
-x (the mutated file's own tests first, so a killed mutant stops early) and reports KILLED (a test failed) or
SURVIVED. Not part of `pytest tests` (too slow for every run).
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_recipe.py", "tests/test_model.py", "tests/test_utils.py", "tests/test_weights.py",
         "tests/test_shift.py", "tests/test_norm_stats.py", "tests/test_kernels.py", "tests/test_report.py",
         "tests/test_reproduce.py"]

# (file, what the mistake is, exact code, mutated code)
MUTANTS = [
    # the model
    ("model.py", "stage 1 without its residual addition",
     "x = self.end_stage(x, self.C2(x))", "x = F.gelu(self.C2(x))"),
    ("model.py", "stage 2 without its residual addition",
     "x = self.end_stage(x, self.C5(self.C4(x)))", "x = F.gelu(self.C5(self.C4(x)))"),
    ("model.py", "stage 2's branch skips C4",
     "x = self.end_stage(x, self.C5(self.C4(x)))", "x = self.end_stage(x, self.C5(x))"),
    ("model.py", "stage 3 without its residual addition",
     "x = self.end_stage(x, self.C9(self.C8(x)))", "x = F.gelu(self.C9(self.C8(x)))"),
    ("model.py", "the residual switch inverted",
     "x + branch if self.residual else branch", "branch if self.residual else x + branch"),
    ("model.py", "branches do not start silent",
     "nn.init.zeros_(block[1].weight)", "nn.init.ones_(block[1].weight)"),
    ("model.py", "zero start kept without the additions",
     "            return  # without the additions", "            pass  # without the additions"),
    ("model.py", "no-norm branches do not start silent (Fixup)",
     "                nn.init.zeros_(conv.weight)\n", "\n"),
    ("model.py", "LN normalizes each channel alone (Instance Norm)",
     "return nn.GroupNorm(1, channels)", "return nn.GroupNorm(channels, channels)"),
    ("model.py", "GN ignores its groups",
     "return nn.GroupNorm(groups, channels)", "return nn.GroupNorm(2, channels)"),
    ("model.py", "conv biases beside the norms",
     'bias = norm == "none"', "bias = True"),
    ("model.py", "a GELU inside the last C of each branch",
     "self.C2 = c(w1, w1, act=False)", "self.C2 = c(w1, w1)"),
    ("model.py", "P1 averages instead of taking the max",
     "self.P1 = nn.MaxPool2d(2)", "self.P1 = nn.AvgPool2d(2)"),
    ("model.py", "He init for linear layers instead of ReLU-like ones",
     'nn.init.kaiming_normal_(m.weight, nonlinearity="relu")', 'nn.init.kaiming_normal_(m.weight, nonlinearity="linear")'),
    ("model.py", "count_params skips frozen parameters",
     "return sum(p.numel() for p in model.parameters())", "return sum(p.numel() for p in model.parameters() if p.requires_grad)"),
    ("model.py", "c3 ignores norm_1x1",
     "self.c3 = conv1(w1, w2, norm, groups, norm_1x1)", "self.c3 = conv1(w1, w2, norm, groups, False)"),
    # evaluation
    ("utils.py", "predict leaves the model in train mode",
     "    model.eval()\n    out = [model(", "    out = [model("),
    ("utils.py", "accuracy over the wrong axis",
     "return 100.0 * (logits.argmax(1) == y)", "return 100.0 * (logits.argmax(0)[:len(y)] == y)"),
    ("utils.py", "flip TTA mirrors top-bottom",
     "predict(model, data.x_test.flip(3), data, batch_size)", "predict(model, data.x_test.flip(2), data, batch_size)"),
    ("utils.py", "batch-statistics test in eval mode",
     "probe = copy.deepcopy(model).train()", "probe = copy.deepcopy(model).eval()"),
    ("utils.py", "confusion matrix transposed",
     "torch.bincount(data.y_test * k + pred", "torch.bincount(pred * k + data.y_test"),
    ("utils.py", "misclassified picks correct images",
     "wrong = (pred != data.y_test).nonzero()", "wrong = (pred == data.y_test).nonzero()"),
    ("utils.py", "results report the best epoch",
     '"test_acc": hist["test_acc"][-1],', '"test_acc": max(hist["test_acc"]),'),
    ("utils.py", "load_model leaves the model in train mode",
     "return model.to(device).eval()", "return model.to(device)"),
    ("utils.py", "test() evaluates train images",
     "    logits = predict(model, data.x_test, data, batch_size)\n    return F.cross_entropy(",
     "    logits = predict(model, data.x_train[:len(data.y_test)], data, batch_size)\n    return F.cross_entropy("),
    ("utils.py", "the test loss smoothed too",
     "return F.cross_entropy(logits, data.y_test).item()", "return F.cross_entropy(logits, data.y_test, label_smoothing=0.1).item()"),
    # data and augmentation
    ("utils.py", "statistics of the test split",
     "pixels = x_train.float().div_(255)", "pixels = x_test.float().div_(255)"),
    ("utils.py", "standardized with the variance",
     "std = pixels.std(dim=(0, 2, 3))", "std = pixels.var(dim=(0, 2, 3))"),
    ("utils.py", "normalize works in place on a float input",
     "x.permute(0, 2, 3, 1).to(torch.float32, copy=True)", "x.permute(0, 2, 3, 1).float()"),
    ("utils.py", "training images not standardized",
     "self.tables[pad] = self._standardize_(crop_table(self.x_train, pad, torch.float32))",
     "self.tables[pad] = crop_table(self.x_train, pad, torch.float32)"),
    ("utils.py", "reflection repeats the edge pixel",
     "return i.abs().where(i < n, 2 * (n - 1) - i)", "return (i.abs() - (i < 0).long()).where(i < n, 2 * n - 1 - i)"),
    ("utils.py", "crops drawn x before y",
     "        draws[s, :, 0] = torch.randint(-pad, pad + 1, (n,), generator=gen)\n        draws[s, :, 1] =",
     "        draws[s, :, 1] = torch.randint(-pad, pad + 1, (n,), generator=gen)\n        draws[s, :, 0] ="),
    ("utils.py", "flips a fifth of the images, not half",
     "draws[s, :, 2] = torch.rand(n, generator=gen) < 0.5", "draws[s, :, 2] = torch.rand(n, generator=gen) < 0.2"),
    ("utils.py", "a mirrored crop shifts the same way",
     "start = pad + torch.where(flip.bool(), -dx, dx)", "start = pad + dx"),
    ("utils.py", "vertical shift reversed",
     "rows = reflect(torch.arange(h, device=dev) + dy, h)", "rows = reflect(torch.arange(h, device=dev) - dy, h)"),
    ("utils.py", "batches in stored order",
     "x, y = train_batch(data, order[i * batch_size:(i + 1) * batch_size], pad, draws[i])",
     "x, y = train_batch(data, torch.arange(i * batch_size, (i + 1) * batch_size), pad, draws[i])"),
    ("utils.py", "the crops copied to the device every step",
     "order[i * batch_size:(i + 1) * batch_size], pad, draws[i])", "order[i * batch_size:(i + 1) * batch_size], pad, draws[i].to(dev))"),
    ("utils.py", "one batch dropped per epoch",
     "steps = n // batch_size  # full batches only", "steps = n // batch_size - 1  # full batches only"),
    # training
    ("utils.py", "train leaves the model in eval mode",
     "    model.train()\n    n, dev", "    n, dev"),
    ("utils.py", "label smoothing dropped in the loss",
     "loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)", "loss = F.cross_entropy(out, y)"),
    ("utils.py", "fit does not pass label smoothing on",
     "train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing)",
     "train(model, data, opt, sched, batch_size, pad, gen, epoch)"),
    ("utils.py", "norm scales and shifts decayed too",
     "decay = [p for p in model.parameters() if p.ndim > 1]\n    free = [p for p in model.parameters() if p.ndim <= 1]",
     "decay = [p for p in model.parameters() if p.ndim >= 1]\n    free = [p for p in model.parameters() if p.ndim < 1]"),
    ("utils.py", "weight decay not passed to the optimizer",
     "opt = sgd(model, lr, weight_decay)", "opt = sgd(model, lr, 5e-4)"),
    ("utils.py", "plain momentum instead of Nesterov",
     "momentum=0.9, nesterov=True,", "momentum=0.9, nesterov=False,"),
    ("utils.py", "gradients accumulate across steps",
     "        opt.zero_grad(set_to_none=True)\n", ""),
    ("utils.py", "the schedule never steps",
     "        sched.step()\n", ""),
    ("utils.py", "warm-up fraction ignored",
     "sched = one_cycle(opt, lr, epochs, steps, pct_start, momentum)", "sched = one_cycle(opt, lr, epochs, steps, momentum=momentum)"),
    ("utils.py", "OneCycle starts at lr/25",
     "pct_start=pct_start, div_factor=10, final_div_factor=100,", "pct_start=pct_start, div_factor=25, final_div_factor=100,"),
    ("utils.py", "OneCycle ends at lr/10^4",
     "pct_start=pct_start, div_factor=10, final_div_factor=100,", "pct_start=pct_start, div_factor=10, final_div_factor=1000,"),
    ("utils.py", "momentum cycles the wrong way",
     "max_momentum=high, base_momentum=low", "max_momentum=low, base_momentum=high"),
    ("utils.py", "momentum not cycled",
     "max_momentum=high, base_momentum=low)", "max_momentum=high, base_momentum=low, cycle_momentum=False)"),
    ("utils.py", "train accuracy over all images, not the batches seen",
     "return total_loss.item() / seen, 100.0 * correct.item() / seen", "return total_loss.item() / seen, 100.0 * correct.item() / n"),
    ("utils.py", "the history records the lr after the epoch",
     "        lr_now = sched.get_last_lr()[0]\n        train_loss, train_acc = train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing)",
     "        train_loss, train_acc = train(model, data, opt, sched, batch_size, pad, gen, epoch, label_smoothing)\n        lr_now = sched.get_last_lr()[0]"),
    ("utils.py", "the seed does not seed the model",
     "    torch.manual_seed(seed)\n    return", "    return"),
    # what a run leaves alone, and what follows its seed
    ("utils.py", "the summary runs on the model itself (BN's running averages move)",
     "probe = copy.deepcopy(model).eval()", "probe = model"),
    ("utils.py", "the summary draws from the global generator",
     "    with torch.random.fork_rng(devices=[]):  # torchsummary", "    if True:  # torchsummary"),
    ("utils.py", "subsets ignore the seed",
     "    gen = torch.Generator().manual_seed(seed)\n    x_train, y_train = _subset(",
     "    gen = torch.Generator().manual_seed(0)\n    x_train, y_train = _subset("),
    ("utils.py", "seeded picks ignore the seed",
     "torch.randperm(n, generator=torch.Generator().manual_seed(seed))", "torch.randperm(n, generator=torch.Generator().manual_seed(0))"),
    ("utils.py", "the data order drawn from the global generator",
     "order = torch.randperm(n, generator=gen).to(dev)", "order = torch.randperm(n).to(dev)"),
    ("utils.py", "the crops drawn from the global generator",
     "draws[s, :, 2] = torch.rand(n, generator=gen) < 0.5", "draws[s, :, 2] = torch.rand(n) < 0.5"),
    ("utils.py", "predict leaves the model in eval mode",
     "    model.train(was_training)\n", ""),
    # the CPU kernels
    ("utils.py", "the pin sets no instruction set",
     "    os.environ.update(PIN_ENV)\n", ""),
    ("utils.py", "the pin leaves the thread count",
     "    torch.set_num_threads(threads)\n", ""),
    ("utils.py", "a pin too late for oneDNN is not caught",
     'if found["aten"] != "AVX2" or found["fingerprint"] != fresh:', 'if found["aten"] != "AVX2":'),
    ("utils.py", "the pin is recorded whatever the kernels compute",
     '    _KERNELS["pinned"] = fresh == PIN_FINGERPRINT\n', '    _KERNELS["pinned"] = True\n'),
    ("utils.py", "the pin is not recorded",
     '    _KERNELS["pinned"] = fresh == PIN_FINGERPRINT\n', ""),
    ("utils.py", "the fingerprint leaves out the backward pass",
     "            loss.backward()\n            sgd(net, 0.1).step()\n", ""),
    ("utils.py", "a later thread count goes unnoticed",
     "held = _KERNELS[\"pinned\"] and threads == PIN_THREADS and", "held = _KERNELS[\"pinned\"] and"),
    ("utils.py", "an x86-64 CPU without AVX2 is pinned anyway (and crashes)",
     "    if not has_avx2(cpuinfo):\n", "    if False:\n"),
    ("utils.py", "AVX found where only AVX-512 is listed",
     'line.startswith("flags") and " avx2" in line', 'line.startswith("flags") and " avx" in line'),
    ("utils.py", "a torch without MKL read as MKL unknown",
     'said = lambda m, built: (m[1].strip() if m else "unknown") if built else None',
     'said = lambda m, built: m[1].strip() if m else "unknown"'),
    ("utils.py", "choose_kernels ignores pin_cpu",
     "        if pin_cpu:\n            return pin_kernels(", "        if True:\n            return pin_kernels("),
    ("utils.py", "an inherited pin is kept without pin_cpu",
     "                del os.environ[k]\n", "                pass\n"),
    ("utils.py", "deterministic mode is never switched off",
     "    torch.use_deterministic_algorithms(deterministic)\n", "    torch.use_deterministic_algorithms(True) if deterministic else None\n"),
    # the self-check of a rerun
    ("utils.py", "the self-check always says identical",
     '"identical": departs is None', '"identical": True'),
    ("utils.py", "the self-check compares the wrong epoch",
     "hist[k][epoch - 1], ref[k][epoch - 1] if", "hist[k][epoch - 1], ref[k][epoch - 2] if"),
    ("utils.py", "the self-check ignores the seed",
     'runs = [(p, r) for p, r in runs if r["seed"] == seed]', 'runs = [(p, r) for p, r in runs]'),
    ("utils.py", "the self-check ignores the weights",
     "    elif weights is not None and (mine.keys()", "    elif False and (mine.keys()"),
    ("utils.py", "the self-check accepts unpinned kernels",
     '        elif not kernels.get("pinned"):', '        elif False:'),
    # saving and loading runs
    ("utils.py", "a diverged run writes bare NaN",
     "return json.dumps(clean(obj), indent=indent, allow_nan=False)", "return json.dumps(obj, indent=indent)"),
    ("utils.py", "a results file of another run loads silently",
     "raise ValueError(f\"{path.name} and {results.name}", "print(f\"{path.name} and {results.name}"),
    ("utils.py", "the checkpoint records the caller's config, not the model's",
     '    ckpt = {"net": net, "mean"', '    ckpt = {"net": net_config({"norm": model.norm, "config": config}), "mean"'),
    ("utils.py", "a config that contradicts the model is written anyway",
     "    if wrong:\n        raise ValueError(\"save_results", "    if False:\n        raise ValueError(\"save_results"),
    ("utils.py", "as_trained keeps the loaded data's statistics",
     'return dataclasses.replace(data, mean=stat("mean"), std=stat("std"))', "return data"),
    ("report.py", "--check stops at the first unreadable file",
     "        except Exception as e:  # truncated", "        except OSError as e:  # truncated"),
    ("utils.py", "an interrupted save leaves the old results beside new weights",
     "    results.unlink(missing_ok=True)\n", ""),
    ("utils.py", "the results file written before the figures",
     "    for name, fig in (figures or {}).items():\n        save_fig(fig, out_dir, f\"{name}_{model.norm}.png\")\n"
     "    res[\"weights_sha256\"] = _sha256(pt.read_bytes())\n    _atomic_write(results, lambda p: Path(p).write_text(json_text(res)))\n",
     "    res[\"weights_sha256\"] = _sha256(pt.read_bytes())\n    _atomic_write(results, lambda p: Path(p).write_text(json_text(res)))\n"
     "    for name, fig in (figures or {}).items():\n        save_fig(fig, out_dir, f\"{name}_{model.norm}.png\")\n"),
    ("utils.py", "a renamed file is not synced to the disk",
     "            os.fsync(f.fileno())  # the bytes", "            f.flush()  # the bytes"),
    ("utils.py", "the batch-statistics test ends in a short batch",
     "    starts = [*range(0, n - size + 1, size)] + ([n - size] if n % size else [])",
     "    starts = [*range(0, n, size)]"),
    ("utils.py", "per-class accuracy divides by zero on a missing class",
     "round(100 * counts[k] / sum(counts), 2) if sum(counts) else None", "round(100 * counts[k] / max(sum(counts), 1), 2)"),
    ("utils.py", "the grid's title counts the images asked for",
     '{len(idx)} misclassified test images")', '{n} misclassified test images")'),
    ("utils.py", "the weights' hash not recorded",
     '    res["weights_sha256"] = _sha256(pt.read_bytes())\n', ""),
    ("utils.py", "per-class accuracy reads columns as the true class",
     "round(100 * counts[k] / sum(counts), 2)", "round(100 * confusion[k][k] / sum(r[k] for r in confusion), 2)"),
    ("utils.py", "a diverged run trains on for all its epochs",
     "        if not math.isfinite(train_loss):", "        if False:"),
    ("utils.py", "any run stops after its first epoch",
     "        if not math.isfinite(train_loss):", "        if math.isfinite(train_loss):"),
    # the corruption study
    ("report.py", "a merged row names one seed of its seed folders",
     'seeds = ", ".join(s for _, s in found)', 'seeds = found[0][1]'),
    ("report.py", "rows of sibling learning-rate folders not merged",
     'peaks.setdefault((sibling(folder, "lr"), norms, rest, seeds), [])', 'peaks.setdefault((folder, norms, rest, seeds), [])'),
    ("report.py", "rows of different seeds merged across learning-rate folders",
     'peaks.setdefault((sibling(folder, "lr"), norms, rest, seeds), [])', 'peaks.setdefault((sibling(folder, "lr"), norms, rest, ""), [])'),
    # the ablation's pairing (experiments/tables.py)
    ("experiments/tables.py", "the unpinned first runs counted in the findings",
     "return [d for d in found if unpinned or UNPINNED not in d.relative_to(Path(studies) / ABLATION).parts]",
     "return found"),
    ("experiments/tables.py", "the runs without norms set against no headline",
     'k[0] == ("bn" if key[0] == "none" else key[0]) and k[1]', "k[0] == key[0] and k[1]"),
    ("experiments/tables.py", "a failed run paired as if it trained",
     "trained = [r for r in runs.values() if not failure(r)]", "trained = list(runs.values())"),
    ("experiments/tables.py", "an arm with a failed run quoted by its mean",
     '"failed": len(runs) - len(trained)', '"failed": 0'),
    ("experiments/tables.py", "an arm of fewer seeds reads as a full one",
     """report.verdict(p) + ("" if p["n"] == 3 else f"; {seeds(p['n'])}")""", "report.verdict(p)"),
    ("experiments/tables.py", "a diverged run not seen as failed",
     'nan = next((e for e, loss in enumerate(r["history"]["train_loss"], 1) if not math.isfinite(loss)), None)',
     "nan = None"),
    ("experiments/tables.py", "the small-batch answer names differences the rule does not call real",
     "            if p[\"real\"]:\n                real.setdefault(bs, [])", "            if p[\"diffs\"]:\n                real.setdefault(bs, [])"),
    ("experiments/tables.py", "BN's running averages set against the statistics of batches of 128",
     'lambda r: r["val_acc_batch_stats"][str(bs)]', 'lambda r: r["val_acc_batch_stats"]["128"]'),
    ("experiments/tables.py", "the studies' summary counts an arm of two seeds as a full one",
     "        if len(runs) < 3:\n            short += 1", "        if len(runs) < 2:\n            short += 1"),
    ("experiments/tables.py", "the studies' summary hides the failed seeds",
     'failed[key[2]] = p["failed"]', "failed[key[2]] = 0"),
    ("experiments/shift.py", "bytes not clipped (1.02 wraps to 4)",
     "return x.clamp(0, 1).mul(255).trunc().to(torch.uint8)", "return x.mul(255).trunc().to(torch.uint8)"),
    ("experiments/shift.py", "bytes rounded, not truncated as CIFAR-10-C",
     "x.clamp(0, 1).mul(255).trunc()", "x.clamp(0, 1).mul(255).round()"),
    ("experiments/shift.py", "the blur reflects at the edges (torchvision's padding)",
     'mode="replicate")', 'mode="reflect")'),
    ("experiments/shift.py", "the blur along the rows only",
     "blur_along(blur_along(as_float(x), kernel, 2), kernel, 3)", "blur_along(as_float(x), kernel, 2)"),
    ("experiments/shift.py", "contrast towards the whole image's mean, not each channel's",
     "x.flatten(2).cumsum(-1)[..., -1:].div(h * w).view(n, channels, 1, 1)", "x.flatten(1).mean(-1).view(n, 1, 1, 1)"),
    ("experiments/shift.py", "one noise draw for every severity",
     "torch.Generator().manual_seed(10 * seed + severity)", "torch.Generator().manual_seed(seed)"),
    ("experiments/shift.py", "noise from the global generator, not the seed",
     "torch.randn(x.shape, generator=gen, dtype=torch.float64)", "torch.randn(x.shape, dtype=torch.float64)"),
    ("experiments/shift.py", "noise left on the CPU",
     "dtype=torch.float64).to(x.device)", "dtype=torch.float64)"),
    ("experiments/shift.py", "BN's test batches leave a short last batch",
     "BN_BATCH = 250", "BN_BATCH = 256"),
    ("experiments/shift.py", "bn_batch_stats on the running averages",
     'predict(*models["bn"], x, data, batch_stats=True, seed=seed)', 'predict(*models["bn"], x, data, seed=seed)'),
    ("experiments/shift.py", "inputs standardized with the loaded data's statistics, not the model's",
     "    as_trained = utils.as_trained(data, stats)\n", "    as_trained = data\n"),
    ("experiments/shift.py", "--models without --out overwrites the committed results",
     "        if args.models:\n            ap.error(", "        if False:\n            ap.error("),
]


def run(k, scratch):
    """Apply mutant k in scratch, run the tests, restore; returns (killed, seconds)."""
    file, _, old, new = MUTANTS[k]
    path = scratch / file
    source = path.read_text()
    if source.count(old) != 1:
        raise ValueError(f"mutant {k}: the code to replace occurs {source.count(old)} times in {file}")
    path.write_text(source.replace(old, new))
    try:
        t0 = time.perf_counter()
        own = {"tables": "test_report"}.get(Path(file).stem, f"test_{Path(file).stem}")  # tables.py: test_report
        own_first = sorted(TESTS, key=lambda t: Path(t).stem != own)  # -x: stops sooner
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-k", "not committed", *own_first],
                              cwd=scratch, capture_output=True, text=True, timeout=900)
        return proc.returncode != 0, time.perf_counter() - t0
    finally:
        path.write_text(source)


def main(which):
    with tempfile.TemporaryDirectory(prefix="mutants_") as tmp:
        scratch = Path(tmp) / "repo"
        shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(".git", ".venv", ".ci", "data", "*.ipynb",
                                                                     "__pycache__", "tuning"))
        killed = 0
        for k in which:
            dead, seconds = run(k, scratch)
            killed += dead
            print(f"{k:2d} {'KILLED  ' if dead else 'SURVIVED'} {seconds:5.0f}s  {MUTANTS[k][0]}: {MUTANTS[k][1]}",
                  flush=True)
        print(f"{killed} of {len(which)} mutants killed")
    return killed == len(which)


if __name__ == "__main__":
    which = [int(a) for a in sys.argv[1:]] or range(len(MUTANTS))
    sys.exit(0 if main(list(which)) else 1)
