"""A rerun checks itself against the published run of the same settings: epoch by epoch, then the weights."""
import json

import pytest
import torch

import utils
from model import Net

CONFIG = {"groups": 4, "widths": [16, 24, 32], "block": "full", "norm_1x1": False, "residual": True, "lr": 0.05}
PINNED = {"pinned": True}


def run(data, seed=0, epochs=2, published=None):
    """A tiny GN run as the notebooks make it: the same seed gives the same bits in one process."""
    gen = utils.set_seed(seed)
    model = Net("gn")
    hist = utils.fit(model, data, epochs, batch_size=40, lr=CONFIG["lr"], gen=gen, published=published)
    return model, hist


@pytest.fixture
def repo(data, tmp_path):
    """A repository whose images/ holds a published, pinned run of seed 0."""
    model, hist = run(data)
    utils.save_results(tmp_path / "images", model, hist, 0, "cpu", data, {"config": CONFIG})
    path = tmp_path / "images" / "results_gn.json"
    res = json.loads(path.read_text())
    res["kernels"]["pinned"] = True  # as a pinned run records it
    path.write_text(json.dumps(res))
    return tmp_path


def rewrite(path, change):
    res = json.loads(path.read_text())
    change(res)
    path.write_text(json.dumps(res))


def test_a_rerun_with_the_same_settings_is_identical_epoch_by_epoch_and_in_the_weights(data, repo, capsys):
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    assert published["path"] == "images/results_gn.json" and published["state_dict"] is not None
    model, hist = run(data, published=published)
    out = capsys.readouterr().out
    assert out.count("  = published") == 2 and "differs" not in out
    verdict = utils.reproduction(hist, model, published)
    assert verdict == {"published": "images/results_gn.json", "identical": True, "epoch": None,
                       "line": "identical to the published run: all 2 epochs and the weights, bit for bit"}


def test_a_history_that_departs_at_epoch_2_is_named_with_the_size_of_the_difference(data, repo, capsys):
    rewrite(repo / "images" / "results_gn.json", lambda r: r["history"]["test_loss"].__setitem__(1, 9.5))
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    model, hist = run(data, published=published)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ") and " train loss " in l]
    assert lines[0].endswith("  = published")
    assert lines[1].endswith(f"  differs from published: test_loss {hist['test_loss'][1]} against 9.5")
    verdict = utils.reproduction(hist, model, published)
    assert verdict["identical"] is False and verdict["epoch"] == 2
    assert verdict["line"] == (f"departs from the published run at epoch 2: test_loss {hist['test_loss'][1]} "
                               f"against 9.5 (difference {hist['test_loss'][1] - 9.5:+.6g})")


def test_the_first_epoch_that_departs_is_named_not_a_later_one(data, repo):
    def change(r):
        r["history"]["train_acc"][0] += 1
        r["history"]["lr"][1] += 1
    rewrite(repo / "images" / "results_gn.json", change)
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    model, hist = run(data)
    assert utils.reproduction(hist, model, published)["epoch"] == 1


def test_weights_that_differ_after_an_identical_history_are_caught(data, repo):
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    model, hist = run(data)
    published["state_dict"]["C9.1.weight"][0] += 1e-6
    verdict = utils.reproduction(hist, model, published)
    assert verdict["identical"] is False and verdict["epoch"] == 2
    assert verdict["line"].startswith("departs from the published run in the weights after epoch 2: largest")


def test_a_run_that_stops_early_departs_where_it_stops(data, repo):
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    model, hist = run(data)
    stopped = {k: v[:1] for k, v in hist.items()}  # as a run that diverged in epoch 1
    verdict = utils.reproduction(stopped, model, published)
    assert verdict["epoch"] == 2 and verdict["line"].endswith("it ran 2 epochs, this run 1")


@pytest.mark.parametrize("change, why", [
    (dict(seed=1), "no published Group Norm run has seed 1"),
    (dict(config={**CONFIG, "lr": 0.1}), "this run differs from images/results_gn.json in lr 0.1 (published: 0.05)"),
    (dict(epochs=3), "this run differs from images/results_gn.json in epochs"),
    (dict(kernels={"pinned": False}), "this run's kernels are not pinned"),
])
def test_other_settings_say_in_one_line_that_there_is_nothing_to_compare_with(data, repo, capsys, change, why):
    args = {"seed": 0, "config": CONFIG, "epochs": 2, "kernels": PINNED, **change}
    assert utils.published_run("gn", data=data, root=repo, **args) is None
    assert capsys.readouterr().out == f"nothing to compare with: {why}\n"


def test_other_data_or_an_unpinned_published_run_is_nothing_to_compare_with(data, repo, capsys):
    other = utils.load_cifar10(data.source.split()[-1], train_subset=100)
    assert utils.published_run("gn", 0, CONFIG, 2, other, PINNED, root=repo) is None
    assert capsys.readouterr().out == "nothing to compare with: this run differs from images/results_gn.json in mean, std\n"
    rewrite(repo / "images" / "results_gn.json", lambda r: r["kernels"].update(pinned=False))
    assert utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo) is None
    assert "images/results_gn.json does not record pinned kernels" in capsys.readouterr().out


def test_a_published_seed_is_found_in_the_seed_folders_without_weights(data, repo):
    seed_dir = repo / "experiments" / "seed1"
    (repo / "images" / "results_gn.json").rename(repo / "experiments.json")
    seed_dir.mkdir(parents=True)
    (repo / "experiments.json").rename(seed_dir / "results_gn.json")
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    assert published["path"] == "experiments/seed1/results_gn.json" and published["state_dict"] is None
    model, hist = run(data)
    assert utils.reproduction(hist, model, published)["line"] == (
        "identical to the published run: all 2 epochs, bit for bit (its weights are not published)")


def test_the_verdict_is_recorded_in_the_results_file(data, repo, tmp_path):
    published = utils.published_run("gn", 0, CONFIG, 2, data, PINNED, root=repo)
    model, hist = run(data)
    extra = {"config": CONFIG, "reproduction": utils.reproduction(hist, model, published)}
    res = utils.save_results(tmp_path / "rerun", model, hist, 0, "cpu", data, extra)
    saved = json.loads((tmp_path / "rerun" / "results_gn.json").read_text())
    assert saved["reproduction"]["identical"] is True and saved["reproduction"] == res["reproduction"]
    assert torch.equal(utils.load_model(tmp_path / "rerun" / "model_gn.pt").C1[0].weight, model.C1[0].weight)
