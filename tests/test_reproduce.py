"""A rerun checks itself against the committed run of the same settings: every number of every epoch, the
evaluations after training and the weights. Files written since the commit never serve as the reference."""
import json
import math
import subprocess

import pytest
import torch

import records
import utils
from model import Net

CONFIG = {**Net("gn").config, "lr": 0.05}  # how the tiny runs below are built and trained
PINNED = {"pinned": True}  # this run's kernels, as a pinned run reports them
EPOCH_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")  # every number of an epoch's line


def run(data, seed=0, epochs=2, published=None, lr=CONFIG["lr"]):
    """A tiny GN run as the notebooks make it: the same seed gives the same bits in one process."""
    gen = utils.set_seed(seed)
    model = Net("gn")
    hist = utils.fit(model, data, epochs, batch_size=40, lr=lr, gen=gen, on_epoch=records.epoch_check(published))
    return model, hist


def evaluations(model, data):
    """The extra evaluations of a notebook run."""
    return {"test_acc_flip_tta": utils.test_flip_tta(model, data), "batch_stats_acc": utils.batch_stats_acc(
        model, data, sizes=(1, 4, 60)), "confusion": utils.confusion_matrix(model, data), "config": CONFIG}


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                   check=True, capture_output=True)


def publish(root, folder, data, weights=True):
    """Save a tiny pinned run into root/folder and commit it, as the published runs are."""
    model, hist = run(data)
    records.save_results(root / folder, model, hist, 0, "cpu", data, evaluations(model, data))
    path = root / folder / "results_gn.json"
    rewrite(path, lambda r: r.update(kernels={"pinned": True, "fingerprint": records.PIN_FINGERPRINT}))
    if not weights:
        (root / folder / "model_gn.pt").unlink()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "publish")
    return path


@pytest.fixture
def repo(data, tmp_path):
    """A git clone whose images/ holds a published, pinned run of seed 0, weights committed."""
    git(tmp_path, "init", "-q")
    publish(tmp_path, "images", data)
    return tmp_path


def rewrite(path, change, commit=False):
    res = json.loads(path.read_text())
    change(res)
    path.write_text(json.dumps(res))
    if commit:
        git(path.parents[1], "commit", "-q", "-am", "edit")


def published(data, root, **change):
    args = {"seed": 0, "config": CONFIG, "epochs": 2, "kernels": PINNED, **change}
    return records.published_run("gn", data=data, root=root, **args)


def verdict(data, ref, **kw):
    model, hist = run(data, published=ref, **kw)
    return records.reproduction(hist, model, data, evaluations(model, data), ref)


def test_a_rerun_with_the_same_settings_is_identical_bit_for_bit_and_writes_the_same_checkpoint(data, repo, capsys):
    ref = published(data, repo)
    assert ref["path"] == "images/results_gn.json" and ref["state_dict"] is not None
    model, hist = run(data, published=ref)
    out = capsys.readouterr().out
    assert out.count("  = published") == 2 and "differs" not in out
    extra = evaluations(model, data)
    extra["reproduction"] = records.reproduction(hist, model, data, extra, ref)
    assert extra["reproduction"] == {"published": "images/results_gn.json", "identical": True, "epoch": None,
                                     "part": None, "line": (
        "identical to the published run: all 2 epochs, the flip-TTA, batch-statistics and confusion evaluations "
        "and the weights, bit for bit")}
    committed = (repo / "images" / "model_gn.pt").read_bytes()
    records.save_results(repo / "images", model, hist, 0, "cpu", data, extra)
    assert (repo / "images" / "model_gn.pt").read_bytes() == committed  # same weights, same bytes


def test_a_results_file_edited_since_the_commit_is_not_the_reference(data, repo, capsys):
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"]["test_loss"].__setitem__(0, r["history"][
        "test_loss"][0] + 1e-3))
    ref = published(data, repo)
    out = capsys.readouterr().out
    assert "images/results_gn.json has changed since the last commit: comparing with the committed version" in out
    assert verdict(data, ref)["identical"] is True
    assert capsys.readouterr().out.count("  = published") == 2


def test_a_departing_rerun_saved_over_the_published_files_never_becomes_the_reference(data, repo, capsys):
    ref = published(data, repo)
    model, hist = run(data, lr=CONFIG["lr"] * (1 + 1e-7))  # another run, written where the published one lies
    extra = evaluations(model, data)
    extra["reproduction"] = records.reproduction(hist, model, data, extra, ref)
    assert extra["reproduction"]["identical"] is False
    records.save_results(repo / "images", model, hist, 0, "cpu", data, extra)
    again = published(data, repo)
    assert again["results"] == ref["results"]  # still the committed run
    model2, hist2 = run(data, lr=CONFIG["lr"] * (1 + 1e-7))
    assert records.reproduction(hist2, model2, data, evaluations(model2, data), again)["identical"] is False
    assert verdict(data, again)["identical"] is True


@pytest.mark.parametrize("key", EPOCH_KEYS)
def test_each_number_of_an_epoch_alone_makes_the_run_depart(data, repo, capsys, key):
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"][key].__setitem__(1, r["history"][key][1] + 1e-9),
            commit=True)
    ref = published(data, repo)
    model, hist = run(data, published=ref)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ") and " train loss " in l]
    assert lines[0].endswith("  = published")
    theirs = ref["results"]["history"][key][1]
    assert lines[1].endswith(f"  differs from published: {key} {hist[key][1]} against {theirs}")
    said = records.reproduction(hist, model, data, evaluations(model, data), ref)
    assert said["identical"] is False and said["epoch"] == 2
    assert said["line"] == (f"departs from the published run at epoch 2: {key} {hist[key][1]} against {theirs} "
                            f"(difference {hist[key][1] - theirs:+.6g})")


def test_the_seconds_are_not_compared(data, repo):
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"]["seconds"].__setitem__(0, 1e6), commit=True)
    assert verdict(data, published(data, repo))["identical"] is True


@pytest.mark.parametrize("change, name", [
    (lambda r: r.update(test_acc_flip_tta=r["test_acc_flip_tta"] + 1e-9), "test_acc_flip_tta"),
    (lambda r: r["batch_stats_acc"].update({"1": r["batch_stats_acc"]["1"] + 1e-9}), "batch_stats_acc[1]"),
    (lambda r: r["batch_stats_acc"].update({"60": r["batch_stats_acc"]["60"] + 1e-9}), "batch_stats_acc[60]"),
    (lambda r: r["confusion"][0].__setitem__(0, r["confusion"][0][0] + 1), "confusion"),
])
def test_each_evaluation_after_training_alone_makes_the_run_depart(data, repo, change, name):
    rewrite(repo / "images" / "results_gn.json", change, commit=True)
    said = verdict(data, published(data, repo))
    assert said["identical"] is False and said["epoch"] == 2 and said["part"] == "evaluations"
    assert said["line"].startswith(f"departs from the published run in the evaluations after training: {name} ")


def test_weights_that_differ_after_an_identical_history_are_caught(data, repo):
    ref = published(data, repo)
    ref["state_dict"]["C9.1.weight"][0] += 1e-6
    said = verdict(data, ref)
    assert said["identical"] is False and said["line"] == "departs from the published run in the weights after epoch 2"


def test_weights_outside_the_last_commit_are_compared_by_their_sha256(data, repo, capsys):
    publish(repo, "experiments/seed1", data, weights=False)
    rewrite(repo / "images" / "results_gn.json", lambda r: r.update(seed=5), commit=True)  # seed 0 now lives in seed1
    ref = published(data, repo)
    assert ref["path"] == "experiments/seed1/results_gn.json" and ref["state_dict"] is None
    assert verdict(data, ref)["line"] == ("identical to the published run: all 2 epochs, the flip-TTA, "
                                          "batch-statistics and confusion evaluations and the weights, bit for bit")
    ref["results"]["weights_sha256"] = "0" * 64  # as weights that differ with all else equal
    said = verdict(data, ref)
    assert said["identical"] is False and said["line"].startswith(
        "departs from the published run in the weights after epoch 2: sha256 ")


def test_a_stale_local_checkpoint_in_a_seed_folder_is_named_and_left_out(data, repo, capsys):
    publish(repo, "experiments/seed1", data, weights=False)
    rewrite(repo / "images" / "results_gn.json", lambda r: r.update(seed=5), commit=True)
    (repo / "experiments" / "seed1" / "model_gn.pt").write_bytes(b"a local rerun's weights, not committed")
    ref = published(data, repo)
    assert ref is not None and ref["state_dict"] is None
    assert ("experiments/seed1/model_gn.pt is a local file, not part of the published run: compared without it"
            in capsys.readouterr().out)


def test_an_older_file_is_compared_at_the_precision_it_holds_and_the_verdict_says_so(data, repo):
    def as_older_file(r):  # six decimals, batch statistics to two, no fingerprint, a sha256 of other bytes
        r["history"] = {k: [round(v, 6) for v in vs] for k, vs in r["history"].items()}
        r["batch_stats_acc"] = {k: round(v, 2) for k, v in r["batch_stats_acc"].items()}
        r["weights_sha256"] = "1" * 64
        del r["precision"], r["kernels"]["fingerprint"]
    rewrite(repo / "images" / "results_gn.json", as_older_file)
    (repo / "images" / "model_gn.pt").unlink()
    git(repo, "commit", "-q", "-am", "older")
    ref = published(data, repo)
    said = verdict(data, ref)
    assert said["identical"] is True and said["line"] == (
        "identical to the published run at the precision its file holds: all 2 epochs and the flip-TTA, "
        "batch-statistics and confusion evaluations (its history to 6 decimals, its batch-statistics accuracies "
        "to 2; its weights are not published and its older file records no reproducible sha256; it records no "
        "kernel fingerprint)")
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"]["train_loss"].__setitem__(
        0, r["history"]["train_loss"][0] + 2e-6), commit=True)  # a difference the six decimals hold
    assert verdict(data, published(data, repo))["epoch"] == 1


def test_a_run_that_stops_early_departs_where_it_stops(data, repo):
    ref = published(data, repo)
    model, hist = run(data)
    stopped = {k: v[:1] for k, v in hist.items()}  # as a run that diverged in epoch 1
    said = records.reproduction(stopped, model, data, evaluations(model, data), ref)
    assert said["epoch"] == 2 and said["line"].endswith("it ran 2 epochs, this run 1")


def test_a_null_in_the_published_history_departs_without_a_crash(data, repo):
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"]["test_loss"].__setitem__(1, None), commit=True)
    said = verdict(data, published(data, repo))
    assert said["epoch"] == 2 and "test_loss" in said["line"] and "against None" in said["line"]
    assert records.epoch_departs({k: [math.nan] for k in EPOCH_KEYS},
                                 {"results": {"history": {k: [None] for k in EPOCH_KEYS}}}, 1) is None  # both diverged


@pytest.mark.parametrize("change, why", [
    (dict(seed=1), "no published Group Norm run has seed 1"),
    (dict(config={**CONFIG, "lr": 0.1}), "this run differs from images/results_gn.json in lr 0.1 (published: 0.05)"),
    (dict(config={**CONFIG, "groups": 2}), "this run differs from images/results_gn.json in groups 2 (published: 4)"),
    (dict(epochs=3), "this run differs from images/results_gn.json in epochs 3 (published: 2)"),
    (dict(kernels={"pinned": False}), "this run's CPU kernels are not pinned to the published runs' (pin_cpu), so "
                                      "only its accuracy, not its digits, can match"),
    (dict(kernels={"gpu": "Fake GPU", "deterministic": True}), "a GPU run is never compared with the published "
                                                               "runs, which ran on a CPU (GPU kernels compute other last digits)"),
])
def test_other_settings_say_in_one_line_that_there_is_nothing_to_compare_with(data, repo, capsys, change, why):
    assert published(data, repo, **change) is None
    assert capsys.readouterr().out == f"nothing to compare with: {why}\n"


def test_other_data_say_so_before_the_settings(data, repo, capsys):
    other = utils.load_cifar10(data.source.split()[-1], train_subset=100)
    assert published(other, repo, config={**CONFIG, "lr": 0.1}) is None
    assert capsys.readouterr().out == ("nothing to compare with: this run's images differ from those of "
                                       "images/results_gn.json (another copy of CIFAR-10, or a subset), and only runs "
                                       "on the same images can match\n")


@pytest.mark.parametrize("change, why", [
    (lambda r: r["kernels"].update(pinned=False), "does not record the pinned kernels"),
    (lambda r: r["kernels"].update(fingerprint="0" * 16), "does not record the pinned kernels"),
    (lambda r: r.update(reproduction={"identical": False, "part": "history", "line": "departs ..."}),
     "records that its training departed from its own published run"),
    (lambda r: r.update(reproduction={"identical": False, "line": "departs from the published run in the weights"}),
     "records that its training departed from its own published run"),
])
def test_a_published_run_that_is_no_reference_is_refused_in_one_line(data, repo, capsys, change, why):
    rewrite(repo / "images" / "results_gn.json", change, commit=True)
    assert published(data, repo) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("nothing to compare with: images/results_gn.json ") and why in out


def test_without_git_nothing_is_compared_and_the_line_says_why(data, repo, capsys):
    import shutil
    shutil.rmtree(repo / ".git")
    assert published(data, repo) is None
    out = capsys.readouterr().out
    assert out.startswith("nothing to compare with: ") and "is not a git clone" in out and out.count("\n") == 1


def test_the_verdict_is_recorded_in_the_results_file(data, repo, tmp_path):
    ref = published(data, repo)
    model, hist = run(data)
    extra = {**evaluations(model, data)}
    extra["reproduction"] = records.reproduction(hist, model, data, extra, ref)
    res = records.save_results(tmp_path / "rerun", model, hist, 0, "cpu", data, extra)
    saved = json.loads((tmp_path / "rerun" / "results_gn.json").read_text())
    assert saved["reproduction"]["identical"] is True and saved["reproduction"] == res["reproduction"]
    assert torch.equal(records.load_model(tmp_path / "rerun" / "model_gn.pt").C1[0].weight, model.C1[0].weight)


def test_a_run_that_departed_only_in_the_evaluations_after_training_can_be_the_next_reference(data, repo):
    """Its training repeated its reference; only an evaluation (computed by newer code, say) differed."""
    for recorded in ({"identical": False, "epoch": 2, "part": "evaluations", "line": "departs ..."},
                     {"identical": False, "epoch": 2, "line": "departs from the published run in the evaluations "
                                                              "after training: batch_stats_acc[64] 81.78 against 81.76"}):
        rewrite(repo / "images" / "results_gn.json", lambda r: r.update(reproduction=recorded), commit=True)
        assert verdict(data, published(data, repo))["identical"] is True
