"""The recipe as it runs: train and eval modes, the loss, what is decayed, the schedule, the residual additions.

Each test states a fact of the recipe independently of utils.py, so a change that alters training fails here.
"""
import copy
import inspect
import textwrap
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import utils
from model import NORMS, Net, count_params


def scramble_running_averages(model, seed=0):
    """Running averages unlike anything a batch of these images gives: eval and train mode then disagree."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 4 + 0.1)
    return model


# ----------------------------------------------------------------------------- train and eval modes

def test_predict_uses_the_running_averages_and_leaves_them_alone(data):
    model = scramble_running_averages(Net("bn", norm_1x1=True)).train()  # as a training epoch leaves it
    before = copy.deepcopy(model.state_dict())
    logits = utils.predict(model, data.x_test, data, batch_size=7)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(data.normalize(data.x_test))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_every_training_epoch_runs_in_train_mode(data):
    model = Net("bn").eval()  # as test() leaves it after each epoch
    utils.fit(model, data, 2, batch_size=32, lr=0.05, gen=utils.set_seed(0))
    steps = len(data.y_train) // 32
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_batches_tracked.item() == 2 * steps  # every step of both epochs moved the averages
    fresh = Net("bn")
    assert not torch.equal(model.C1[1].running_mean, fresh.C1[1].running_mean)


def test_test_reports_the_plain_cross_entropy_and_accuracy_of_the_test_split(data):
    model = Net("ln").eval()
    with torch.no_grad():
        logits = model(data.normalize(data.x_test))
    loss, acc = utils.test(model, data)
    assert loss == pytest.approx(F.cross_entropy(logits, data.y_test).item(), rel=1e-5)  # no smoothing at test
    assert acc == pytest.approx(utils.accuracy(logits, data.y_test))


def test_flip_tta_averages_each_image_with_its_mirror(data, monkeypatch):
    seen = []
    predict = utils.predict
    monkeypatch.setattr(utils, "predict", lambda model, x, *a: seen.append(x) or predict(model, x, *a))
    model = Net("gn").eval()
    acc = utils.test_flip_tta(model, data)
    assert len(seen) == 2 and torch.equal(seen[0], data.x_test)
    assert torch.equal(seen[1], data.x_test.flip(3))  # mirrored left-right, not upside down
    with torch.no_grad():
        x = data.normalize(data.x_test)
        logits = model(x) + model(x.flip(3))
    assert acc == pytest.approx(utils.accuracy(logits, data.y_test))


def test_batch_statistics_test_runs_bn_in_train_mode_on_shuffled_batches(data):
    model = Net("bn")
    utils.fit(model, data, 2, batch_size=40, lr=0.05, gen=utils.set_seed(0))  # learns the synthetic colours
    scramble_running_averages(model)  # eval mode now fails; batch statistics do not
    n = len(data.y_test)
    acc = utils.batch_stats_acc(model, data, sizes=(n,), seed=3)
    order = utils.seeded_order(n, 3, "cpu")
    with torch.no_grad():
        pred = copy.deepcopy(model).train()(data.normalize(data.x_test[order])).argmax(1)
    assert acc[str(n)] == 100 * (pred == data.y_test[order]).float().mean().item()
    assert acc[str(n)] > utils.test(model, data)[1] + 20  # not the running averages


# ----------------------------------------------------------------------------- the optimization, step by step

def reference_fit(model, data, epochs, batch_size, lr, seed, weight_decay, label_smoothing, pad, pct_start, momentum):
    """The recipe written out with plain torch: Nesterov SGD, decay on conv weights only, OneCycle of the lr
    (lr/10 -> lr -> lr/1000) and the momentum, smoothed cross-entropy, the same random batches and crops."""
    gen = torch.Generator().manual_seed(seed)
    convs = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    groups = [{"params": [p for p in model.parameters() if id(p) in convs], "weight_decay": weight_decay},
              {"params": [p for p in model.parameters() if id(p) not in convs], "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum[0], nesterov=True)
    n = len(data.y_train)
    steps = n // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps, pct_start=pct_start,
                                                div_factor=10, final_div_factor=100,
                                                max_momentum=momentum[0], base_momentum=momentum[1])
    losses, accs = [], []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        draws = utils.crop_draws(steps, batch_size, pad, gen)
        model.train()
        total, correct = 0.0, 0
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = utils.augment(data.train_table(pad), idx, pad, draws[i])
            out = model(x)
            loss = F.cross_entropy(out, data.y_train[idx], label_smoothing=label_smoothing)
            correct += (out.argmax(1) == data.y_train[idx]).sum().item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * batch_size
        losses.append(total / (steps * batch_size))
        accs.append(100 * correct / (steps * batch_size))
    return losses, accs


@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_fit_is_the_recipe_step_by_step(data, norm):
    settings = dict(epochs=2, batch_size=50, lr=0.1, weight_decay=0.01, label_smoothing=0.2, pad=2,
                    pct_start=0.5, momentum=(0.9, 0.8))  # none at its default; 120 images: 20 left over an epoch
    torch.manual_seed(0)
    model = Net(norm, norm_1x1=True)
    ours = copy.deepcopy(model)
    hist = utils.fit(ours, data, gen=torch.Generator().manual_seed(5), **settings)
    losses, accs = reference_fit(model, data, seed=5, **settings)
    assert hist["train_loss"] == pytest.approx(losses, rel=1e-5)
    assert hist["train_acc"] == pytest.approx(accs, abs=1e-4)
    _, test_acc = utils.test(model, data)
    assert hist["test_acc"][-1] == pytest.approx(test_acc, abs=1e-4)
    for (name, a), b in zip(ours.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6), name


def test_only_conv_weights_are_decayed(data, monkeypatch):
    seen = []
    train = utils.train
    monkeypatch.setattr(utils, "train", lambda model, d, opt, *a, **k: seen.append(opt) or train(model, d, opt, *a, **k))
    model = Net("bn", norm_1x1=True)
    utils.fit(model, data, 1, batch_size=40, lr=0.1, gen=utils.set_seed(0), weight_decay=0.003)
    decay = {id(p): g["weight_decay"] for g in seen[0].param_groups for p in g["params"]}
    assert len(decay) == len(list(model.parameters()))  # every parameter, once
    for name, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            wanted = 0.003 if isinstance(m, nn.Conv2d) and pname == "weight" else 0.0
            assert decay[id(p)] == wanted, f"{name}.{pname}"


def test_one_cycle_runs_lr_and_momentum_from_start_to_peak_to_end():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0.5, nesterov=True)
    sched = utils.one_cycle(opt, lr=0.4, epochs=10, steps=10, pct_start=0.3, momentum=(0.95, 0.85))
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.04) and moms[0] == pytest.approx(0.95)      # start: lr/10, high momentum
    peak = lrs.index(max(lrs))
    assert peak == 29 and lrs[peak] == pytest.approx(0.4) and moms[peak] == pytest.approx(0.85)  # 30% of the steps
    assert lrs[-1] == pytest.approx(0.0004) and moms[-1] == pytest.approx(0.95)  # end: lr/1000, high momentum
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)


def test_the_history_records_each_epochs_starting_lr(data):
    hist = utils.fit(Net("gn"), data, 4, batch_size=40, lr=0.3, gen=utils.set_seed(0), pct_start=0.5)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = utils.one_cycle(opt, 0.3, 4, len(data.y_train) // 40, pct_start=0.5)
    starts = []
    for step in range(4 * (len(data.y_train) // 40)):
        if step % (len(data.y_train) // 40) == 0:
            starts.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert hist["lr"] == starts and hist["lr"][0] == pytest.approx(0.03)


class HostSyncs:
    """Counts, while utils.train runs, every Tensor call that makes the host wait for the GPU or copies data
    between devices, by the phase it comes in: "setup" (before the first step), "step" (from the first step's
    start to the last step's end) or "summary" (after the last step).

    Waits: reading a value (item, tolist, float(), int(), bool(), an index, complex()) or the bytes (numpy) of a
    GPU tensor, and .cpu(). Copies: .cuda() and every .to() given a device, whichever it names: on the CPU the
    data's device is the CPU, so a per-step host-to-device copy looks like .to("cpu") here. On the CPU none of
    these waits, so counting the calls is what pins the GPU's behaviour; on a GPU, sync_debug=True also makes
    torch raise at any synchronizing call during the steps, these and the ones no method reveals (nonzero, a
    boolean mask)."""

    READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "__complex__", "numpy", "cpu", "cuda")

    def __init__(self, monkeypatch, sync_debug=False):
        self.calls, self.phase, self.steps, self.sync_debug = [], "setup", 0, sync_debug
        for name in self.READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))
        to = torch.Tensor.to

        def counted_to(t, *args, **kwargs):
            device = kwargs.get("device")
            for a in args:  # to(device), to(other tensor), to(dtype), to(device, dtype, non_blocking, copy)
                if isinstance(a, torch.Tensor):
                    device = a.device
                elif isinstance(a, (str, int, torch.device)) and not isinstance(a, bool):
                    device = a
            if device is not None:
                self.calls.append((self.phase, f"to({device})"))
            return to(t, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "to", counted_to)
        monkeypatch.setattr(utils, "progress", self._steps)

    def _counted(self, name, method):
        def counted(t, *args, **kwargs):
            self.calls.append((self.phase, name))
            return method(t, *args, **kwargs)
        return counted

    def _steps(self, iterable, desc, total):
        """utils.progress, marking the steps (and, with sync_debug, making any sync in them raise)."""
        self.phase = "step"
        if self.sync_debug:
            torch.cuda.set_sync_debug_mode("error")
        try:
            for i in iterable:
                self.steps += 1
                yield i
        finally:
            if self.sync_debug:
                torch.cuda.set_sync_debug_mode("default")
            self.phase = "summary"

    def during(self, phase):
        return [what for p, what in self.calls if p == phase]


def count_host_syncs(monkeypatch, train, model, data, batch_size, sync_debug=False):
    """One epoch of `train` (utils.train or a changed copy) under HostSyncs; the monkeypatches are undone after."""
    opt = utils.sgd(model, 0.01)
    sched = utils.one_cycle(opt, 0.01, 10, len(data.y_train) // batch_size)
    syncs = HostSyncs(monkeypatch, sync_debug)
    try:
        train(model, data, opt, sched, batch_size, 2, torch.Generator().manual_seed(0), 1)
    finally:
        monkeypatch.undo()
    assert syncs.steps == len(data.y_train) // batch_size  # train still steps through utils.progress
    return syncs


def with_line_after(fn, anchor, line):
    """A copy of function fn whose source has `line` added after the line holding `anchor`, at its indentation;
    it runs in fn's module, so it sees the module's (and the test's monkeypatched) names."""
    src = textwrap.dedent(inspect.getsource(fn))
    lines = src.splitlines(keepends=True)
    k = next(i for i, s in enumerate(lines) if anchor in s)
    lines.insert(k + 1, lines[k][:len(lines[k]) - len(lines[k].lstrip())] + line + "\n")
    code = compile("".join(lines), f"<{fn.__name__} + {line}>", "exec")
    body = next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == fn.__name__)
    return types.FunctionType(body, fn.__globals__, fn.__name__, fn.__defaults__)


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_a_training_step_never_waits_for_the_device_nor_copies_to_it(data, monkeypatch, norm):
    """On a GPU a step that reads a value (loss.item(), float(loss), if loss > x) or copies a tensor between
    devices makes the host wait for all the work queued so far: the GPU idles until the next step is queued.
    The epoch moves its order and crops to the device once, before the steps, and reads its two sums once,
    after them."""
    counts = []
    for batch_size in (40, 10):  # 3 steps, then 12
        syncs = count_host_syncs(monkeypatch, utils.train, Net(norm), data, batch_size)
        assert syncs.during("step") == []
        assert len([w for w in syncs.during("setup") if w.startswith("to(")]) <= 2  # the order and the crops
        assert len(syncs.during("summary")) <= 2  # the epoch's loss and accuracy, read once
        counts.append(len(syncs.calls))
    assert counts[0] == counts[1]  # nothing grows with the number of steps


@pytest.mark.parametrize("line", ["loss.item()", "float(loss.detach())", "int(correct)", "loss.tolist()",
                                  "if loss > 1e9: pass", "range(correct)", "loss.detach().numpy()", "out.cpu()",
                                  "loss.to('cpu')", "y.to(dev)", "x.to(torch.device('cpu'))"])
def test_the_count_catches_a_step_that_syncs(data, monkeypatch, line):
    """The counter itself: a copy of utils.train with one waiting call added to its step is caught."""
    train = with_line_after(utils.train, "loss.backward()", line)
    syncs = count_host_syncs(monkeypatch, train, Net("gn"), data, 40)
    assert len(syncs.during("step")) == 3, syncs.calls  # once in each of the 3 steps


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_a_training_step_on_the_gpu_never_synchronizes(data, monkeypatch, norm):
    """The same on CUDA, with torch.cuda.set_sync_debug_mode("error") over the steps: any synchronizing CUDA call
    in them raises, including those no Tensor method shows (nonzero, boolean masks, a blocking copy)."""
    dev = torch.device("cuda")
    gpu = utils.Data.from_tensors(data.x_train, data.y_train, data.x_test, data.y_test, data.classes, data.source, dev)
    model = Net(norm).to(dev, memory_format=utils.memory_format(norm, dev))
    try:
        syncs = count_host_syncs(monkeypatch, utils.train, model, gpu, 40, sync_debug=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert syncs.during("step") == [] and len(syncs.during("summary")) <= 2


# ----------------------------------------------------------------------------- the network

def stage_values(model, x):
    """(input of the stage, its branch's output, what the next layer receives) for the three stages."""
    out = {}
    hooks = [getattr(model, name).register_forward_hook(lambda m, i, o, name=name: out.update({name: (i[0], o)}))
             for name in ("C1", "C2", "c3", "C3", "C5", "c6", "C7", "C9", "GAP")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [(out[a][1], out[b][1], out[c][0]) for a, b, c in (("C1", "C2", "c3"), ("C3", "C5", "c6"),
                                                               ("C7", "C9", "GAP"))]


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("norm", NORMS)
def test_every_stage_adds_its_input_to_its_branch(norm, residual):
    torch.manual_seed(0)
    model = Net(norm, residual=residual).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # no silent branch: a missing addition must show
    for k, (x, branch, out) in enumerate(stage_values(model, torch.randn(2, 3, 32, 32))):
        assert torch.allclose(out, F.gelu(x + branch if residual else branch), atol=1e-6), f"stage {k + 1}"
        assert not torch.allclose(out, F.gelu(branch if residual else x + branch), atol=1e-3), f"stage {k + 1}"


@pytest.mark.parametrize("norm", NORMS)
def test_residual_stages_start_as_their_input_and_plain_ones_do_not(norm):
    x = torch.randn(2, 3, 32, 32)
    for x_in, branch, out in stage_values(Net(norm).eval(), x):
        assert branch.abs().max() == 0 and torch.equal(out, F.gelu(x_in))  # the branch starts silent
    for _, branch, _ in stage_values(Net(norm, residual=False).eval(), x):
        assert branch.abs().max() > 0  # without the additions a silent branch would silence the network


def test_no_norm_model_has_no_norm_layers_and_conv_biases_instead():
    model = Net("none", norm_1x1=True)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 11 and all(c.bias is not None for c in convs)
    for block in (model.C2, model.C5, model.C9):  # Fixup: the branch's last conv starts at zero
        assert block[0].weight.abs().sum() == 0 and block[0].bias.abs().sum() == 0
    assert count_params(model) < count_params(Net("bn", norm_1x1=True)) < 50_000
    widths = 2 * 16 + 3 * 24 + 3 * 32  # the outputs of C1..C9: each loses its norm's scale, its shift becomes a bias
    assert count_params(Net("gn")) - count_params(Net("none")) == widths


def test_convs_start_with_kaiming_normal_weights():
    torch.manual_seed(0)
    model = Net("gn", widths=(64, 64, 64))  # wide enough for the standard deviation to be measured
    for name in ("C3", "C7"):
        w = getattr(model, name)[0].weight
        assert w.std().item() == pytest.approx((2 / w[0].numel()) ** 0.5, rel=0.05), name  # He: sqrt(2 / fan_in)


def test_count_params_counts_frozen_parameters_too():
    model = Net("bn")
    total = count_params(model)
    model.C1[0].weight.requires_grad_(False)
    assert count_params(model) == total == sum(p.numel() for p in model.parameters())
