"""records.py: the files of a run (written whole or not at all), the same bytes for the same weights, and the
comparison plot that says when its runs are not like for like."""
import argparse
import io
import json
import os
import pickle

import pytest
import torch

import records
import utils
from model import Net


def run(data, seed, epochs=3, norm="bn"):
    gen = utils.set_seed(seed)
    model = Net(norm)
    return model, utils.fit(model, data, epochs, batch_size=32, lr=0.05, gen=gen)


def test_results_and_figures_are_written(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    res = records.save_results(tmp_path, model, hist, 0, "cpu", data)
    saved = json.loads((tmp_path / "results_bn.json").read_text())
    assert saved == res
    for key in ("norm", "params", "epochs", "train_acc", "test_acc", "history", "seed", "device", "data", "torch"):
        assert key in saved
    assert saved["test_acc"] == hist["test_acc"][-1] and saved["params"] < 50_000
    records.save_results(tmp_path, model, hist, 0, "cpu", data, figures={
        "curves": utils.plot_curves(hist, "bn"), "misclassified": utils.plot_misclassified(model, data, "bn")})
    assert records.save_comparison(tmp_path) is None  # gn and ln have no results yet
    for norm in ("gn", "ln"):
        records.save_results(tmp_path, Net(norm), hist, 0, "cpu", data)
    assert records.save_comparison(tmp_path) is not None
    names = {p.name for p in tmp_path.iterdir()}
    assert {"curves_bn.png", "misclassified_bn.png", "comparison.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    for png in ("curves_bn.png", "misclassified_bn.png", "comparison.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_report_the_final_epoch_not_the_best(data, tmp_path):
    hist = {"train_loss": [2.0, 1.0, 1.5], "train_acc": [40.0, 90.0, 70.0], "test_loss": [1.9, 0.9, 1.2],
            "test_acc": [50.0, 80.0, 60.0], "lr": [0.1, 0.2, 0.01], "seconds": [60.0, 30.0, 31.0]}
    res = records.save_results(tmp_path, Net("gn"), hist, 0, "cpu", data)
    assert (res["train_acc"], res["test_acc"], res["epochs"], res["minutes"]) == (70.0, 60.0, 3, 2.02)


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = records.atomic_write(tmp_path / "a.json", lambda p: open(p, "w").write("{}"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


def test_interrupted_write_leaves_no_file(tmp_path):
    def crash(path):
        open(path, "w").write("{half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        records.atomic_write(tmp_path / "results_bn.json", crash)
    assert list(tmp_path.iterdir()) == []


def test_a_write_reaches_the_disk_before_its_name_does(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append("rename") or real_replace(a, b))
    records.atomic_write(tmp_path / "a.json", lambda p: open(p, "w").write("{}"))
    assert calls == ["fsync", "rename", "fsync"]  # the file, the rename, then the folder that holds the name


def test_a_save_interrupted_after_the_weights_leaves_no_results_file(data, tmp_path, monkeypatch):
    model, hist = run(data, seed=0, epochs=1)
    records.save_results(tmp_path, model, hist, 0, "cpu", data)
    fig = utils.plot_curves(hist, "bn")
    monkeypatch.setattr(records, "save_fig", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        records.save_results(tmp_path, model, hist, 0, "cpu", data, figures={"curves": fig})
    assert not (tmp_path / "results_bn.json").exists()  # not the old one beside new weights


def test_the_figures_are_written_with_the_run_and_its_results_file_last(data, tmp_path, monkeypatch):
    model, hist = run(data, seed=0, epochs=1)
    figures = {"curves": utils.plot_curves(hist, "bn"), "misclassified": utils.plot_misclassified(model, data, "bn")}
    assert list(tmp_path.iterdir()) == []  # drawing writes nothing
    order = []
    real = records.atomic_write
    monkeypatch.setattr(records, "atomic_write", lambda path, write: order.append(path.name) or real(path, write))
    records.save_results(tmp_path, model, hist, 0, "cpu", data, figures=figures)
    assert order == ["model_bn.pt", "curves_bn.png", "misclassified_bn.png", "results_bn.json"]


def test_a_gpu_record_says_what_holds_after_a_second_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        first = records.choose_kernels(torch.device("cuda"), deterministic=True)
        assert first["deterministic"] is True and torch.are_deterministic_algorithms_enabled()
        second = records.choose_kernels(torch.device("cuda"), deterministic=False)
        assert second["deterministic"] is False and not torch.are_deterministic_algorithms_enabled()
        assert second["tf32"] == {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                  "cudnn": torch.backends.cudnn.allow_tf32}
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def test_the_history_is_written_in_full_and_read_back_as_the_same_doubles(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    assert hist["train_loss"][0] != round(hist["train_loss"][0], 6)  # full precision, not six decimals
    records.save_results(tmp_path, model, hist, 0, "cpu", data)
    saved = json.loads((tmp_path / "results_bn.json").read_text())
    assert saved["history"] == hist and saved["precision"] == "full"


def test_the_same_weights_give_the_same_checkpoint_bytes_wherever_they_are_written(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    records.save_results(tmp_path / "a", model, hist, 0, "cpu", data)
    records.save_results(tmp_path / "b", model, hist, 0, "cpu", data)
    a, b = (tmp_path / d / "model_bn.pt" for d in "ab")
    assert a.read_bytes() == b.read_bytes() == records.checkpoint_bytes(model, data)
    res = json.loads((tmp_path / "a" / "results_bn.json").read_text())
    assert res["weights_sha256"] == records.sha256(a.read_bytes())
    with torch.no_grad():
        model.C10.bias[0] += 1e-7  # one number moved: other bytes
    assert records.checkpoint_bytes(model, data) != a.read_bytes()


def test_a_checkpoint_that_carries_a_pickled_object_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "model_bn.pt"  # an object that is not a tensor or a plain value: unpickling it could run code
    torch.save({"net": {"norm": "bn"}, "state_dict": {}, "extra": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError, match="holds pickled Python objects.*not loaded"):
        records.load_model(path)
    buffer = io.BytesIO()
    pickle.dump({"state_dict": {}}, buffer, protocol=2)  # not even a torch archive
    with pytest.raises((ValueError, pickle.UnpicklingError, RuntimeError)):
        records.read_checkpoint(buffer.getvalue(), "x.pt")


def test_a_setting_a_norm_ignores_is_recorded_as_ignored_and_the_model_saves(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    bn8 = Net("bn", groups=8)
    bn8.load_state_dict(model.state_dict())
    assert bn8.config["groups"] is None  # BN has no groups
    res = records.save_results(tmp_path, bn8, hist, 0, "cpu", data, {"config": {"groups": 8, "lr": 0.05}})
    assert res["config"]["groups"] is None and res["config"]["lr"] == 0.05
    assert records.load_model(tmp_path / "model_bn.pt").config == bn8.config


def test_a_net_saved_and_loaded_comes_back_as_itself_from_its_own_record(data, tmp_path):
    _, hist = run(data, seed=0, epochs=1)
    model = Net("gn", groups=2, residual=False)
    records.save_results(tmp_path, model, hist, 0, "cpu", data)
    loaded = records.load_model(tmp_path / "model_gn.pt")
    assert loaded.config == model.config == {"norm": "gn", "groups": 2, "widths": [16, 24, 32], "num_classes": 10,
                                             "norm_1x1": False, "block": "full", "residual": False}
    assert [m.num_groups for m in loaded.modules() if isinstance(m, torch.nn.GroupNorm)][0] == 2
    assert loaded.residual is False


def test_the_comparison_plot_labels_runs_of_other_hardware_or_data(data, tmp_path):
    _, hist = run(data, seed=0, epochs=1)
    for norm in ("bn", "gn", "ln"):
        records.save_results(tmp_path, Net(norm), hist, 0, "cpu", data)
    labels = lambda fig: [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any("[" in t for t in labels(records.save_comparison(tmp_path)))  # one kind of run: no labels
    path = tmp_path / "results_gn.json"
    res = json.loads(path.read_text())
    del res["kernels"]  # as a GPU run records it
    res["test_data_sha256"] = "0" * 64
    path.write_text(json.dumps(res))
    said = labels(records.save_comparison(tmp_path))
    assert any("Group Norm" in t and "[GPU, other data]" in t for t in said)
    assert any("Batch Norm" in t and "[CPU, " in t for t in said)


def test_cpu_facts_come_from_one_reader(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 fma\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu avx512f avx2\n")
    assert records.read_cpuinfo(info) == ("Test CPU", {"fpu", "avx2", "fma"})  # the first CPU's
    assert records.cpu_isa(info) == "AVX2"
    info.write_text("flags\t: fpu sse4_2 avx\n")
    assert records.cpu_isa(info) == "below AVX2"
    info.write_text("flags\t: fpu avx2 avx512f\n")
    assert records.cpu_isa(info) == "AVX-512"
    assert records.read_cpuinfo(tmp_path / "absent") == (None, None) and records.cpu_isa(tmp_path / "absent") is None
