"""Each notebook runs end to end under papermill on a tiny synthetic image folder, writing only to a temp dir."""
import json
import subprocess
import sys

import nbformat
import papermill as pm
import pytest

import report
from conftest import ROOT
from model import Net, count_params

NOTEBOOKS = {"bn": "S8_BN.ipynb", "gn": "S8_GN.ipynb", "ln": "S8_LN.ipynb"}


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_notebooks_differ_only_in_parameters_and_title():
    cells = {n: nbformat.read(ROOT / f, as_version=4).cells for n, f in NOTEBOOKS.items()}
    bn = cells["bn"]
    for norm in ("gn", "ln"):
        other = cells[norm]
        assert len(other) == len(bn)
        diff = [i for i, (a, b) in enumerate(zip(bn, other)) if a.source != b.source]
        assert diff == [0, 3], diff  # the title and the parameters cell
        assert f'norm = "{norm}"' in other[3].source
    params = [c for c in bn if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("norm", "epochs = 20", "batch_size", "lr", "seed", "data_root", 'device = "auto"',
                 'out_dir = "images"', "train_subset", "test_subset"):
        assert name in params[0].source


@pytest.fixture
def clean_env(monkeypatch):
    """The kernel inherits the caller's environment: a non-inline MPLBACKEND (Agg) would hide every figure."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


@pytest.mark.parametrize("norm", NOTEBOOKS)
def test_notebook_runs_headless(norm, image_folder, tmp_path, clean_env):
    out_nb = tmp_path / f"out_{norm}.ipynb"
    images = tmp_path / "images"
    pm.execute_notebook(str(ROOT / NOTEBOOKS[norm]), str(out_nb), cwd=str(ROOT), progress_bar=False,
                        parameters=dict(epochs=2, batch_size=32, data_root=str(image_folder),
                                        out_dir=str(images), device="cpu", seed=1,
                                        whiten=norm == "bn",  # off in all three notebooks: run its branch once
                                        block="separable" if norm == "ln" else "full",  # likewise
                                        pin_cpu=norm != "gn"))  # and the pin's off switch
    nb = nbformat.read(out_nb, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    final = [line for line in text.splitlines() if line.startswith(f"FINAL {norm}:")]
    res = json.loads((images / f"results_{norm}.json").read_text())
    assert final == [f"FINAL {norm}: train_acc={res['train_acc']:.2f}% test_acc={res['test_acc']:.2f}% "
                     f"params={res['params']} epochs=2"]
    # no published run has these settings: said once before training, once at the end, nothing recorded
    said = ("this run's CPU kernels are not pinned" if norm == "gn" else  # pin_cpu off
            f"this run's images differ from those of experiments/seed1/results_{norm}.json")  # seed 1, other images
    assert f"nothing to compare with: {said}" in text
    assert text.rstrip().endswith("not a rerun of a published run: nothing to compare with")
    assert "reproduction" not in res and " = published" not in text
    assert res["config"]["whiten"] is (norm == "bn")
    assert res["kernels"]["pinned"] is (norm != "gn") and (", pinned)" in res["device"]) is (norm != "gn")
    assert res["config"]["block"] == ("separable" if norm == "ln" else "full")
    config = report.model_config(res)
    assert set(config) - {"groups"} == {"widths", "num_classes", "block", "norm_1x1", "residual"}  # how it was built
    assert res["config"]["groups"] == (4 if norm == "gn" else None)  # BN and LN have no groups
    assert res["params"] == count_params(Net(norm, **config))
    cm = res["confusion"]  # rows: true class, columns: predicted
    assert len(cm) == len(cm[0]) == 10 and sum(map(sum, cm)) == 60  # 6 synthetic test images per class
    assert 100 * sum(cm[k][k] for k in range(10)) / 60 == pytest.approx(res["test_acc"], abs=1e-4)
    assert {f"curves_{norm}.png", f"misclassified_{norm}.png", f"model_{norm}.pt"} <= {p.name for p in images.iterdir()}
    assert "\r" not in text and text.count("epoch  1:") == 1  # one clean progress line per epoch
    kinds = {o.output_type for c in nb.cells if c.cell_type == "code" for o in c.outputs}
    assert "error" not in kinds
    assert "application/vnd.jupyter.widget-view+json" not in json.dumps(nb)
    assert not any(o.get("name") == "stderr" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) == 2


def test_with_saved_weights_a_notebook_evaluates_them_and_writes_nothing(image_folder, tmp_path, clean_env):
    trained = tmp_path / "trained"
    pm.execute_notebook(str(ROOT / "S8_GN.ipynb"), str(tmp_path / "train.ipynb"), cwd=str(ROOT), progress_bar=False,
                        parameters=dict(epochs=1, batch_size=32, data_root=str(image_folder), out_dir=str(trained),
                                        device="cpu"))
    res = json.loads((trained / "results_gn.json").read_text())
    before = {p.name: p.read_bytes() for p in trained.iterdir()}
    out_nb = tmp_path / "weights.ipynb"
    pm.execute_notebook(str(ROOT / "S8_GN.ipynb"), str(out_nb), cwd=str(ROOT), progress_bar=False,
                        parameters=dict(weights=str(trained / "model_gn.pt"), data_root=str(image_folder),
                                        out_dir=str(trained), device="cpu",
                                        train_subset=20))  # other statistics than the model's: not used
    nb = nbformat.read(out_nb, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert " train loss " not in text and "no training run, so no curves" in text
    assert f"model_gn.pt: test_acc={res['test_acc']:.2f}% (not trained here)" in text
    assert "test acc % per class:" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) == 1  # the grid
    assert {p.name: p.read_bytes() for p in trained.iterdir()} == before  # nothing written


def run_setup_cell(cwd, repo_url=None):
    """The notebooks' first cell as a script, in cwd (Colab opens a notebook without its repository)."""
    setup = code_cells(ROOT / "S8_BN.ipynb")[0].source
    assert setup.count("REPO_URL = ") == 1  # the one place to set it
    if repo_url:
        setup = setup.replace("https://github.com/OWNER/s8-normalization.git", repo_url)
    return subprocess.run([sys.executable, "-c", setup], cwd=cwd, capture_output=True, text=True)


def test_opened_alone_with_the_placeholder_url_it_says_what_to_set(tmp_path):
    proc = run_setup_cell(tmp_path)
    assert proc.returncode != 0
    assert "set REPO_URL in this cell to the repository this notebook was opened from" in proc.stderr
    assert "git" not in proc.stderr.split("RuntimeError")[0].lower()  # stopped before any clone
    assert list(tmp_path.iterdir()) == []


def test_opened_alone_it_clones_the_repository_and_moves_into_it(tmp_path):
    src = tmp_path / "s8-fork"
    src.mkdir()
    (src / "model.py").write_text("")
    git = lambda *a: subprocess.run(["git", *a], cwd=src, check=True, capture_output=True)
    git("init", "-q")
    git("add", "model.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m")
    work = tmp_path / "colab"
    work.mkdir()
    proc = run_setup_cell(work, src.as_uri())
    assert proc.returncode == 0, proc.stderr
    assert (work / "s8-fork" / "model.py").exists()


def test_beside_model_py_the_setup_cell_clones_nothing():
    assert run_setup_cell(ROOT).returncode == 0


def test_the_notebooks_import_only_model_utils_and_records_of_this_repository():
    import ast
    local = {p.stem for p in ROOT.glob("*.py")}  # model, utils, records, report: the repository's own modules
    for name in NOTEBOOKS.values():
        imported = set()
        for cell in code_cells(ROOT / name):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    imported.add(node.module.split(".")[0])
        assert imported & local == {"model", "utils", "records"}, (name, imported)


def test_the_readme_says_which_data_a_run_trains_on():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "Without `data/cifar10`, torchvision downloads the original CIFAR-10 (so does Colab)" in text
    assert "`python report.py --check --data-root data/original` downloads torchvision's original CIFAR-10 there" in text
