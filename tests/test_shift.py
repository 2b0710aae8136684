"""The corruption study: each corruption is CIFAR-10-C's (bytes included), seeded, every model sees its inputs
standardized as in training, and the BN batch-statistics test leaves BN alone."""
import copy
import dataclasses
import hashlib
import io
import json
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import report
import records
import utils
from conftest import ROOT
from model import Net

sys.path.insert(0, str(ROOT / "experiments"))
import shift  # noqa: E402
import tables  # noqa: E402

NAMES = list(shift.CORRUPT)
# scipy.ndimage's Gaussian kernels (scipy 1.17.1, _gaussian_kernel1d), centre tap first, as float.hex
SCIPY_KERNELS = {
    0.4: ["0x1.d6a3bb0b987e5p-1", "0x1.4adaf8877b346p-5", "0x1.cbc6f0363e1f1p-19"],
    0.6: ["0x1.53dffefe63382p-1", "0x1.52fe8b43e1330p-3", "0x1.505dafd617359p-9"],
    0.7: ["0x1.23c2d39adde1dp-1", "0x1.a4a892b55c7f0p-3", "0x1.3b3170a27df78p-7", "0x1.eaf0abfddfc56p-15"],
    0.8: ["0x1.fea50a329ccc5p-2", "0x1.d39491a41f9e1p-3", "0x1.66fa84b3e9043p-6", "0x1.ce27258cea946p-12"],
    1.0: ["0x1.9884a307594fbp-2", "0x1.ef8eb9ad499bap-3", "0x1.ba4b99d1799abp-5", "0x1.22724cb7eb269p-8",
          "0x1.18a9c4fd536c6p-13"]}
# sha256 prefixes of scikit-image's bytes (0.26.0) at severities 1-5 on reference_images(), as make_cifar_c.py
SKIMAGE_SHA = {
    "contrast": ["a89644ce3cec7deb", "88082f0262ef45c6", "59e8b61c843bdbbb", "a3d375b79ea9244b", "030d72835281a919"],
    "brightness": ["795aee4f2743c383", "9b39f64e02d1d1f7", "51a09dc18b8b79a3", "879958cee47f9c81", "ebbad5a9db818144"],
    "gaussian_blur": ["23c67641fecd17ff", "703e18ec73766835", "ddba0ecae8d92e42", "acb785464b2877a7",
                      "fea98c24cebd1a05"]}
HIST = {"test_acc": [10.0], "train_acc": [10.0], "seconds": [1.0]}


def images(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def hwc(x):
    """uint8 (N, 3, H, W) -> numpy (N, H, W, 3), laid out as the reference's np.array(PIL image) (numpy sums a mean
    in the order of the memory, and the last bits decide where a value truncates)."""
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def reference_bytes(a):
    """CIFAR-10-C's way back to bytes, on 0-1 floats: np.uint8(np.clip(x, 0, 1) * 255)."""
    return np.uint8(np.clip(a, 0, 1) * 255)


@pytest.mark.parametrize("name", NAMES)
def test_severity_0_is_the_identity_and_higher_ones_change_the_images(name):
    x = images()
    assert torch.equal(shift.corrupt(x, name, 0), x)
    for s in range(1, 6):
        assert not torch.equal(shift.corrupt(x, name, s), x), s


@pytest.mark.parametrize("severity", (1, 5))
@pytest.mark.parametrize("name", [n for n in NAMES if n not in shift.RANDOM])
def test_each_image_is_corrupted_on_its_own(name, severity):
    """An image's corruption does not depend on the others in its batch (a contrast mean over the batch would)."""
    x = images(5)
    y = shift.corrupt(x, name, severity)
    assert y.shape == x.shape and y.dtype == torch.uint8
    for i in (0, 3):
        assert torch.equal(y[i:i + 1], shift.corrupt(x[i:i + 1], name, severity)), i


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_images(name):
    x = images()
    assert torch.equal(shift.corrupt(x, name, 3, seed=1), shift.corrupt(x, name, 3, seed=1))
    noisy = [shift.corrupt(x, "gaussian_noise", 3, seed=s) for s in (1, 2)]
    assert not torch.equal(*noisy)  # and the noise really is random


def test_bytes_are_clipped_then_truncated_as_cifar10c():
    """np.uint8(np.clip(x, 0, 1) * 255): out-of-range values clip (not wrap: 1.02 -> 260 would wrap to 4), and the
    rest truncate (0.999 -> 254, not 255)."""
    floats = [-0.5, -1e-9, 0.0, 0.5 / 255, 1.999 / 255, 100.6 / 255, 0.999, 1.0, 1.0001, 1.02, 1.5]
    bytes_ = shift.as_uint8(torch.tensor(floats, dtype=torch.float64))
    assert bytes_.tolist() == reference_bytes(np.array(floats)).tolist() == [0, 0, 0, 0, 1, 100, 254, 255, 255, 255, 255]
    # through a corruption: noise pushes black pixels below 0 and white ones above 1, and both clip
    for value, clipped in ((0, 0), (255, 255)):
        out = shift.corrupt(torch.full((20, 3, 32, 32), value, dtype=torch.uint8), "gaussian_noise", 5)
        assert 0.45 < (out == clipped).float().mean() < 0.55  # the half of the noise that points out of range
        assert (out.int() - value).abs().max() < 128  # the other half: at most ~5 standard deviations (25.5 each)


def test_severities_are_cifar10c_and_follow_their_definitions():
    assert shift.SEVERITIES == {  # the published ones (make_cifar_c.py); scale is ours
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15], "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "scale": [0.8, 0.6, 0.4, 0.2, 0.1], "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0], "jpeg": [80, 65, 58, 50, 40]}
    x = images(4)
    a = hwc(x) / 255.0
    for s, c in enumerate(shift.SEVERITIES["contrast"], 1):  # as the reference: numpy's mean over each image's pixels
        means = np.mean(a, axis=(1, 2), keepdims=True)
        assert np.array_equal(hwc(shift.corrupt(x, "contrast", s)), reference_bytes((a - means) * c + means)), s
    for s, c in enumerate(shift.SEVERITIES["scale"], 1):  # ours: rounded, in float32, as first published
        f32 = hwc(x).astype(np.float32) / np.float32(255) * np.float32(c)
        assert np.array_equal(hwc(shift.corrupt(x, "scale", s)), np.uint8(np.round(np.clip(f32, 0, 1) * 255))), s
    pixels = torch.tensor([[200, 100, 50], [0, 0, 0], [100, 50, 0], [128, 128, 128], [255, 255, 255], [10, 20, 240]],
                          dtype=torch.uint8).T.reshape(1, 3, 1, 6)
    brightened = {  # value + c at fixed hue and saturation, truncated; black turns grey
        1: [[212, 106, 53], [12, 12, 12], [112, 56, 0], [140, 140, 140], [255, 255, 255], [10, 21, 252]],
        5: [[255, 127, 63], [76, 76, 76], [176, 88, 0], [204, 204, 204], [255, 255, 255], [10, 21, 255]]}
    for s, expected in brightened.items():
        assert shift.corrupt(pixels, "brightness", s)[0, :, 0].T.tolist() == expected, s
    smooth = [shift.corrupt(x, "gaussian_blur", s).float().diff(dim=3).abs().mean() for s in range(6)]
    assert smooth == sorted(smooth, reverse=True)  # more blur, smaller neighbour differences
    noise = [(shift.corrupt(x, "gaussian_noise", s).float() - x.float()).abs().mean() for s in range(6)]
    assert noise == sorted(noise)


def test_blur_is_skimage_gaussian_with_edge_repeat_padding():
    """skimage.filters.gaussian's kernel (scipy's: exp(-x^2 / 2 sigma^2) out to int(4 sigma + 0.5), normalized),
    and its mode='nearest': the pixels beyond the edge repeat the edge, not reflect it as torchvision does."""
    for sigma, half in SCIPY_KERNELS.items():
        k = shift.gaussian_kernel(sigma).tolist()
        assert k == [float.fromhex(v) for v in half[:0:-1] + half], sigma  # symmetric, scipy's bits exactly
    edge = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    edge[..., 0] = 255  # a bright left column
    k = shift.gaussian_kernel(1.0).numpy()
    for mode, far in (("edge", False), ("reflect", True)):
        padded = np.pad(hwc(edge)[0] / 255.0, ((4, 4), (4, 4), (0, 0)), mode=mode)
        rows = sum(w * padded[i:i + 32] for i, w in enumerate(k))
        expected = reference_bytes(sum(w * rows[:, j:j + 32] for j, w in enumerate(k)))
        diff = np.abs(hwc(shift.corrupt(edge, "gaussian_blur", 5))[0].astype(int) - expected.astype(int))
        assert (diff.max() > 30) if far else (diff.max() <= 1), mode  # edge repeat: 178, 76, 14, 1; reflect: 101, 61
    assert shift.corrupt(edge, "gaussian_blur", 5)[0, 0, 16, :5].tolist() == [178, 76, 14, 1, 0]


def test_noise_is_drawn_afresh_at_each_severity():
    grey = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    z = [(shift.corrupt(grey, "gaussian_noise", s, seed=0).double() - 127.5) / shift.SEVERITIES["gaussian_noise"][s - 1]
         for s in range(1, 6)]
    corr = torch.corrcoef(torch.stack([v.flatten() for v in z]))
    assert corr.fill_diagonal_(0).abs().max() < 0.05  # one draw reused at every severity would correlate at ~1


def test_noise_follows_the_seed_and_has_the_published_std():
    grey = torch.full((20, 3, 32, 32), 128, dtype=torch.uint8)  # no clipping within 5 standard deviations
    for s, c in enumerate(shift.SEVERITIES["gaussian_noise"], 1):
        torch.manual_seed(s)  # the global generator plays no part
        noise = shift.corrupt(grey, "gaussian_noise", s, seed=7).double() - 128
        assert abs(noise.std().item() / (255 * c) - 1) < 0.02, s  # 61,440 draws: std known to 0.3%
        assert abs(noise.mean().item() + 0.5) < 0.3, s  # truncation takes half a level off on average
        assert torch.equal(shift.corrupt(grey, "gaussian_noise", s, seed=7), noise.add(128).to(torch.uint8))
        assert not torch.equal(shift.corrupt(grey, "gaussian_noise", s, seed=8), noise.add(128).to(torch.uint8))


def test_corruptions_stay_on_the_images_device():
    """The noise comes from a CPU generator and the blur's kernel from numpy: both follow the images to their device
    (meta here, where nothing is computed; the same code path as a GPU)."""
    x = images(2).to("meta")
    for name in NAMES:
        if name != "jpeg":  # Pillow works on the CPU and moves back, tested by value below
            assert shift.corrupt(x, name, 3).device.type == "meta", name


def test_jpeg_is_a_pillow_round_trip_at_the_published_quality():
    x = images(3)
    for s, quality in enumerate([80, 65, 58, 50, 40], 1):
        for i, img in enumerate(hwc(x)):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=quality)
            assert np.array_equal(hwc(shift.corrupt(x, "jpeg", s))[i], np.asarray(Image.open(buf))), (s, i)


def reference_images():
    """Six random images, one with flat patches and edges, one ramp: the inputs of the CIFAR-10-C checks."""
    flat = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    flat[0, :, 8:24, 8:24] = torch.tensor([200, 120, 40], dtype=torch.uint8).view(3, 1, 1)  # flat patches and edges
    flat[1] = torch.arange(32, dtype=torch.uint8).mul(8).view(1, 1, 32)  # a ramp
    return torch.cat([images(6), flat])


def sha16(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_the_corruptions_give_the_bytes_scikit_image_gave():
    """make_cifar_c.py's contrast, brightness and blur, computed once with scikit-image 0.26.0 and scipy 1.17.1
    on reference_images() (numpy, (N, H, W, 3) uint8) and recorded as sha256 prefixes: byte for byte, without
    scikit-image installed."""
    x = reference_images()
    assert sha16(hwc(x)) == "af5dd34b5b80cb3a"  # the inputs themselves, so a changed input is not a changed output
    for name, digests in SKIMAGE_SHA.items():
        assert [sha16(hwc(shift.corrupt(x, name, s))) for s in range(1, 6)] == digests, name


def test_the_corruptions_give_cifar10c_bytes():
    """Against the reference's own libraries, where they are installed (scikit-image; not a dependency): contrast,
    brightness and blur as make_cifar_c.py computes them, byte for byte."""
    sk = pytest.importorskip("skimage")
    from skimage.filters import gaussian
    x = reference_images()

    def brightness(a, c):
        hsv = sk.color.rgb2hsv(a)
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        return sk.color.hsv2rgb(hsv)
    reference = {"contrast": lambda a, c: (a - a.mean(axis=(0, 1), keepdims=True)) * c + a.mean(axis=(0, 1), keepdims=True),
                 "brightness": brightness, "gaussian_blur": lambda a, c: gaussian(a, sigma=c, channel_axis=-1)}
    for name, ref in reference.items():
        for s, c in enumerate(shift.SEVERITIES[name], 1):
            expected = np.stack([reference_bytes(ref(img / 255.0, c)) for img in hwc(x)])
            assert np.array_equal(hwc(shift.corrupt(x, name, s)), expected), (name, s)


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


def save(folder, net, data):
    """A saved model whose results file says it was trained on `data` (its mean and std)."""
    records.save_results(folder, net.eval(), HIST, 0, "cpu", data, {"config": {"residual": net.residual}})
    return folder / f"model_{net.norm}.pt"


def test_models_see_inputs_standardized_with_the_statistics_they_were_trained_with(data, image_folder, tmp_path):
    """Not the loaded copy's: a model trained where the mean and std differ gets its own, from its results file (else
    its checkpoint), as report.check does."""
    trained_on = dataclasses.replace(data, mean=data.mean + 0.2, std=data.std * 0.5)
    path = save(tmp_path / "m", Net("bn"), trained_on)
    (model, stats), = shift.load_models([path]).values()
    assert np.allclose(stats["mean"], trained_on.mean.flatten()) and np.allclose(stats["std"], trained_on.std.flatten())
    x = shift.corrupt(data.x_test, "contrast", 2)
    own = utils.predict(model, x, records.as_trained(data, stats))
    assert torch.equal(shift.predict(model, stats, x, data), own)
    assert not torch.allclose(own, utils.predict(model, x, data), atol=1e-2)  # the loaded data's statistics differ
    res = shift.main(image_folder, tmp_path / "out", paths=[path], corruptions=["scale"], pin=False)
    assert res["accuracy"][str(path)]["scale"] == [
        round(utils.accuracy(utils.predict(model, shift.corrupt(data.x_test, "scale", s), records.as_trained(data, stats)),
                             data.y_test), 2) for s in range(6)]
    records.results_beside(path).unlink()  # a checkpoint on its own records them too
    assert shift.load_models([path])[str(path)][1] == stats


def test_bn_batch_statistics_come_from_full_batches_of_the_test_set(data, image_folder, tmp_path):
    """BN_BATCH divides CIFAR-10's 10,000 test images (no short last batch); the bn_batch_stats row is the BN model
    on the statistics of its test batches, its inputs standardized as in training."""
    assert 10_000 % shift.BN_BATCH == 0 and shift.BN_BATCH >= 200
    trained_on = dataclasses.replace(data, mean=data.mean - 0.1)
    net = Net("bn")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(25.0)  # running averages far from any batch's statistics
    for n in ("gn", "ln"):
        save(tmp_path / "images", Net(n), trained_on)
    save(tmp_path / "images", net, trained_on)
    res = shift.main(image_folder, tmp_path / "out", images=tmp_path / "images", corruptions=["contrast"], pin=False)
    assert list(res["accuracy"]) == list(shift.MODELS) and res["bn_batch_size"] == shift.BN_BATCH
    model, stats = shift.load_models(images=tmp_path / "images")["bn"]
    acc = lambda logits: round(utils.accuracy(logits, data.y_test), 2)
    xs = [shift.corrupt(data.x_test, "contrast", s) for s in range(6)]
    expected = [acc(utils.batch_stats_predict(model, x, records.as_trained(data, stats), shift.BN_BATCH)) for x in xs]
    assert res["accuracy"]["bn_batch_stats"]["contrast"] == expected
    assert expected != res["accuracy"]["bn"]["contrast"]  # the running averages give other answers


def test_other_saved_models_under_chosen_corruptions(data, image_folder, tmp_path):
    """--models: any saved models, named by their folders, under the corruptions asked for; no BN batch test
    without a model named bn; a wrong path or corruption fails before anything is written."""
    paths = [save(tmp_path / name, net, data) for name, net in (("no_norm", Net("none")),
                                                                ("no_residual", Net("ln", residual=False)))]
    out = tmp_path / "out"
    res = shift.main(image_folder, out, paths=paths, corruptions=["scale"], pin=False)
    assert list(res["accuracy"]) == list(map(str, paths))
    info = res["models"][str(paths[1])]
    assert (info["norm"], info["seed"], info["config"]["residual"]) == ("ln", 0, False)
    assert all(list(per) == ["scale"] and len(per["scale"]) == 6 for per in res["accuracy"].values())
    assert res["severities"] == {"scale": shift.SEVERITIES["scale"]} and res["to_uint8"] == {"scale": "rounded"}
    assert res["kernels"]["pinned"] is False and res["kernels"]["threads"] == torch.get_num_threads()
    assert (out / "results.json").read_text() == records.json_text(res) and (out / "shift.png").exists()
    table = tables.shift_table(tmp_path)  # the table of a study of models named by path (out is tmp_path/"out")
    assert table == "_No corruption results yet: run `python experiments/shift.py`._"
    for bad in ({"paths": [tmp_path / "missing" / "model_bn.pt"]}, {"paths": paths, "corruptions": ["fog"]},
                {"paths": paths[:1] * 2}):
        with pytest.raises((FileNotFoundError, ValueError), match="not found|unknown corruption|given twice"):
            shift.main(image_folder, tmp_path / "never", pin=False, **bad)
        assert not (tmp_path / "never").exists()


def test_the_table_names_models_given_by_path(tmp_path):
    acc = lambda *a: {"scale": list(a), "contrast": list(a)}
    res = {"data": "d", "device": "cpu", "torch": "2", "seed": 0, "bn_batch_size": 250,
           "accuracy": {"x/model_none.pt": acc(80.0, 70, 60, 50, 40, 30), "y/model_ln.pt": acc(81.0, 71, 61, 51, 41, 31),
                        "z/model_gn.pt": acc(70.0, 60, 50, 40, 30, 20)},
           "models": {"x/model_none.pt": {"norm": "none", "seed": 1, "config": {"lr": 0.2}},
                      "y/model_ln.pt": {"norm": "ln", "seed": 0, "config": {"residual": False}}}}
    (tmp_path / "shift").mkdir()
    (tmp_path / "shift" / "results.json").write_text(json.dumps(res))
    lines = tables.shift_table(tmp_path).splitlines()
    assert lines[2:6] == ["| model | clean test acc % | mean over the 10 corrupted test sets | worst corruption (mean of its 5) |",
                          "|---|---|---|---|", "| No Norm, peak lr 0.2, seed 1 | 80.00 | 50.00 (-30.00) | scale: 50.00 |",
                          "| Layer Norm, no residual additions, seed 0 | 81.00 | 51.00 (-30.00) | scale: 51.00 |"]
    assert lines[6].startswith("| `z/model_gn.pt` | 70.00 |")  # no description: its path
    assert lines[8].endswith("| No Norm, peak lr 0.2, seed 1 | Layer Norm, no residual additions, seed 0 | `z/model_gn.pt` |")


def test_the_scale_table_does_not_mix_rounded_and_truncated_bytes(tmp_path):
    factors = [0.8, 0.6, 0.4, 0.2, 0.1]
    for folder, extra in (("shift", {"to_uint8": {"scale": "truncated"}}), (tables.SCALE, {})):  # 2nd: older
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "results.json").write_text(json.dumps(
            {"severities": {"scale": factors}, "bn_batch_size": 250, **extra,
             "accuracy": {"gn": {"scale": [80.0, 79.0, 78.0, 70.0, 50.0, 18.0]}}}))
    with pytest.raises(ValueError, match="rounded and truncated"):
        tables.ablation_scale_table(tmp_path)


def test_other_models_need_an_out_folder_of_their_own(capsys):
    """--models without --out would overwrite the committed experiments/shift/results.json."""
    with pytest.raises(SystemExit) as exit_:
        shift.parse_args(["--models", "a/model_none.pt", "--corruptions", "scale"])
    assert exit_.value.code == 2 and "--models needs --out" in capsys.readouterr().err
    assert shift.parse_args([]).out == "experiments/shift" and shift.parse_args([]).pin
    example = next(line.split() for line in shift.__doc__.splitlines() if line.startswith("    --models"))
    assert shift.parse_args(example).out == "experiments/ablation/scale"  # the docstring's example names one


def test_the_script_pins_the_kernels_before_anything_runs(image_folder, tmp_path):
    """The command line runs the committed models on pinned kernels (AVX2 on 2 threads: a fresh process, as
    pinning needs) and records them."""
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "shift.py"), "--data", str(image_folder),
                           "--out", str(tmp_path), "--corruptions", "scale"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert res["kernels"]["pinned"] is True and res["kernels"]["aten"] == "AVX2" and ", pinned" in res["device"]
        assert res["kernels"]["threads"] == records.PIN_THREADS


def test_the_committed_results_cover_every_model_corruption_and_severity():
    res = json.loads((report.STUDIES / "shift" / "results.json").read_text())
    assert res["severities"] == shift.SEVERITIES
    assert (res["bn_batch_size"], res["to_uint8"]) == (shift.BN_BATCH, shift.TO_UINT8)  # made by this code
    assert res["kernels"]["pinned"] and res["kernels"]["aten"] == "AVX2"
    assert set(res["accuracy"]) == set(shift.MODELS)
    for m, per in res["accuracy"].items():
        assert set(per) == set(NAMES) and all(len(v) == 6 for v in per.values())
        assert len({v[0] for v in per.values()}) == 1  # severity 0: the same clean images everywhere
    clean = {n: r["test_acc"] for n, r in records.load_results(report.IMAGES).items()}
    for n in ("bn", "gn", "ln"):
        assert res["accuracy"][n]["jpeg"][0] == round(clean[n], 2)  # the clean column is the headline's
