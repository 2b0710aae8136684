"""Hand-made mutants of model.py and utils.py: each is one plausible mistake, and the suite must fail on it.

    python tests/mutants.py            # every mutant, in a scratch copy of the repository (about half an hour)
    python tests/mutants.py 3 17       # only these

Each mutant replaces one exact piece of code; the script applies it in a copy, runs the fast test files with
-x and reports KILLED (a test failed) or SURVIVED. Not part of `pytest tests` (too slow for every run).
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_recipe.py", "tests/test_model.py", "tests/test_utils.py", "tests/test_weights.py",
         "tests/test_shift.py", "tests/test_norm_stats.py"]

# (file, what the mistake is, exact code, mutated code)
MUTANTS = [
    # the model
    ("model.py", "stage 1 without its residual addition",
     "x = self.add(x, self.C2(x))", "x = F.gelu(self.C2(x))"),
    ("model.py", "stage 2 without its residual addition",
     "x = self.add(x, self.C5(self.C4(x)))", "x = F.gelu(self.C5(self.C4(x)))"),
    ("model.py", "stage 2's branch skips C4",
     "x = self.add(x, self.C5(self.C4(x)))", "x = self.add(x, self.C5(x))"),
    ("model.py", "stage 3 without its residual addition",
     "x = self.add(x, self.C9(self.C8(x)))", "x = F.gelu(self.C9(self.C8(x)))"),
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
     "opt = sgd(model, lr, weight_decay, momentum[0])", "opt = sgd(model, lr, 5e-4, momentum[0])"),
    ("utils.py", "plain momentum instead of Nesterov",
     "momentum=momentum, nesterov=True,", "momentum=momentum, nesterov=False,"),
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
     "    random.seed(seed)\n    torch.manual_seed(seed)\n", "    random.seed(seed)\n"),
    ("utils.py", "a diverged run trains on for all its epochs",
     "        if not math.isfinite(train_loss):", "        if False:"),
    ("utils.py", "any run stops after its first epoch",
     "        if not math.isfinite(train_loss):", "        if math.isfinite(train_loss):"),
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
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-k", "not committed", *TESTS],
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
