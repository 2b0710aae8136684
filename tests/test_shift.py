"""The corruption study: each corruption is what it says, seeded, and the BN batch-statistics test leaves BN alone."""
import copy
import json
import sys

import pytest
import torch

import report
import utils
from conftest import ROOT
from model import Net

sys.path.insert(0, str(ROOT / "experiments"))
import shift  # noqa: E402

NAMES = list(shift.CORRUPT)


def images(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_severity_0_is_the_identity_and_higher_ones_change_the_images(name):
    x = images()
    assert torch.equal(shift.corrupt(x, name, 0), x)
    for s in range(1, 6):
        assert not torch.equal(shift.corrupt(x, name, s), x), s


@pytest.mark.parametrize("severity", range(1, 6))
@pytest.mark.parametrize("name", NAMES)
def test_corruptions_keep_shape_dtype_and_range(name, severity):
    x = images(5)
    y = shift.corrupt(x, name, severity)
    assert y.shape == x.shape and y.dtype == torch.uint8  # uint8 keeps 0..255 by construction
    assert y.float().std() > 0


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_images(name):
    x = images()
    assert torch.equal(shift.corrupt(x, name, 3, seed=1), shift.corrupt(x, name, 3, seed=1))
    noisy = [shift.corrupt(x, "gaussian_noise", 3, seed=s) for s in (1, 2)]
    assert not torch.equal(*noisy)  # and the noise really is random


def test_severities_grow_and_follow_their_definitions():
    x = images(4)
    f = x.float() / 255
    mean = f.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(shift.corrupt(x, "contrast", 5).float(), ((f - mean) * 0.15 + mean).clamp(0, 1) * 255,
                          atol=0.51)
    assert torch.allclose(shift.corrupt(x, "scale", 2).float(), (f * 0.6) * 255, atol=0.51)
    grey = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    grey[0, :, 0, 0] = torch.tensor([100, 50, 0], dtype=torch.uint8)
    bright = shift.corrupt(grey, "brightness", 5).float()  # value + 0.3 at fixed hue and saturation
    assert torch.allclose(bright[0, :, 0, 0], torch.tensor([100, 50, 0.0]) * (100 / 255 + 0.3) / (100 / 255), atol=0.6)
    assert torch.allclose(bright[0, :, 1, 1], torch.full((3,), 0.3 * 255), atol=0.6)  # black turns grey
    smooth = [shift.corrupt(x, "gaussian_blur", s).float().diff(dim=3).abs().mean() for s in range(6)]
    assert smooth == sorted(smooth, reverse=True)  # more blur, smaller neighbour differences
    noise = [(shift.corrupt(x, "gaussian_noise", s).float() - x.float()).abs().mean() for s in range(6)]
    assert noise == sorted(noise)


def test_bad_corruption_or_severity_names_the_choices():
    with pytest.raises(ValueError, match="contrast, brightness"):
        shift.corrupt(images(), "fog", 1)
    with pytest.raises(ValueError, match="0 \\(none\\) to 5"):
        shift.corrupt(images(), "jpeg", 6)
    with pytest.raises(ValueError, match="uint8"):
        shift.corrupt(images().float(), "jpeg", 1)


def test_batch_statistics_leave_bn_untouched_and_use_the_batch(data):
    model = Net("bn").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)  # far from any batch's statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = utils.batch_stats_predict(model, data.x_test, data, batch_size=len(data.y_test))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
    with torch.no_grad():
        expected = copy.deepcopy(model).train()(data.normalize(data.x_test))  # batch statistics, in any order
    assert torch.allclose(logits, expected, atol=1e-4)
    assert not torch.allclose(logits, utils.predict(model, data.x_test, data), atol=1e-2)


def test_the_committed_results_cover_every_model_corruption_and_severity():
    res = json.loads((report.STUDIES / "shift" / "results.json").read_text())
    assert res["severities"] == shift.SEVERITIES
    assert set(res["accuracy"]) == set(shift.MODELS)
    for m, per in res["accuracy"].items():
        assert set(per) == set(NAMES) and all(len(v) == 6 for v in per.values())
        assert len({v[0] for v in per.values()}) == 1  # severity 0: the same clean images everywhere
    clean = {n: r["test_acc"] for n, r in utils.load_results(report.IMAGES).items()}
    for n in ("bn", "gn", "ln"):
        assert res["accuracy"][n]["jpeg"][0] == round(clean[n], 2)  # the clean column is the headline's


def test_other_saved_models_under_chosen_corruptions(data, image_folder, tmp_path):
    """--models: any saved models, named by their folders, under the corruptions asked for; no BN batch test
    without a model named bn; a wrong path or corruption fails before anything is written."""
    paths = []
    for name, net in (("no_norm", Net("none")), ("no_residual", Net("ln", residual=False))):
        utils.save_results(tmp_path / name, net.eval(), {"test_acc": [10.0], "train_acc": [10.0], "seconds": [1.0]}, 0, "cpu",
                           data,
                           {"config": {"residual": net.residual}})
        paths.append(tmp_path / name / f"model_{net.norm}.pt")
    out = tmp_path / "out"
    res = shift.main(image_folder, out, paths=paths, corruptions=["scale"])
    assert list(res["accuracy"]) == list(map(str, paths))
    assert res["models"][str(paths[1])] == {"norm": "ln", "seed": 0, "config": {"residual": False}}
    assert all(list(per) == ["scale"] and len(per["scale"]) == 6 for per in res["accuracy"].values())
    assert res["severities"] == {"scale": shift.SEVERITIES["scale"]}
    assert json.loads((out / "results.json").read_text())["accuracy"] == res["accuracy"] and (out / "shift.png").exists()
    for bad in ({"paths": [tmp_path / "missing" / "model_bn.pt"]}, {"paths": paths, "corruptions": ["fog"]},
                {"paths": paths[:1] * 2}):
        with pytest.raises((FileNotFoundError, ValueError), match="not found|unknown corruption|given twice"):
            shift.main(image_folder, tmp_path / "never", **bad)
        assert not (tmp_path / "never").exists()
