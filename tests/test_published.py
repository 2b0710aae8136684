"""The committed artifacts agree with each other: notebooks, results files and README."""
import json
import re
import sys

import nbformat
import pytest

import utils
from conftest import ROOT
from model import Net, count_params

IMAGES = ROOT / "images"
RESULTS = utils.load_results(IMAGES)
NOTEBOOKS = {"bn": "S8_BN.ipynb", "gn": "S8_GN.ipynb", "ln": "S8_LN.ipynb"}


def outputs_text(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


# the main runs (notebooks at the top level), the second-seed runs (executed copies in images/seed1) and the
# separable-block runs (executed copies in images/separable and images/separable/seed1)
SEPARABLE = IMAGES / utils.VARIANT_DIR
sys.path.insert(0, str(IMAGES / "tuning"))  # sweep.py, whose plans made the small-batch runs
FOLDERS = [(d, ROOT if d == IMAGES else d) for d in utils.run_folders(IMAGES)]  # (results, executed notebooks)
RUNS = {f"{d.relative_to(IMAGES)}/{n}": (d, n, where / NOTEBOOKS[n]) for d, where in FOLDERS for n in NOTEBOOKS}


@pytest.mark.parametrize("run", RUNS)
def test_executed_notebook_matches_its_results(run):
    out_dir, norm, notebook = RUNS[run]
    results = utils.load_results(out_dir)
    if norm not in results:
        pytest.skip(f"no {out_dir.name}/results_{norm}.json committed yet")
    nb = nbformat.read(notebook, as_version=4)
    text = outputs_text(nb)
    r = results[norm]
    assert f"FINAL {norm}: train_acc={r['train_acc']:.2f}% test_acc={r['test_acc']:.2f}%" in text
    assert r["epochs"] <= 20 and r["params"] < 50_000
    assert len(r["history"]["test_acc"]) == r["epochs"] and r["test_acc"] == r["history"]["test_acc"][-1]


@pytest.mark.parametrize("run", RUNS)
def test_committed_notebooks_read_well_on_github(run):
    notebook = RUNS[run][2]
    if not notebook.exists():
        pytest.skip(f"{notebook.name} not committed in {notebook.parent.name}/")
    raw = notebook.read_text()
    nb = nbformat.reads(raw, as_version=4)
    text = outputs_text(nb)
    assert "\r" not in text, "progress bars must leave clean lines"
    assert "application/vnd.jupyter.widget" not in raw
    assert not re.search(r"(/work/|/root/|/home/|/tmp/|/Users/|C:\\\\)", text), "absolute paths in outputs"
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert len(text.splitlines()) < 200


def test_readme_tables_are_generated_from_the_results():
    if not RESULTS:
        pytest.skip("no results committed yet")
    readme = (ROOT / "README.md").read_text()
    assert utils.results_table(IMAGES) in readme
    assert utils.findings(IMAGES) in readme
    assert utils.seeds_table(IMAGES) in readme
    assert utils.provenance(IMAGES) in readme and utils.speed_table(IMAGES) in readme
    assert utils.norm_speed_table(IMAGES) in readme
    assert utils.tuning_table(IMAGES / "tuning") in readme
    assert utils.small_batch_table(IMAGES / "small_batch") in readme
    assert utils.layer_table() in readme
    assert utils.blocks_table(IMAGES) in readme
    if utils.load_results(SEPARABLE):
        assert utils.layer_table(out_dir=SEPARABLE) in readme and utils.results_table(SEPARABLE) in readme
    assert utils.norm_tables(utils.norm_example()) in readme
    for png in re.findall(r"\]\((images/[^)]+\.png)\)", readme):
        assert (ROOT / png).exists(), png


@pytest.mark.parametrize("plan, folder", [(9, "small_batch"), (10, f"small_batch/{utils.SEED_DIR}")])
def test_small_batch_runs_are_the_runs_of_their_sweep_plan(plan, folder):
    import sweep
    runs = [json.loads(line) for line in (IMAGES / folder / "sweep.jsonl").read_text().splitlines()]
    planned = [sweep.as_json({**sweep.BASE, **c}) for c in sweep.PLANS[plan]]
    as_text = lambda cfgs: sorted(json.dumps(c, sort_keys=True) for c in cfgs)
    assert as_text(r["cfg"] for r in runs) == as_text(planned)
    assert all(r["val_acc_batch_stats"][str(r["cfg"]["bs"])] == round(r["val_acc"], 2)  # GN, LN: no batch dependence
               for r in runs if r["cfg"]["norm"] != "bn")


@pytest.mark.parametrize("folder", [d for d, _ in FOLDERS], ids=lambda d: str(d.relative_to(IMAGES)))
def test_results_files_are_complete(folder):
    for norm, r in utils.load_results(folder).items():
        for key in ("norm", "params", "epochs", "train_acc", "test_acc", "history", "seed", "device", "data", "torch"):
            assert key in r, (norm, key)
        assert set(r["history"]) == {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
        assert r["params"] == count_params(Net(norm, **utils.model_config(r)))  # the architecture table
        json.dumps(r)
