import json
import urllib.error

import pytest
import torch

import utils
from conftest import make_image_folder
from model import Net, count_params


# ----------------------------------------------------------------------------- data

def test_loads_an_image_folder(data):
    assert data.x_train.shape == (120, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (60, 3, 32, 32)
    assert data.classes == utils.CLASSES
    assert torch.equal(data.y_train.bincount(), torch.full((10,), 12))
    assert "image folder" in data.source


def test_normalizes_with_train_statistics(data):
    x = data.normalize(data.x_train)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert torch.allclose(data.denormalize(x) * 255, data.x_train.float(), atol=1e-2)


def test_subsets_are_seeded_and_sized(image_folder):
    a = utils.load_cifar10(image_folder, train_subset=30, test_subset=20, seed=1)
    b = utils.load_cifar10(image_folder, train_subset=30, test_subset=20, seed=1)
    assert len(a.y_train) == 30 and len(a.y_test) == 20
    assert torch.equal(a.y_train, b.y_train)
    with pytest.raises(ValueError, match="only 120"):
        utils.load_cifar10(image_folder, train_subset=500)


@pytest.fixture
def offline(monkeypatch):
    """torchvision's download fails as it does without a network."""
    from torchvision.datasets import CIFAR10

    def no_network(self, *a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(CIFAR10, "download", no_network)


def test_missing_folder_offline_says_what_was_tried_and_the_fix(tmp_path, offline):
    root = tmp_path / "nowhere" / "cifar10"
    with pytest.raises(RuntimeError) as e:
        utils.load_cifar10(root)
    msg = str(e.value)
    assert "image folder" in msg and "torchvision" in msg and "name resolution" in msg
    assert "cifar10-jpeg.zip" in msg and "data_root" in msg
    assert not root.exists()  # the failed download left nothing behind


def test_empty_or_partial_folders_raise_clearly(tmp_path, offline):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(RuntimeError, match="no class folders"):
        utils.load_cifar10(tmp_path / "empty")
    partial = make_image_folder(tmp_path / "partial", n_train=2, n_test=1)
    for f in (partial / "test" / "cat").iterdir():
        f.unlink()
    with pytest.raises(RuntimeError, match="holds no .jpg/.png images"):
        utils.load_cifar10(partial)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["test", "train"]


# ----------------------------------------------------------------------------- augmentation

def augmented(x, idx, pad, seed):
    return utils.augment(utils.crop_table(x, pad), idx, pad, torch.Generator().manual_seed(seed))


def test_augment_draws_per_image_and_keeps_shape_and_values():
    x = torch.arange(32 * 32, dtype=torch.int32).view(1, 1, 32, 32).repeat(64, 3, 1, 1)
    out = augmented(x, torch.arange(64), 4, seed=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert set(out.unique().tolist()) <= set(x.unique().tolist())  # pixels moved, never invented
    distinct = {tuple(img[0, :, 16].tolist()) + tuple(img[0, 16].tolist()) for img in out}
    assert len(distinct) > 20  # images of one batch got different crops
    flipped = [bool(img[0, 10, 11] < img[0, 10, 10]) for img in out]  # columns run backwards
    assert 10 < sum(flipped) < 54  # some flipped, some not
    assert torch.equal(out[:, 0], out[:, 1])  # one crop per image, shared by its channels


def test_augment_without_shift_only_flips_the_chosen_images():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    idx = torch.tensor([5, 0, 5, 11])
    out = augmented(x, idx, 0, seed=0)
    assert out.shape == (4, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    for a, i in zip(out, idx):
        assert torch.equal(a, x[i]) or torch.equal(a, x[i].flip(2))


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_augment_is_a_reflect_padded_crop_then_a_flip_with_its_own_draws(pad):
    x = torch.randn(16, 3, 32, 32)
    idx = torch.tensor([3, 3, 0, 15, 7, 9, 9, 1])
    out = augmented(x, idx, pad, seed=3)
    gen = torch.Generator().manual_seed(3)  # the draws augment makes, in its order
    dy = torch.randint(-pad, pad + 1, (8,), generator=gen)
    dx = torch.randint(-pad, pad + 1, (8,), generator=gen)
    flip = torch.rand(8, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect")
    for k, i in enumerate(idx):  # the per-image loop the gather replaces
        crop = padded[i, :, pad + dy[k]:pad + dy[k] + 32, pad + dx[k]:pad + dx[k] + 32]
        assert torch.equal(out[k], crop.flip(2) if flip[k] else crop), k


def test_crop_table_rejects_a_pad_reflection_cannot_fill():
    with pytest.raises(ValueError, match="pad=32 must be in"):
        utils.crop_table(torch.zeros(1, 3, 32, 32), 32)


def test_train_batch_normalizes_once_and_matches_normalize(data):
    gen = torch.Generator().manual_seed(0)
    x, y = utils.train_batch(data, torch.arange(12), 0, gen)
    assert list(data.tables) == [0]  # cached: later epochs reuse it
    for a, b in zip(x, data.normalize(data.x_train[:12])):
        assert torch.equal(a, b) or torch.equal(a, b.flip(2))
    assert torch.equal(y, data.y_train[:12])


# ----------------------------------------------------------------------------- training

def run(data, seed, epochs=3, norm="bn"):
    gen = utils.set_seed(seed)
    model = Net(norm)
    return model, utils.fit(model, data, epochs, batch_size=32, lr=0.05, gen=gen)


def test_training_lowers_the_loss(data):
    _, hist = run(data, seed=0, epochs=4)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["test_loss"][-1] < hist["test_loss"][0]
    assert hist["test_acc"][-1] > 30  # 10 classes, chance is 10%
    assert set(hist) == {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
    assert len(hist["lr"]) == 4 and max(hist["lr"]) > hist["lr"][0]  # the one-cycle warm-up


def test_same_seed_same_numbers(data):
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    _, a = run(data, seed=3, epochs=2, norm="gn")
    _, b = run(data, seed=3, epochs=2, norm="gn")
    _, c = run(data, seed=4, epochs=2, norm="gn")
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_too_small_a_train_set_is_refused(image_folder):
    small = utils.load_cifar10(image_folder, train_subset=10)
    with pytest.raises(ValueError, match="fewer than one batch"):
        utils.fit(Net("bn"), small, 1, batch_size=32, lr=0.1, gen=utils.set_seed(0))


def test_whiten_init_is_seeded_and_keeps_c1_trainable(data):
    a, b = Net("bn"), Net("bn")
    utils.whiten_init(a, data, n=64, seed=0)
    utils.whiten_init(b, data, n=64, seed=0)
    assert torch.equal(a.C1[0].weight, b.C1[0].weight)
    assert not torch.equal(a.C1[0].weight, Net("bn").C1[0].weight)
    utils.whiten_init(b, data, n=64, seed=1)  # other images, other patch statistics
    assert not torch.equal(a.C1[0].weight, b.C1[0].weight)
    assert a.C1[0].weight.requires_grad and count_params(a) == count_params(Net("bn"))


# ----------------------------------------------------------------------------- results and figures

def test_results_and_figures_are_written(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    res = utils.save_results(tmp_path, model, hist, 0, "cpu", data)
    saved = json.loads((tmp_path / "results_bn.json").read_text())
    assert saved == res
    for key in ("norm", "params", "epochs", "train_acc", "test_acc", "history", "seed", "device", "data", "torch"):
        assert key in saved
    assert saved["test_acc"] == hist["test_acc"][-1] and saved["params"] < 50_000
    utils.plot_curves(hist, "bn", tmp_path)
    utils.plot_misclassified(model, data, "bn", tmp_path)
    assert utils.plot_comparison(tmp_path) is None  # gn and ln have no results yet
    for norm in ("gn", "ln"):
        model.norm = norm
        utils.save_results(tmp_path, model, hist, 0, "cpu", data)
    assert utils.plot_comparison(tmp_path) is not None
    names = {p.name for p in tmp_path.iterdir()}
    assert {"curves_bn.png", "misclassified_bn.png", "comparison.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    for png in ("curves_bn.png", "misclassified_bn.png", "comparison.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_misclassified_are_really_wrong_and_drawn_from_all_mistakes(data):
    model, _ = run(data, seed=0, epochs=1)
    idx, pred = utils.misclassified(model, data)
    assert 0 < len(idx) <= 10
    assert (pred != data.y_test[idx]).all()
    wrong = (utils.predict(model, data.x_test, data).argmax(1) != data.y_test).nonzero().flatten()
    assert torch.equal(idx, utils.misclassified(model, data)[0])  # seeded: same pick every call
    if len(wrong) > 20:  # the test split is stored sorted by class: not just the first ten
        assert not torch.equal(idx, wrong[:10])
        assert not torch.equal(idx, utils.misclassified(model, data, seed=1)[0])


def test_interrupted_write_leaves_no_file(tmp_path):
    def crash(path):
        open(path, "w").write("{half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        utils._atomic_write(tmp_path / "results_bn.json", crash)
    assert list(tmp_path.iterdir()) == []


def test_readme_table_comes_from_the_results(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    utils.save_results(tmp_path, model, hist, 0, "cpu", data, extra={"test_acc_flip_tta": 12.5})
    readme = tmp_path / "README.md"
    second = dict(hist, test_acc=hist["test_acc"][:-1] + [hist["test_acc"][-1] - 1.25])
    utils.save_results(tmp_path / utils.SEED_DIR, model, second, 1, "cpu", data)
    names = ("results", "norm-tables", "architecture", "findings", "hardware", "speed", "norm-speed", "seeds", "tuning",
             "small-batch", "blocks", "separable-results", "separable-architecture")
    readme.write_text("intro\n" + "".join(f"<!-- {n}:start -->\nSTALE\n<!-- {n}:end -->\n" for n in names) + "rest\n")
    utils.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert "| 0 |" in text and "| 1 |" in text and "| -1.25 |" in text  # seeds, from both folders
    assert "STALE" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert f"**{hist['test_acc'][-1]:.2f}**" in text and "12.50" in text
    assert "| **total** | | | | | **47,818** |" in text  # architecture, from model.py
    assert f"| final test acc % | {hist['test_acc'][-1]:.2f} |" in text  # findings
    assert "| Batch Norm | full 3x3 | 16/24/32 |" in text and "depthwise" not in text  # none yet
    assert text.count("No runs with separable C blocks yet") == 2
    assert "No small-batch runs yet" in text
    assert "| mean | 2.833 |" in text  # the worked example
    with pytest.raises(ValueError, match="markers"):
        utils.replace_between("no markers", "results", "x")


def test_speed_table_comes_from_the_benchmark_file(tmp_path):
    bench = {"machine": "CPU: test", "data_speedup": 30.4, "train_speedup": 1.78, "eval_speedup": 1.77,
             "data_s_conventional": 7.67, "data_s_ours": 0.253, "data_s_ours_epoch": 0.153, "data_s_ours_setup": 2.0,
             "data_s_ours_epoch_in_training": 0.422, "data_speedup_in_training": 14.7, "epochs": 20,
             "train_ips_conventional": 603, "train_ips_ours": 1073, "eval_ips_conventional": 2142,
             "eval_ips_ours": 3788, "eval_gflops_ours": 69.3, "conventional_workers": 2, "train_ips_fused": 1105}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    table = utils.speed_table(tmp_path)
    assert "Machine: CPU: test." in table and "| **30.4x** |" in table and "| **1.78x** |" in table
    assert "| 0.422 s per epoch + the same setup share | 14.7x |" in table
    assert "| 2.15 s | 3.6x |" in table  # one epoch paying all of the setup: 7.67 / (0.153 + 2.0)
    assert "fused SGD instead of foreach, images/s | | 1,105 | 1.03x vs ours |" in table
    assert "torch.compile" not in table  # variants appear only when measured


def test_norm_speed_table_compares_within_rounds(tmp_path):
    assert "No benchmark yet" in utils.norm_speed_table(tmp_path)
    bench = {"machine": "CPU: test", "batch_size": 128, "steps": 40, "eval_images": 5000, "rounds": 3,
             "models": {"bn": {"norm": "bn", "norm_1x1": True}, "gn": {"norm": "gn", "norm_1x1": False},
                        "gn_sep": {"norm": "gn", "norm_1x1": False, "block": "separable", "widths": [32, 48, 96]}},
             # the machine halves its speed in round 2; GN is always 4/5 of BN's speed in training,
             # separable GN half of GN's
             "train_ips": {"bn": [1000, 500, 1000], "gn": [800, 400, 800], "gn_sep": [400, 200, 400]},
             "eval_ips": {"bn": [3000, 1500, 3000], "gn": [3000, 1500, 2000], "gn_sep": [1000, 1000, 1000]}}
    (tmp_path / "bench_norms.json").write_text(json.dumps(bench))
    table = utils.norm_speed_table(tmp_path)
    assert "CPU: test; 3 rounds" in table and "40 training steps of batch 128 and 5,000 test images" in table
    assert ("| Batch Norm (as in its notebook) | full 3x3 | norm + GELU | 1,000 (500-1,000) | 1.00x | 3,000 | 1.00x "
            "|  |") in table
    assert "| Group Norm (as in its notebook) | full 3x3 | plain | 800 (400-800) | 1.25x | 2,000 | 1.00x |  |" in table
    assert ("| Group Norm (as in its notebook) | depthwise-separable | plain | 400 (200-400) | 2.50x | 1,000 | 3.00x "
            "| 2.00x / 2.00x |") in table  # eval ratios per round: 3, 1.5, 2 -> median 2


def test_architecture_table_builds_each_variant_as_its_run_did(data, tmp_path):
    model, hist = run(data, seed=0, epochs=1)
    utils.save_results(tmp_path, model, hist, 0, "cpu", data, extra={"config": {"groups": 4, "norm_1x1": True}})
    table = utils.layer_table(out_dir=tmp_path)
    bn, plain = count_params(Net("bn", norm_1x1=True)), count_params(Net("gn"))
    assert bn > plain and f"| **total** | | | | | **{bn:,}** | **{plain:,}** | **{plain:,}** |" in table
    assert "| c3 | 1x1 conv (+ norm, GELU in BN) | 16→24 |" in table


def test_progress_keeps_one_clean_line_per_bar(capsys):
    for _ in utils.progress(range(50), "epoch  1", 50):
        pass
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\r" not in out and "50/50" in out


@pytest.mark.parametrize("norm", ["gn", "ln"])
def test_batch_statistics_do_not_matter_to_per_image_norms(data, norm):
    model, _ = run(data, seed=0, epochs=2, norm=norm)
    acc = utils.batch_stats_acc(model, data, sizes=(1, 7, 60))
    assert acc["1"] == acc["7"] == acc["60"] == round(utils.test(model, data)[1], 2)


def test_batch_statistics_leave_the_bn_model_untouched(data):
    model, _ = run(data, seed=0, epochs=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc = utils.batch_stats_acc(model, data, sizes=(1, 60))
    assert set(acc) == {"1", "60"} and all(0 <= a <= 100 for a in acc.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batch_statistics_use_random_batches_not_stored_order(data, monkeypatch):
    model, _ = run(data, seed=0, epochs=1)
    seen = []
    monkeypatch.setattr(data, "normalize", lambda x: seen.append(x.clone()) or utils.Data.normalize(data, x))
    utils.batch_stats_acc(model, data, sizes=(6,))
    first = seen[0]
    stored = [i for i in range(len(data.x_test)) if any(torch.equal(data.x_test[i], im) for im in first)]
    assert len(stored) == 6 and stored != list(range(6))  # not the first six stored images


def test_tuning_table_summarizes_seeds_and_orders_sweeps_by_number(tmp_path):
    def sweep(folder, runs):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))

    def run(name, val, seed, **cfg):
        return {"name": name, "train_acc": 90.0, "val_acc": val, "cfg": {"norm": "bn", "seed": seed, **cfg}}
    sweep("gpu_sweep2", [run("base", 80.0, 0), run("seed=1", 82.5, 1), run("seed=2", 81.0, 2)])
    sweep("cpu_sweep10", [run("whiten=train", 84.0, 0, whiten="train")])
    sweep("cpu_sweep11", [run("seed=3", 80.5, 3, block="3x3")])  # a key added later, at its old value
    text = utils.tuning_table(tmp_path)
    assert "| BN | `base` | 4 | 81.00 | 80.00 | 82.50 |" in text  # one recipe, four seeds
    assert "whiten=train` | 1 |" not in text                     # one seed is no spread
    order = [line.split("`")[1] for line in text.splitlines() if line.startswith("| gpu_") or line.startswith("| cpu_")]
    assert order == ["seed=1", "seed=2", "base", "whiten=train", "seed=3"]  # sweep 2 before 10, best first within each
    assert "No validation sweeps" in utils.tuning_table(tmp_path / "none")


def test_small_batch_table_has_a_row_per_batch_size_and_a_value_per_seed(tmp_path):
    def runs(folder, *rs):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))

    def run(norm, bs, val, seed=0, stats=None):
        return {"val_acc": val, "cfg": {"norm": norm, "bs": bs, "epochs": 3, "seed": seed},
                **({"val_acc_batch_stats": stats} if stats else {})}
    runs(".", run("gn", 128, 70.0), run("bn", 2, 40.0, stats={"2": 65.5, "128": 50.25}), run("ln", 2, 66.0),
         run("bn", 128, 72.0, stats={"128": 71.5}), run("gn", 2, 67.125))
    assert utils.small_batch_table(tmp_path).splitlines()[2:] == [
        "| 2 | 3 | 0 | 40.00 | 65.50 | 50.25 | 67.12 | 66.00 |",  # smallest batch first
        "| 128 | 3 | 0 | 72.00 | 71.50 | 71.50 | 70.00 | - |"]   # a missing run shows as -
    runs(utils.SEED_DIR, run("gn", 2, 68.0, seed=1), run("bn", 2, 41.0, seed=1, stats={"2": 60.0, "128": 55.0}))
    assert utils.small_batch_table(tmp_path).splitlines()[2] == (
        "| 2 | 3 | 0/1 | 40.00 / 41.00 | 65.50 / 60.00 | 50.25 / 55.00 | 67.12 / 68.00 | 66.00 |")
    assert "No small-batch runs" in utils.small_batch_table(tmp_path / "none")


def test_blocks_table_sets_each_block_design_against_the_bar(tmp_path):
    def result(folder, acc, seed, **config):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        r = {"norm": "gn", "test_acc": acc, "seed": seed, "params": 123, "epochs": 2, "minutes": 0.13,
             "history": {"seconds": [3.0, 5.0]}, "config": config, "data": "folder", "device": "cpu", "torch": "2"}
        (tmp_path / folder / "results_gn.json").write_text(json.dumps(r))
    result(".", 81.5, 0)
    result("seed1", 80.5, 1)
    result("separable", 83.0, 0, widths=[32, 48, 96], block="separable")
    table = utils.blocks_table(tmp_path)
    assert "| Group Norm | full 3x3 | 16/24/32 | 123 | 81.50 (0), 80.50 (1) | 81.00 | 4.0 | 82 | -1.50 |" in table
    assert "| Group Norm | depthwise-separable | 32/48/96 | 123 | 83.00 (0) | 83.00 | 4.0 | 82 | +1.00 |" in table
    assert "Batch Norm" not in table and "Layer Norm" not in table  # no results, no row
    files = [line.split("`")[1] for line in utils.provenance(tmp_path).splitlines()[2:]]
    assert files == [f"{tmp_path.name}/{d}results_gn.json" for d in ("", "seed1/", "separable/")]
