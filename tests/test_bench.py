"""The speed benchmark measures what the notebooks really run, and its code still works."""
import ast
import json
import sys

import nbformat
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))  # the benchmarks live with the studies
import bench_norms  # noqa: E402
import bench_pipeline as bench  # noqa: E402


def notebook_params(name="S8_BN.ipynb"):
    cell = next(c for c in nbformat.read(ROOT / name, as_version=4).cells
                if "parameters" in c.metadata.get("tags", []))
    tree = ast.parse(cell.source)
    return {a.targets[0].id: ast.literal_eval(a.value) for a in tree.body if isinstance(a, ast.Assign)}


def test_bench_uses_the_notebook_settings():
    p = notebook_params()
    assert bench.OUR_BATCH == p["batch_size"]
    assert bench.PAD == p["pad"]
    assert bench.EPOCHS == p["epochs"]
    assert bench.NORM_1X1 == p["norm_1x1"] and bench.bn_model().c3[1].num_features == 24


def test_bench_pieces_run_small():
    x, y = bench.synthetic(4 * bench.OUR_BATCH)
    assert bench.train_ours(x, y, steps=2) > 0
    setup, epoch, alone = bench.data_ours(*bench.synthetic(bench.N), torch.Generator().manual_seed(0), steps=2)
    assert setup > 0 and epoch > 0 and alone > 0
    images, labels = x.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy()
    assert bench.train_conventional(images, labels, steps=2, workers=0) > 0
    assert bench.eval_ours(x, y, 256) > 0 and bench.eval_conventional(images, labels, 256) > 0
    assert bench.conv_flops(bench.bn_model()) > 1e6
    batch, label = next(iter(bench.conventional_loader(images, labels, 0)))
    assert batch.shape == (bench.CONV_BATCH, 3, 32, 32) and batch.dtype == torch.float32


def test_norm_bench_builds_each_model_as_its_notebook_does():
    for name in ("bn", "gn", "ln"):
        p = notebook_params(f"S8_{name.upper()}.ipynb")
        assert bench_norms.MODELS[name] == {"norm": p["norm"], "norm_1x1": p["norm_1x1"]}
        separable = json.loads((ROOT / "experiments" / "separable" / f"results_{name}.json").read_text())["config"]
        assert bench_norms.MODELS[f"{name}_sep"] == {"norm": p["norm"], "norm_1x1": separable["norm_1x1"],
                                                     "block": separable["block"], "widths": separable["widths"]}
    assert bench_norms.MODELS["bn_plain"] == {**bench_norms.MODELS["gn"], "norm": "bn"}  # BN in GN's and LN's layers


def test_norm_bench_times_every_model_every_round():
    lines = []
    train, evals = bench_norms.measure(rounds=2, steps=2, eval_images=64, log=lines.append)
    assert set(train) == set(evals) == set(bench_norms.MODELS)
    assert all(len(v) == 2 and min(v) > 0 for v in (*train.values(), *evals.values()))
    assert len(lines) == 2 and lines[0].startswith("round 1: bn ")
