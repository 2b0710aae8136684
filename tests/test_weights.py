"""Saved models: the weights round-trip, the committed ones rebuild the published networks, and
`python report.py --check` tells a wrong results file from another copy of the data."""
import json
import math
import subprocess
import sys

import pytest
import torch

import report
import records
import utils
from conftest import ROOT, jiggled
from model import Net, count_params

NORMS = ("bn", "gn", "ln")


def notebook_defaults(norm):
    """The parameters cell of S8_<NORM>.ipynb as a dict: what a run with its defaults builds."""
    import nbformat
    cell = next(c for c in nbformat.read(ROOT / f"S8_{norm.upper()}.ipynb", as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    params = {}
    exec(cell.source, {}, params)  # plain assignments only (checked by test_notebooks)
    return params


@pytest.mark.parametrize("norm", NORMS)
def test_committed_weights_rebuild_the_published_model(norm):
    res = records.load_results(report.IMAGES)[norm]
    ckpt = torch.load(report.IMAGES / f"model_{norm}.pt", weights_only=True)
    state = ckpt.get("state_dict", ckpt)  # older checkpoints are a bare state_dict
    model = Net(**records.net_settings(res))
    model.load_state_dict(state)  # strict: every tensor has its place and shape
    assert count_params(model) == res["params"] < 50_000
    assert records.load_model(report.IMAGES / f"model_{norm}.pt").training is False
    assert len(res["test_data_sha256"]) == 64 and len(res["mean"]) == len(res["std"]) == 3


@pytest.mark.parametrize("norm", NORMS)
def test_the_notebook_defaults_still_build_the_committed_models(norm):
    """Net's defaults and the notebooks' parameters, as they are now, against the committed weights."""
    p = notebook_defaults(norm)
    model = Net(p["norm"], p["groups"], p["widths"], norm_1x1=p["norm_1x1"], block=p["block"], residual=p["residual"])
    committed = records.load_model(report.IMAGES / f"model_{norm}.pt")
    model.load_state_dict(committed.state_dict())  # strict: same layers, same shapes
    assert [type(m) for m in model.modules()] == [type(m) for m in committed.modules()]
    assert (p["norm"], model.residual, count_params(model)) == (norm, committed.residual, count_params(committed))


def trained(data, tmp_path, norm="gn"):
    """A 1-epoch model and its results, saved as the notebooks save them."""
    gen = utils.set_seed(0)
    model = Net(norm)
    hist = utils.fit(model, data, 1, batch_size=40, lr=0.05, gen=gen)
    res = records.save_results(tmp_path, model, hist, 0, "cpu", data, {"config": {"groups": 4, "norm_1x1": False}})
    return model, res


def test_weights_round_trip_to_identical_outputs(data, tmp_path):
    model, _ = trained(data, tmp_path, "bn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_bn.pt", "results_bn.json"]  # no temp files
    loaded = records.load_model(tmp_path / "model_bn.pt")
    assert not loaded.training
    x = data.normalize(data.x_test)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    ckpt = torch.load(tmp_path / "model_bn.pt", weights_only=True)  # plain tensors, lists and strings
    assert ckpt["net"] == {"norm": "bn", "groups": None, "widths": [16, 24, 32], "num_classes": 10, "norm_1x1": False,
                           "block": "full", "residual": True} and ckpt["mean"] == data.mean.flatten().tolist()
    plain = Net("bn")
    plain.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), model(x))


def test_a_checkpoint_says_how_its_net_was_built(data, tmp_path):
    trained(data, tmp_path, "bn")
    (tmp_path / "results_bn.json").unlink()
    assert records.load_model(tmp_path / "model_bn.pt").C1[1].__class__.__name__ == "BatchNorm2d"


def test_a_bare_state_dict_without_its_results_file_says_what_is_missing(data, tmp_path):
    model, _ = trained(data, tmp_path)
    (tmp_path / "results_gn.json").unlink()
    torch.save(model.state_dict(), tmp_path / "model_gn.pt")  # as saved before checkpoints held their config
    with pytest.raises(FileNotFoundError, match="results_gn.json"):
        records.load_model(tmp_path / "model_gn.pt")


def test_weights_and_results_of_different_runs_are_refused(data, tmp_path):
    """An interrupted save can leave new weights beside an old results file: loading must not go on silently."""
    trained(data, tmp_path)
    edit_results(tmp_path, "gn", config={"groups": 4, "norm_1x1": False, "residual": False})
    with pytest.raises(ValueError, match="come from different runs"):
        records.load_model(tmp_path / "model_gn.pt")
    other = tmp_path / "other"
    trained(data, other)
    edit_results(other, "gn", weights_sha256="0" * 64)  # same config, other weights
    with pytest.raises(ValueError, match="is not the file its results file describes") as e:
        records.load_model(other / "model_gn.pt")
    assert "the weights say" not in str(e.value)  # no two identical configs printed as if they differed


@pytest.mark.parametrize("net, config", [
    (dict(norm="gn", groups=2, residual=False), {"norm_1x1": False}),  # groups and residual change no shape
    (dict(norm="ln", widths=(8, 16, 24), block="separable"), {}),
])
def test_a_checkpoint_records_the_model_it_holds_not_what_the_caller_says(data, tmp_path, net, config):
    model = jiggled(Net(**net))
    hist = {"train_loss": [1.0], "train_acc": [50.0], "test_loss": [1.0], "test_acc": [50.0], "lr": [0.1], "seconds": [1.0]}
    records.save_results(tmp_path, model, hist, 0, "cpu", data, {"config": config})
    loaded = records.load_model(tmp_path / f"model_{net['norm']}.pt")
    assert loaded.config == model.config
    x = data.normalize(data.x_test)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_the_results_file_records_the_model_s_own_settings_over_the_caller_s(data, tmp_path):
    hist = {"train_loss": [1.0], "train_acc": [50.0], "test_loss": [1.0], "test_acc": [50.0], "lr": [0.1], "seconds": [1.0]}
    res = records.save_results(tmp_path, Net("gn", groups=2, residual=False), hist, 0, "cpu", data,
                               {"config": {"groups": 4, "residual": True, "lr": 0.1}})
    assert (res["config"]["groups"], res["config"]["residual"], res["config"]["lr"]) == (2, False, 0.1)
    assert records.net_settings(res) == records.load_model(tmp_path / "model_gn.pt").config


def test_a_diverged_run_writes_strict_json_and_reads_back_nan(data, tmp_path):
    hist = {"train_loss": [2.0, float("nan")], "train_acc": [40.0, 10.0], "test_loss": [1.9, float("inf")],
            "test_acc": [50.0, 10.0], "lr": [0.1, 0.2], "seconds": [60.0, 30.0]}
    records.save_results(tmp_path, Net("gn"), hist, 0, "cpu", data)
    text = (tmp_path / "results_gn.json").read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert strict["history"]["train_loss"] == [2.0, None] and strict["history"]["test_loss"] == [1.9, None]
    back = records.load_results(tmp_path)["gn"]["history"]
    assert back["train_loss"][0] == 2.0 and math.isnan(back["train_loss"][1]) and math.isnan(back["test_loss"][1])


def test_the_fingerprint_tells_copies_of_the_test_set_apart(data):
    digest = records.data_sha256(data)
    assert digest == records.data_sha256(data)
    data.x_test[0, 0, 0, 0] ^= 1  # one pixel, one bit
    assert records.data_sha256(data) != digest


def edit_results(folder, norm, **changes):
    path = folder / f"results_{norm}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_check_agrees_on_the_same_data_and_fails_on_a_wrong_results_file(data, image_folder, tmp_path, capsys):
    _, res = trained(data, tmp_path)
    assert report.check(image_folder, tmp_path) == 0
    out = capsys.readouterr().out
    assert f"data: image folder {image_folder}" in out and "agrees (same test images)" in out
    assert f"{res['test_acc']:.2f}" in out
    edit_results(tmp_path, "gn", test_acc=res["test_acc"] + 5)
    assert report.check(image_folder, tmp_path) == 1
    assert "ERROR: same test images, different accuracy" in capsys.readouterr().out


def test_check_reports_another_copy_of_the_data_as_information(data, image_folder, tmp_path, capsys):
    _, res = trained(data, tmp_path)
    edit_results(tmp_path, "gn", test_acc=res["test_acc"] + 5, test_data_sha256="0" * 64)
    assert report.check(image_folder, tmp_path) == 0
    out = capsys.readouterr().out
    assert "another copy of the test images" in out and "ERROR" not in out and "-5.00" in out


def test_check_fails_on_a_missing_model_or_the_wrong_size(data, image_folder, tmp_path, capsys):
    _, res = trained(data, tmp_path)
    edit_results(tmp_path, "gn", params=res["params"] + 1)
    assert report.check(image_folder, tmp_path) == 1
    assert "ERROR" in capsys.readouterr().out
    (tmp_path / "model_gn.pt").unlink()
    assert report.check(image_folder, tmp_path) == 1
    assert "model_gn.pt is missing" in capsys.readouterr().out
    assert report.check(image_folder, tmp_path / "nothing") == 1


def test_check_is_the_command_line_exit_status(data, image_folder, tmp_path):
    trained(data, tmp_path)
    edit_results(tmp_path, "gn", test_acc=101.0)
    proc = subprocess.run([sys.executable, "report.py", "--check", "--folder", str(tmp_path), "--data-root",
                           str(image_folder)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "ERROR" in proc.stdout


def test_check_without_data_says_what_to_do(tmp_path):
    trained_dir = tmp_path / "images"
    trained_dir.mkdir()
    (trained_dir / "results_gn.json").write_text(json.dumps({"norm": "gn", "test_acc": 80.0}))
    offline = ("from torchvision.datasets import CIFAR10; "  # no internet: the download fails as it does offline
               "CIFAR10.download = lambda *a, **k: (_ for _ in ()).throw(OSError('offline')); ")
    proc = subprocess.run([sys.executable, "-c", "import sys, runpy; " + offline +
                           "sys.argv = ['report.py', '--check', '--folder', sys.argv[1], '--data-root', sys.argv[2]]; "
                           "runpy.run_path('report.py', run_name='__main__')",
                           str(trained_dir), str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "could not load CIFAR-10" in proc.stderr and "Fix:" in proc.stderr


def test_check_fails_on_weights_from_another_run(data, image_folder, tmp_path, capsys):
    trained(data, tmp_path)
    edit_results(tmp_path, "gn", weights_sha256="0" * 64)
    assert report.check(image_folder, tmp_path) == 1
    assert "ERROR: model_gn.pt in " in capsys.readouterr().out


def another_zip():
    """A zip archive that is no torch checkpoint: torch.load raises its own RuntimeError on it."""
    import io
    import zipfile
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("notes.txt", "not weights")
    return raw.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "not a pickle", "another zip"])
def test_check_goes_on_past_a_broken_file_and_checks_the_others(data, image_folder, tmp_path, capsys, damage):
    trained(data, tmp_path, "gn")
    trained(data, tmp_path, "ln")
    pt = tmp_path / "model_gn.pt"
    pt.write_bytes({"truncated": pt.read_bytes()[:500], "not a pickle": b"\x80\x04not a checkpoint at all",
                    "another zip": another_zip()}[damage])
    assert report.check(image_folder, tmp_path) == 1
    out = capsys.readouterr().out
    gn = next(line for line in out.splitlines() if line.startswith("Group Norm"))
    assert "ERROR: model_gn.pt cannot be read" in gn
    assert "agrees (same test images)" in next(line for line in out.splitlines() if line.startswith("Layer Norm"))


def test_new_weights_beside_an_old_results_file_are_refused(data, tmp_path):
    """The interruption the pair guards against: a run's weights renamed in, its results file not yet."""
    import hashlib
    _, res = trained(data, tmp_path)
    path = tmp_path / "model_gn.pt"
    assert res["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["C10.bias"] += 1  # the same network, other weights
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="not the file its results file describes"):
        records.load_model(path)


def test_on_a_gpu_only_the_images_whose_top_two_logits_nearly_tie_may_flip():
    logits = torch.tensor([[1.0, 1.0005, 0.0], [2.0, 0.0, 1.0], [0.3, 0.3, 0.3]])
    assert report.near_ties(logits, 1e-3) == [0, 2] and report.near_ties(logits, 1e-4) == [2]
    assert report.within_ties(0.02, [5, 9], 10_000) and report.within_ties(-0.01, [5], 10_000)
    assert not report.within_ties(0.03, [5, 9], 10_000) and not report.within_ties(0.01, [], 10_000)
