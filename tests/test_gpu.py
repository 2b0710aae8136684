"""The GPU path: a step and an evaluation on CUDA match the CPU's, and deterministic mode repeats bit for bit.

Every test but the first skips without CUDA; run them in Colab or on any GPU machine:

    python -m pytest -q tests/test_gpu.py

The first one runs anywhere: the global average pool must reach `mean`, not the adaptive pooling kernel, whose
CUDA backward has no deterministic implementation (torch.use_deterministic_algorithms would raise there).
"""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import utils
from conftest import ROOT, jiggled
from model import Net

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_NORMS = ("bn", "gn", "ln")


# ----------------------------------------------------------------------------- anywhere

def backward_nodes(t):
    """Names of every autograd node t's gradient would pass through."""
    seen, names, todo = set(), [], [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(node.name())
        todo += [n for n, _ in node.next_functions]
    return names


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_the_global_average_pool_reaches_mean_not_the_adaptive_pooling_kernel(fmt):
    """adaptive_avg_pool2d with a 1x1 output is computed as mean over H and W (a composite op, the same on every
    device), so its backward is mean's: an expand, deterministic on CUDA (channels_last adds an as_strided whose
    backward, without overlap, is a copy). The adaptive pooling kernel's CUDA backward has no deterministic
    implementation: under torch.use_deterministic_algorithms(True) it raises."""
    x = torch.randn(4, 32, 8, 8).contiguous(memory_format=fmt).requires_grad_()
    pooled = backward_nodes(nn.AdaptiveAvgPool2d(1)(x))
    assert "MeanBackward1" in pooled and not any("Adaptive" in n for n in pooled), pooled
    for norm in GPU_NORMS:  # and in the model as built: its GAP sees C9's activations in the model's layout
        model = Net(norm).to(memory_format=fmt)
        nodes = backward_nodes(model(torch.randn(2, 3, 32, 32).contiguous(memory_format=fmt)))
        assert "MeanBackward1" in nodes and not any("Adaptive" in n for n in nodes), norm


# ----------------------------------------------------------------------------- CUDA against the CPU

def one_step(norm, data, device, fmt=None):
    """One SGD step of utils.train (64 of the 120 images, seeded draws) and an evaluation, on `device` with the
    model in utils.memory_format(norm, device) (or fmt). Returns everything on the CPU."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = jiggled(Net(norm, norm_1x1=True))
    model = model.to(device, memory_format=fmt or utils.memory_format(norm, device))
    d = utils.Data.from_tensors(data.x_train.cpu(), data.y_train.cpu(), data.x_test.cpu(), data.y_test.cpu(),
                                data.classes, data.source, device)
    state = lambda: {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    before = state()
    opt = utils.sgd(model, 0.05)
    sched = utils.one_cycle(opt, 0.05, epochs=4, steps=1)
    steps = len(d.y_train) // 64
    loss, acc = utils.train(model, d, opt, sched, 64, 2, torch.Generator().manual_seed(3), 1, label_smoothing=0.1)
    test_loss, test_acc = utils.test(model, d)
    return dict(steps=steps, before=before, after=state(), loss=loss, acc=acc,
                logits=utils.predict(model, d.x_test, d).cpu(), test_loss=test_loss, test_acc=test_acc)


def assert_same_step(a, b, rel=1e-2):
    """b's step is a's, up to float rounding: every parameter and running average moved to the same place within
    `rel` of how far it moved (a different batch, crop or layout moves it somewhere else entirely); the same
    losses, and the same logits within 0.1% of their scale."""
    assert a["steps"] == b["steps"] == 1
    for k, start in a["before"].items():
        assert torch.equal(start, b["before"][k]), f"{k}: not the same initial weights"
        x, y = a["after"][k], b["after"][k]
        if not x.is_floating_point():  # BN's num_batches_tracked
            assert torch.equal(x, y), k
            continue
        moved = (x - start).abs().max().item()
        off = (x - y).abs().max().item()
        assert off <= rel * moved + 1e-6, f"{k}: moved {moved:.3g}, but the two differ by {off:.3g}"
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert abs(b["acc"] - a["acc"]) <= 100 / 64 + 1e-9  # a near tie may flip one image's top class
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4)
    scale = a["logits"].abs().max().item()
    assert torch.allclose(b["logits"], a["logits"], rtol=1e-3, atol=1e-3 * scale)


@pytest.fixture
def exact_fp32(monkeypatch):
    """Full float32 convolutions (the model has no matmul): cuDNN's default TF32 (Ampere and later) keeps 10 mantissa
    bits, a rounding the CPU never does."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


@needs_cuda
def test_cuda_group_norm_still_works_in_nchw_and_batch_norm_in_channels_last():
    """Why utils.memory_format keeps GN and LN (GroupNorm(1)) models NCHW on a GPU: torch's CUDA group norm has
    NCHW kernels only and hands back NCHW (native_group_norm: X.contiguous(memory_format) with Contiguous for
    CUDA), so channels_last would cost a copy at every norm layer; cuDNN's batch norm keeps channels_last. If
    the first assert fails, torch has gained NHWC group norm kernels (pytorch/pytorch#191945): time both layouts
    and revisit memory_format."""
    x = torch.randn(8, 32, 16, 16, device="cuda").contiguous(memory_format=torch.channels_last)
    for gn in (nn.GroupNorm(4, 32), nn.GroupNorm(1, 32)):
        y = gn.cuda().to(memory_format=torch.channels_last)(x)
        assert y.is_contiguous() and not y.is_contiguous(memory_format=torch.channels_last)
    assert nn.BatchNorm2d(32).cuda()(x).is_contiguous(memory_format=torch.channels_last)


@needs_cuda
@pytest.mark.parametrize("norm", GPU_NORMS)
def test_a_step_and_an_evaluation_on_the_gpu_match_the_cpu(data, norm, exact_fp32):
    assert_same_step(one_step(norm, data, "cpu"), one_step(norm, data, "cuda"))


# ----------------------------------------------------------------------------- deterministic mode

DETERMINISTIC_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import torch
    import records
    import utils
    from model import Net

    folder, out, device = sys.argv[2], sys.argv[3], torch.device(sys.argv[4])
    kernels = records.choose_kernels(device, pin_cpu=False, deterministic=True)  # before torch computes anything
    if device.type == "cuda":
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark, kernels
    data = utils.load_cifar10(folder, device)
    runs = {}
    for norm in ("bn", "gn", "ln"):
        for k in range(2):
            gen = utils.set_seed(0)
            model = Net(norm, norm_1x1=True).to(device, memory_format=utils.memory_format(norm, device))
            hist = utils.fit(model, data, 1, batch_size=32, lr=0.1, gen=gen)
            runs[norm, k] = {"state": {n: v.cpu() for n, v in model.state_dict().items()}, "hist": hist}
    torch.save(runs, out)
""")


def deterministic_runs(image_folder, out, device):
    """Two one-epoch runs of each norm in a fresh process under choose_kernels(deterministic=True), which is
    process-wide: {(norm, k): {"state", "hist"}}."""
    proc = subprocess.run([sys.executable, "-c", DETERMINISTIC_RUN, str(ROOT), str(image_folder), str(out), device],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]  # e.g. "... does not have a deterministic implementation"
    return torch.load(out, weights_only=False)


def assert_bit_identical(runs):
    """Every run of a norm ends in exactly the same weights, running averages and history."""
    for norm in GPU_NORMS:
        first = runs[0][norm, 0]
        for r in runs:
            for k in (0, 1):
                run = r[norm, k]
                assert run["hist"]["train_loss"] == first["hist"]["train_loss"], norm
                assert run["hist"]["test_acc"] == first["hist"]["test_acc"], norm
                for name, v in first["state"].items():
                    assert torch.equal(run["state"][name], v), f"{norm} {name}"


@needs_cuda
def test_deterministic_mode_repeats_an_epoch_bit_for_bit(image_folder, tmp_path):
    """Two processes, two runs each: all four end bit-identical (cuDNN timing its algorithms, or one with
    atomics, would make them differ in the last bits); and no operation of an epoch lacks a deterministic
    implementation (it would raise)."""
    assert_bit_identical([deterministic_runs(image_folder, tmp_path / f"run{k}.pt", "cuda") for k in (0, 1)])
