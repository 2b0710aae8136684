"""experiments/sweep.py without data or training: the activation swap, worker failures, private work folders."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import ROOT, jiggled
from model import Net

sys.path.insert(0, str(ROOT / "experiments"))
import sweep  # noqa: E402

TORCH_GELU = torch._C._nn.gelu  # what F.gelu is unless someone patches it
KWARGS = [dict(norm="bn", norm_1x1=True), dict(norm="gn", block="separable", widths=(32, 48, 96)),
          dict(norm="ln", residual=False)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny forwards: one thread is fastest, and far faster than two on cores other work keeps busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kwargs", KWARGS)
def test_sweepnet_with_gelu_is_net(kwargs):
    torch.manual_seed(0)
    net = jiggled(Net(**kwargs))
    torch.manual_seed(0)
    swept = jiggled(sweep.SweepNet(**kwargs, act="gelu"))
    assert [type(m) for m in swept.modules()][1:] == [type(m) for m in net.modules()][1:]
    a, b = net.state_dict(), swept.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(swept(x), net(x))                # train mode: batch statistics
    assert torch.equal(swept.eval()(x), net.eval()(x))  # eval mode: running statistics
    assert F.gelu is TORCH_GELU


@pytest.mark.parametrize("act, module, fn", [("relu", nn.ReLU, F.relu), ("silu", nn.SiLU, F.silu)])
@pytest.mark.parametrize("kwargs", KWARGS)
def test_sweepnet_swaps_every_gelu(kwargs, act, module, fn, monkeypatch):
    torch.manual_seed(0)
    net = jiggled(Net(**kwargs))
    torch.manual_seed(0)
    swept = jiggled(sweep.SweepNet(**kwargs, act=act))
    assert not any(isinstance(m, nn.GELU) for m in swept.modules())
    assert sum(isinstance(m, module) for m in swept.modules()) == sum(isinstance(m, nn.GELU) for m in net.modules())
    x, branch = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    assert torch.equal(swept.end_stage(x, branch), fn(x + branch if swept.residual else branch))  # the stage ends
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = swept(images)
    assert F.gelu is TORCH_GELU
    # the same network as the earlier sweeps built by patching F.gelu process-wide (their logged results)
    monkeypatch.setattr(F, "gelu", lambda x, approximate="none": fn(x))
    assert torch.equal(out, net(images))


def test_sweepnet_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="tanh"):
        sweep.SweepNet(act="tanh")


def test_run_trains_a_sweepnet_and_leaves_f_gelu_alone(monkeypatch):
    seen = {}

    def fake_fit(model, data, *args, **kwargs):
        seen["model"] = model
        return {"train_acc": [50.0], "test_acc": [40.0, 45.0]}

    monkeypatch.setattr(sweep, "VAL", 4)
    monkeypatch.setattr(sweep.utils, "fit", fake_fit)
    monkeypatch.setattr(sweep.utils, "batch_stats_acc", lambda model, data, sizes: {s: 30.0 for s in sizes})
    tensors = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8), torch.arange(12) % 10, tuple("abcdefghij")
    cfg = {**sweep.BASE, **sweep.FINAL["bn"], "act": "relu"}
    r = sweep.run(cfg, tensors, "cpu")
    model = seen["model"]
    assert isinstance(model, sweep.SweepNet) and model.act == "relu" and isinstance(model.c3[2], nn.ReLU)
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert F.gelu is TORCH_GELU
    assert r["name"] == "lr=0.2,pct=0.15,c_act=True" and r["val_acc"] == 45.0
    assert r["cfg"] == sweep.as_json(cfg)


# --- collecting the workers' runs


def row(name, norm="bn", val=50.0):
    return {"name": name, "cfg": {"norm": norm}, "train_acc": 60.0, "val_acc": val, "minutes": 0.1}


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_finish_writes_every_workers_runs_in_worker_order(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_rows(work / "sweep_0.jsonl", [row("a"), row("c")])
    write_rows(work / "sweep_1.jsonl", [row("b")])
    write_rows(work / "sweep_5.jsonl", [row("not this sweep's")])  # no worker 5 here
    out.mkdir()
    rows = sweep.finish(out, work, [0, 0, 0])  # worker 2 started no run: the budget ran out
    assert [r["name"] for r in rows] == ["a", "c", "b"]
    assert (out / "sweep.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["sweep.jsonl"]  # no temporary file left


@pytest.mark.parametrize("codes, named", [([0, 1], ["worker 1 (exit code 1)"]),
                                          ([2, 0, -9], ["worker 0 (exit code 2)",
                                                        "worker 2 (exit code -9, killed by signal 9)"])])
def test_a_failed_worker_stops_the_sweep_before_anything_is_written(tmp_path, codes, named):
    work, out = tmp_path / "work", tmp_path / "out"
    write_rows(work / "sweep_0.jsonl", [row("a")])
    out.mkdir()
    with pytest.raises(SystemExit) as e:
        sweep.finish(out, work, codes)
    message = str(e.value)
    assert all(n in message for n in named) and "missing" in message and "sweep.jsonl" in message
    assert not (out / "sweep.jsonl").exists() and list(out.iterdir()) == []


# --- main() with fake data and fake workers


class FakeWorkers:
    """Stands in for subprocess.Popen: each worker parses its command line, checks its data file and writes
    one run into its work folder; codes[k] is worker k's exit code; during(k) runs while worker k is alive."""

    def __init__(self, codes, during=None):
        self.codes, self.during, self.calls = codes, during, []

    def __call__(self, cmd, **kwargs):
        assert kwargs == {"stdout": subprocess.DEVNULL}  # stderr stays on the terminal
        a = sweep.parse_args(cmd[2:])
        self.calls.append(a)
        assert torch.load(a.cache)[2] == ("a", "b")
        result = Path(a.work) / f"sweep_{a.worker}.jsonl"
        write_rows(result, [row(f"{a.work}:{a.worker}")])
        if self.during:
            self.during(a.worker)
        assert result.exists() and Path(a.cache).exists()  # nothing of this sweep's was deleted meanwhile
        return SimpleNamespace(wait=lambda: self.codes[a.worker], poll=lambda: self.codes[a.worker])


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
    """Temporary folders under tmp_path/tmp; data loading faked; returns the parsed args for an out folder."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    data = SimpleNamespace(x_train=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), y_train=torch.tensor([0, 1]),
                           classes=("a", "b"))
    monkeypatch.setattr(sweep.utils, "load_cifar10", lambda *args, **kwargs: data)
    return lambda out, *more: sweep.parse_args(["--out", str(out), "--plan", "9", "--procs", "2", "--device",
                                                "cpu", *more])


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_sweeps_side_by_side_keep_to_their_own_folders(tmp_path, fake_sweep, monkeypatch):
    tmp = tmp_path / "tmp"
    # another sweep's live files, and the paths every sweep used to share
    write_rows(tmp / "sweep_runs" / "sweep_0.jsonl", [row("old shared folder")])
    (tmp / "sweep_data.pt").write_bytes(b"old shared cache")
    write_rows(tmp / "sweep_live" / "runs" / "sweep_1.jsonl", [row("a live sweep")])
    before = snapshot(tmp)

    inner = FakeWorkers([0, 0])
    outer = FakeWorkers([0, 0], during=lambda k: k == 0 and sweep.main(fake_sweep(tmp_path / "B")))

    def popen(cmd, **kwargs):  # sweep B starts and ends while sweep A's first worker runs
        return (inner if len(outer.calls) == 1 and len(inner.calls) < 2 else outer)(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    sweep.main(fake_sweep(tmp_path / "A"))

    (a0, a1), (b0, b1) = outer.calls, inner.calls
    assert a0.work == a1.work and b0.work == b1.work and a0.work != b0.work
    assert a0.cache == a1.cache and b0.cache == b1.cache and a0.cache != b0.cache
    for a in (a0, b0):  # each sweep's files lie in its own fresh folder under the temporary directory
        folder = Path(a.work).parent
        assert folder.parent == tmp and folder.name.startswith("sweep_") and Path(a.cache).parent == folder
    assert (a0.plan, a0.procs, a0.device, a1.worker) == (9, 2, "cpu", 1)
    for out, a in ((tmp_path / "A", a0), (tmp_path / "B", b0)):
        rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
        assert [r["name"] for r in rows] == [f"{a.work}:0", f"{a.work}:1"]
    assert snapshot(tmp) == before  # both sweeps' folders are gone, nothing else was touched


def test_main_with_a_failed_worker_writes_nothing_and_cleans_up(tmp_path, fake_sweep, monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", FakeWorkers([0, 3]))
    with pytest.raises(SystemExit, match=r"worker 1 \(exit code 3\).*missing"):
        sweep.main(fake_sweep(tmp_path / "out"))
    assert list((tmp_path / "out").iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []  # the sweep's temporary folder is removed on error too


def test_a_given_work_folder_with_runs_in_it_is_refused_not_emptied(tmp_path, fake_sweep, monkeypatch):
    work = tmp_path / "work"
    write_rows(work / "sweep_0.jsonl", [row("an earlier sweep")])
    before = snapshot(work)
    monkeypatch.setattr(subprocess, "Popen", FakeWorkers([0, 0]))
    with pytest.raises(SystemExit, match="already holds"):
        sweep.main(fake_sweep(tmp_path / "out", "--work", str(work)))
    assert snapshot(work) == before and not (tmp_path / "out" / "sweep.jsonl").exists()


# --- how many workers one GPU holds


def test_cap_procs_keeps_every_worker_that_fits_and_at_least_one():
    gb = 2 ** 30
    assert sweep.cap_procs(14, 79 * gb, 3 * gb) == 14  # an 80 GB GPU holds all of them
    assert sweep.cap_procs(14, 14.5 * gb, 3 * gb) == 4  # a 16 GB one: four whole workers, not five
    assert sweep.cap_procs(4, 12 * gb, 3 * gb) == 4 and sweep.cap_procs(4, 12 * gb - 1, 3 * gb) == 3  # the edge
    assert sweep.cap_procs(4, 1 * gb, 3 * gb) == 1  # not even one fits: one tries, rather than none


@pytest.mark.parametrize("pad", [0, 2, 4])
def test_the_estimate_counts_the_crop_table_as_data_crops_builds_it(pad, monkeypatch):
    monkeypatch.setattr(sweep, "activation_bytes", lambda cfg, size: 0)
    monkeypatch.setattr(sweep, "VAL", 3)
    n_images, n_train = 10, 7
    cfg = {**sweep.BASE, "pad": pad}
    table = sweep.utils.crop_table(torch.zeros(n_train, 3, 32, 32, dtype=torch.uint8), pad, torch.float32)
    fixed = sweep.CUDA_CONTEXT_BYTES + sweep.SLACK_BYTES + n_images * 3 * 32 * 32  # the context, slack and images
    mirrored = n_train * 3 * 32 * 32  # crop_table's uint8 flipped copy while it fills the table
    assert sweep.worker_bytes([cfg], n_images) == fixed + table.nbytes + mirrored


def test_the_estimate_takes_the_hungriest_run_and_grows_with_the_batch():
    base = {**sweep.BASE}
    wide = {**sweep.BASE, "block": "separable", "widths": (32, 48, 96)}
    per_image = sweep.activation_bytes(base)
    assert 0.1 * 2 ** 20 < per_image < 10 * 2 ** 20 and sweep.activation_bytes(wide) > per_image  # MB per image
    big_batch = {**base, "bs": 4 * base["bs"]}
    assert sweep.worker_bytes([base, big_batch], 50000) == sweep.worker_bytes([big_batch], 50000)
    assert sweep.worker_bytes([big_batch], 50000) - sweep.worker_bytes([base], 50000) == 2 * 3 * base["bs"] * per_image


def test_main_on_a_gpu_starts_only_the_workers_that_fit_and_tells_each(tmp_path, fake_sweep, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "worker_bytes", lambda cfgs, n_images: 3 * 2 ** 30)
    monkeypatch.setattr(sweep, "free_gpu_bytes", lambda device: 7 * 2 ** 30)  # two workers fit, not five
    workers = FakeWorkers([0, 0])
    monkeypatch.setattr(subprocess, "Popen", workers)
    sweep.main(fake_sweep(tmp_path / "out", "--procs", "5", "--device", "cuda"))
    assert [(a.worker, a.procs, a.device) for a in workers.calls] == [(0, 2, "cuda"), (1, 2, "cuda")]
    plan = sweep.PLANS[9]  # so worker k takes runs k, k + 2, ...: together they still run the whole plan
    assert sorted(i for a in workers.calls for i in range(len(plan))[a.worker::a.procs]) == list(range(len(plan)))
    assert "--procs 5 lowered to 2" in capsys.readouterr().err


def test_main_on_a_gpu_with_room_keeps_procs(tmp_path, fake_sweep, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "worker_bytes", lambda cfgs, n_images: 3 * 2 ** 30)
    monkeypatch.setattr(sweep, "free_gpu_bytes", lambda device: 79 * 2 ** 30)
    workers = FakeWorkers([0, 0, 0])
    monkeypatch.setattr(subprocess, "Popen", workers)
    sweep.main(fake_sweep(tmp_path / "out", "--procs", "3", "--device", "cuda"))
    assert [a.procs for a in workers.calls] == [3, 3, 3] and "lowered" not in capsys.readouterr().err
