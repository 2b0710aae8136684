"""report.py builds the README's tables, experiments/tables.py the studies', from results and benchmark files
(synthetic ones here)."""
import json

import pytest

import report
import tables
from model import Net, count_params


def write_result(folder, norm="gn", test_acc=81.5, seed=0, confusion=None, stats=(10.0, 80.0), **config):
    """A results_<norm>.json as the notebooks write it, with made-up numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    hist = {"train_loss": [2.0, 1.5], "train_acc": [40.0, 83.0], "test_loss": [1.8, 1.4],
            "test_acc": [45.0, test_acc], "lr": [0.1, 0.01], "seconds": [3.0, 5.0]}
    r = {"norm": norm, "params": count_params(Net(norm, **report.model_config({"config": config}))), "epochs": 2, "train_acc": 83.0,
         "test_acc": test_acc, "minutes": 0.13, "history": hist, "seed": seed, "device": "cpu", "data": "folder",
         "torch": "2", "batch_stats_acc": dict(zip(("1", "64"), stats)), "config": config}
    if confusion is not None:
        r["confusion"] = confusion
    (folder / f"results_{norm}.json").write_text(json.dumps(r))
    return r


def write_jsonl(folder, runs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))


def test_both_readmes_regenerate_between_their_markers_only(tmp_path):
    images, studies = tmp_path / "images", tmp_path / "experiments"
    for norm in ("bn", "gn", "ln"):
        write_result(images, norm, seed=0, norm_1x1=norm == "bn")
    write_result(studies / "seed1", "gn", test_acc=80.25, seed=1)
    pages = {tmp_path / "README.md": report.readme_tables(images, studies, tmp_path),
             studies / "README.md": tables.studies_tables(images, studies, tmp_path)}
    for path, names in pages.items():
        path.write_text("intro\n" + "".join(f"<!-- {n}:start -->\nSTALE\n<!-- {n}:end -->\n" for n in names) + "end\n")
    report.main(images, studies, tmp_path)  # README.md
    assert "STALE" in (studies / "README.md").read_text()  # not its page
    tables.main(images, studies, tmp_path)  # experiments/README.md
    readme, study = (p.read_text() for p in pages)
    for text in (readme, study):
        assert "STALE" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| Group Norm (GN) | 83.00 | **81.50** |" in readme
    assert f"| **total** | | | | | **{count_params(Net('bn', norm_1x1=True)):,}** | **47,818** |" in readme
    assert "| test acc %, mean (range) over seeds 0, 1 | - | 80.88 (80.25-81.50) | - |" in readme  # seed 1: seed1/
    assert "| test acc % with the statistics of test batches of 1 / 64 | 10.00 / 80.00 |" in readme
    assert "No confusion matrices yet" in study  # the per-class table lives in experiments/README.md
    assert "| mean | 2.833 |" in study  # the worked example
    assert "`images/results_{bn,gn,ln}.json`" in readme and "seed1" not in readme.split("hardware:start")[1]
    assert "| Group Norm | 81.50 | 80.25 | 80.88 (80.25-81.50) | 83.00 | +2.12 |" in study  # seeds
    assert "Batch Norm | 81.50 |" not in study.split("seeds:end")[0]  # one seed: no spread to show
    assert "`experiments/seed1/results_gn.json`" in study
    assert "No small-batch runs yet" in study and "No benchmark yet" in study
    assert (images / "norm_axes.png").exists()
    with pytest.raises(ValueError, match="markers"):
        report.replace_between("no markers", "results", "x")


def test_per_class_table_reads_the_confusion_matrix(tmp_path):
    cm = [[0] * 10 for _ in range(10)]
    for k in range(10):
        cm[k][k] = 90
    cm[3][5], cm[3][3] = 30, 60   # cats taken for dogs
    cm[5][3], cm[5][5] = 20, 70   # dogs taken for cats
    cm[0][8], cm[0][0] = 10, 80   # airplanes taken for ships
    write_result(tmp_path, "bn", confusion=cm)
    text = report.per_class_table(tmp_path)
    assert "| cat | 66.7 |" in text and "| dog | 77.8 |" in text and "| airplane | 88.9 |" in text
    assert "- BN: 60 mistakes; commonest cat as dog (30), dog as cat (20)." in text


RECIPE = dict(groups=4, widths=[16, 24, 32], block="full", norm_1x1=True, whiten=False, batch_size=128, lr=0.2,
              warmup=0.15, weight_decay=5e-4, label_smoothing=0.1, pad=2)  # a notebook's config


def test_findings_table_holds_the_seeds_spread_and_the_batch_statistics(tmp_path):
    images, studies = tmp_path / "images", tmp_path / "experiments"
    write_result(images, "bn", **RECIPE)
    write_result(images, "ln", stats=(81.5, 81.5))
    write_result(studies / "seed1", "ln", 80.5, 1)
    lines = report.findings_table(images, studies).splitlines()
    assert lines[2:] == ["| test acc %, mean (range) over seeds 0, 1 | - | 81.00 (80.50-81.50) |",
                         "| test acc % with the statistics of test batches of 1 / 64 | 10.00 / 80.00 | "
                         "81.50 at every size |"]  # LN never looks across images


def test_speed_table_comes_from_the_benchmark_file(tmp_path):
    bench = {"machine": "CPU: test", "data_speedup": 30.4, "train_speedup": 1.78, "eval_speedup": 1.77,
             "data_s_conventional": 7.67, "data_s_ours": 0.253, "data_s_ours_epoch": 0.153, "data_s_ours_setup": 2.0,
             "data_s_ours_epoch_in_training": 0.422, "data_speedup_in_training": 14.7, "epochs": 20,
             "train_ips_conventional": 603, "train_ips_ours": 1073, "eval_ips_conventional": 2142,
             "eval_ips_ours": 3788, "eval_gflops_ours": 69.3, "conventional_workers": 2, "train_ips_fused": 1105}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    table = tables.speed_table(tmp_path)
    assert "Machine: CPU: test." in table and "| **30.4x** |" in table and "| **1.78x** |" in table
    assert "| 0.422 s per epoch + the same setup share | 14.7x |" in table
    assert "| 2.15 s | 3.6x |" in table  # one epoch paying all of the setup: 7.67 / (0.153 + 2.0)
    assert "fused SGD instead of foreach, images/s | | 1,105 | 1.03x vs ours |" in table
    assert "torch.compile" not in table  # variants appear only when measured


def test_norm_speed_table_compares_within_rounds(tmp_path):
    assert "No benchmark yet" in tables.norm_speed_table(tmp_path)
    bench = {"machine": "CPU: test", "batch_size": 128, "steps": 40, "eval_images": 5000, "rounds": 3,
             "models": {"bn": {"norm": "bn", "norm_1x1": True}, "gn": {"norm": "gn", "norm_1x1": False},
                        "gn_sep": {"norm": "gn", "norm_1x1": False, "block": "separable", "widths": [32, 48, 96]}},
             # the machine halves its speed in round 2; GN is always 4/5 of BN's speed in training,
             # separable GN half of GN's
             "train_ips": {"bn": [1000, 500, 1000], "gn": [800, 400, 800], "gn_sep": [400, 200, 400]},
             "eval_ips": {"bn": [3000, 1500, 3000], "gn": [3000, 1500, 2000], "gn_sep": [1000, 1000, 1000]}}
    (tmp_path / "bench_norms.json").write_text(json.dumps(bench))
    table = tables.norm_speed_table(tmp_path)
    assert "CPU: test; 3 rounds" in table and "40 training steps of batch 128 and 5,000 test images" in table
    assert ("| Batch Norm (as in its notebook) | full 3x3 | norm + GELU | 1,000 (500-1,000) | 1.00x | 3,000 | 1.00x "
            "| |") in table
    assert "| Group Norm (as in its notebook) | full 3x3 | plain | 800 (400-800) | 1.25x | 2,000 | 1.00x | |" in table
    assert ("| Group Norm (as in its notebook) | depthwise-separable | plain | 400 (200-400) | 2.50x | 1,000 | 3.00x "
            "| 2.00x / 2.00x |") in table  # eval ratios per round: 3, 1.5, 2 -> median 2


def test_architecture_table_builds_each_variant_as_its_run_did(tmp_path):
    write_result(tmp_path, "bn", groups=4, norm_1x1=True)
    table = report.layer_table(tmp_path)
    bn, plain = count_params(Net("bn", norm_1x1=True)), count_params(Net("gn"))
    assert bn > plain and f"| **total** | | | | | **{bn:,}** | **{plain:,}** |" in table
    assert "| c3 | 1x1 conv (+ norm, GELU in BN) | 16→24 |" in table
    assert table.startswith("| layer | what | channels | output | receptive field | params, BN | params, GN and LN |")
    write_result(tmp_path, "ln", groups=4, norm_1x1=True)  # LN built unlike GN: a column each
    table = report.layer_table(tmp_path)
    assert table.startswith("| layer | what | channels | output | receptive field | params, BN | params, GN | params, LN |")
    assert f"| **total** | | | | | **{bn:,}** | **{plain:,}** | **{count_params(Net('ln', norm_1x1=True)):,}** |" in table


def test_tuning_table_summarizes_seeds_and_orders_sweeps_by_number(tmp_path):
    def run(name, val, seed, **cfg):
        return {"name": name, "train_acc": 90.0, "val_acc": val, "cfg": {"norm": "bn", "seed": seed, **cfg}}
    write_jsonl(tmp_path / "gpu_sweep2", [run("base", 80.0, 0), run("seed=1", 82.5, 1), run("seed=2", 81.0, 2)])
    write_jsonl(tmp_path / "cpu_sweep10", [run("whiten=train", 84.0, 0, whiten="train")])
    write_jsonl(tmp_path / "cpu_sweep11", [run("seed=3", 80.5, 3, block="3x3")])  # a key added later, at its old value
    text = tables.tuning_table(tmp_path)
    assert "| BN | `base` | 4 | 81.00 | 80.00 | 82.50 |" in text  # one recipe, four seeds
    assert "whiten=train` | 1 |" not in text                     # one seed is no spread
    order = [line.split("`")[1] for line in text.splitlines() if line.startswith("| gpu_") or line.startswith("| cpu_")]
    assert order == ["seed=1", "seed=2", "base", "whiten=train", "seed=3"]  # sweep 2 before 10, best first within each
    assert "No validation sweeps" in tables.tuning_table(tmp_path / "none")


def test_small_batch_table_has_a_row_per_batch_size_and_a_value_per_seed(tmp_path):
    def run(norm, bs, val, seed=0, stats=None):
        return {"val_acc": val, "cfg": {"norm": norm, "bs": bs, "epochs": 3, "seed": seed},
                **({"val_acc_batch_stats": stats} if stats else {})}
    write_jsonl(tmp_path, [run("gn", 128, 70.0), run("bn", 2, 40.0, stats={"2": 65.5, "128": 50.25}),
                           run("ln", 2, 66.0), run("bn", 128, 72.0, stats={"128": 71.5}), run("gn", 2, 67.125)])
    assert tables.small_batch_table(tmp_path).splitlines()[2:] == [
        "| 2 | 3 | 0 | 40.00 | 65.50 | 50.25 | 67.12 | 66.00 |",  # smallest batch first
        "| 128 | 3 | 0 | 72.00 | 71.50 | 71.50 | 70.00 | - |"]   # a missing run shows as -
    write_jsonl(tmp_path / report.SEED1, [run("gn", 2, 68.0, seed=1), run("bn", 2, 41.0, seed=1,
                                                                         stats={"2": 60.0, "128": 55.0})])
    assert tables.small_batch_table(tmp_path).splitlines()[2] == (
        "| 2 | 3 | 0/1 | 40.00 / 41.00 | 65.50 / 60.00 | 50.25 / 55.00 | 67.12 / 68.00 | 66.00 |")
    assert "No small-batch runs" in tables.small_batch_table(tmp_path / "none")


def test_small_batch_answer_names_each_difference_real_by_the_rule_and_counts_the_rest(tmp_path):
    def run(norm, bs, val, seed, stats=None):
        return {"val_acc": val, "cfg": {"norm": norm, "bs": bs, "epochs": 3, "seed": seed},
                **({"val_acc_batch_stats": {str(bs): stats}} if stats is not None else {})}
    # batch 1: BN far below GN at both seeds (real); GN - LN differs in sign (not shown);
    # BN's running averages below its batch statistics by 30 and 31 (real)
    write_jsonl(tmp_path, [run("bn", 1, 20.0, 0, stats=50.0), run("gn", 1, 66.0, 0), run("ln", 1, 65.0, 0)])
    write_jsonl(tmp_path / report.SEED1, [run("bn", 1, 21.0, 1, stats=52.0), run("gn", 1, 67.5, 1),
                                          run("ln", 1, 68.0, 1)])
    text = tables.small_batch_text(tmp_path)
    assert "batch 1: BN - GN -46.25 (-46.50 to -46.00)" in text
    assert "BN - LN -46.00 (-47.00 to -45.00)" in text  # 46 +- 1: far beyond 8.98 sds
    assert "BN's running averages - its batch statistics -30.50 (-31.00 to -30.00)" in text
    assert "GN - LN" not in text and "The other 1 of the 4 differences are not shown." in text
    assert "2 seeds paired" in text
    assert "No small-batch runs" in tables.small_batch_text(tmp_path / "none")


def test_blocks_table_sets_each_block_design_beside_the_other(tmp_path):
    images, studies = tmp_path / "images", tmp_path / "experiments"
    write_result(images, "gn", 81.5, 0)
    write_result(studies / "seed1", "gn", 80.5, 1)
    write_result(studies / "separable", "gn", 83.0, 0, widths=[32, 48, 96], block="separable")
    table = tables.blocks_table(images, studies)
    full, sep = count_params(Net("gn")), count_params(Net("gn", widths=[32, 48, 96], block="separable"))
    assert f"| Group Norm | full 3x3 | 16/24/32 | {full:,} | 81.50 (0), 80.50 (1) | 81.00 |" in table
    assert f"| Group Norm | depthwise-separable | 32/48/96 | {sep:,} | 83.00 (0) | 83.00 |" in table
    assert "Batch Norm" not in table and "Layer Norm" not in table  # no results, no row
    files = [line.split("`")[1] for line in tables.studies_tables(images, studies, tmp_path)["hardware"].splitlines() if line.startswith("| ") and "`" in line]
    assert files == ["experiments/seed1/results_gn.json", "experiments/separable/results_gn.json"]


def test_ablation_table_pairs_each_arm_with_the_headline_of_its_seed(tmp_path):
    images, studies = tmp_path / "images", tmp_path / "experiments"
    ablation = studies / report.ABLATION
    assert tables.ablation_table(images, studies).startswith("_No ablation runs yet")
    assert tables.plot_ablation(images, studies) is None
    for seed, folder, bn, gn in ((0, images, 82.0, 80.0), (1, studies / "seed1", 83.0, 80.5), (2, studies / "seed2", 82.5, 81.0)):
        write_result(folder, "bn", bn, seed, lr=0.2)
        write_result(folder, "gn", gn, seed, lr=0.3)
    for seed, acc in enumerate((79.0, 78.5, 80.0)):  # below the headline at every seed: real
        write_result(ablation / "no_residual" / f"seed{seed}", "bn", acc, seed, lr=0.2, residual=False)
    for seed, acc in enumerate((81.0, 82.0)):  # two seeds only, one sign
        write_result(ablation / "no_residual" / f"seed{seed}", "gn", acc, seed, lr=0.3, residual=False)
    write_result(ablation / "no_norm" / "lr0.2" / "seed0", "none", 81.5, 0, lr=0.2)
    write_result(ablation / "no_norm" / "lr0.2" / "seed1", "none", 83.5, 1, lr=0.2)  # signs differ
    path = ablation / "no_norm" / "lr0.4" / "seed0" / "results_none.json"
    r = write_result(path.parent, "none", 10.0, 0, lr=0.4)
    r["history"]["train_loss"][1] = float("nan")  # json writes NaN, as the notebook's results file would
    path.write_text(json.dumps(r))
    stuck = write_result(path.parent.parent / "seed1", "none", 10.0, 1, lr=0.4)
    stuck["history"]["test_acc"] = [30.0, 10.0]  # no NaN, but no better than guessing from epoch 2 on
    (path.parent.parent / "seed1" / "results_none.json").write_text(json.dumps(stuck))
    write_result(path.parent.parent / "seed2", "none", 70.0, 2, lr=0.4)
    write_result(ablation / tables.UNPINNED / "no_residual", "bn", 50.0, 0, lr=0.2, residual=False)  # not a finding
    lines = tables.ablation_table(images, studies).splitlines()
    assert lines[2:] == [
        "| BN, peak lr 0.2 (the headline) | 82.00 | 83.00 | 82.50 | | | |",
        "| BN, **no additions**, peak lr 0.2 | 79.00 | 78.50 | 80.00 | -3.00 / -4.50 / -2.50 | -3.33 | **real**; one sign |",
        "| GN, peak lr 0.3 (the headline) | 80.00 | 80.50 | 81.00 | | | |",
        "| GN, **no additions**, peak lr 0.3 | 81.00 | 82.00 | not run | +1.00 / +1.50 / - | +1.25 | not shown; one sign; 2 seeds |",
        "| no norm (BN's notebook), peak lr 0.2 | 81.50 | 83.50 | not run | -0.50 / +0.50 / - | +0.00 | not shown; signs differ; 2 seeds |",
        "| no norm (BN's notebook), peak lr 0.4 | loss NaN in epoch 2 | at chance from epoch 2 | 70.00 | - / - / -12.50 | -12.50 | "
        "2 of 3 seeds fail; the other: not shown; one sign |"]
    assert tables.ablation_text(images, studies) == (
        "Against the headline of the same seed, in points. Without normalization (BN's notebook), by peak lr: "
        "peak 0.2 -0.50 and +0.50 (2 seeds, 0 failed), not shown; peak 0.4: 2 of 3 seeds fail, the other -12.50, not shown. "
        "Without the additions: BN -3.33 (-4.50 to -2.50), real; GN +1.00 and +1.50 (2 seeds, 0 failed), not shown.")
    assert tables.ablation_summary(images, studies) == (
        "Points, paired over 3 pinned seeds. Without norms, against BN: seeds failing at peak 0.4: 2 of 3. "
        "Without the additions, against each norm: BN -3.33 (real). 2 arms of fewer than 3 seeds: no finding.")
    r["history"]["test_acc"] = [10.0, 10.0]  # at chance before the loss turned NaN: both said
    path.write_text(json.dumps(r))
    assert tables.failure(r) == "at chance from epoch 1, loss NaN in epoch 2"
    assert tables.plot_ablation(images, studies) and (ablation / "ablation.png").exists()
    files = [line.split("`")[1] for line in tables.studies_tables(images, studies, tmp_path)["hardware"].splitlines() if line.startswith("| ") and "`" in line]
    assert "experiments/ablation/unpinned/no_residual/results_bn.json" in files  # listed for the record
    assert "experiments/ablation/no_norm/lr0.4/seed{0,1,2}/results_none.json" in files  # one row: alike


def test_scale_table_puts_the_models_without_normalization_beside_the_headline(tmp_path):
    studies = tmp_path / "experiments"
    assert tables.ablation_scale_table(studies).startswith("_No scale results")
    factors = [0.8, 0.6, 0.4, 0.2, 0.1]
    headline = {"severities": {"scale": factors}, "bn_batch_size": 256,
                "accuracy": {"gn": {"scale": [80.0, 79.0, 78.0, 70.0, 50.0, 18.0]}}}
    ablation = {"severities": {"scale": factors}, "accuracy": {"x/model_none.pt": {"scale": [81.0, 80, 76, 60, 25, 14]}},
                "models": {"x/model_none.pt": {"norm": "none", "seed": 1, "config": {"lr": 0.1}}}}
    ablation["accuracy"]["y/model_none.pt"] = {"scale": [78.0, 70, 60, 50, 40, 30]}
    ablation["models"]["y/model_none.pt"] = {"norm": "none", "seed": 0, "config": {"lr": 0.2, "residual": False}}
    for folder, res in (("shift", headline), (tables.SCALE, ablation)):
        (studies / folder).mkdir(parents=True)
        (studies / folder / "results.json").write_text(json.dumps(res))
    assert tables.ablation_scale_table(studies).splitlines() == [
        "| model | pixels x 1 | pixels x 0.8 | pixels x 0.6 | pixels x 0.4 | pixels x 0.2 | pixels x 0.1 | "
        "mean loss over x 0.8 to x 0.1 (points) |", "|---|---|---|---|---|---|---|---|",
        "| GN | 80.00 | 79.00 | 78.00 | 70.00 | 50.00 | 18.00 | 21.00 |",
        "| No Norm, peak lr 0.1, seed 1 | 81.00 | 80.00 | 76.00 | 60.00 | 25.00 | 14.00 | 30.00 |",
        "| No Norm, no residual additions, peak lr 0.2, seed 0 | 78.00 | 70.00 | 60.00 | 50.00 | 40.00 | 30.00 | 28.00 |"]
    ablation["severities"]["scale"] = [0.5] * 5  # another definition of the corruption: not comparable
    (studies / tables.SCALE / "results.json").write_text(json.dumps(ablation))
    with pytest.raises(ValueError, match="different factors"):
        tables.ablation_scale_table(studies)


def test_seeds_table_spans_every_seed_folder(tmp_path):
    images, studies = tmp_path / "images", tmp_path / "experiments"
    for folder, seed, acc in ((images, 0, 81.5), (studies / "seed1", 1, 80.25), (studies / "seed2", 2, 82.0)):
        write_result(folder, "ln", acc, seed)
    table = tables.seeds_table(images, studies)
    assert table.splitlines()[0].startswith("| model | test acc %, seed 0 | test acc %, seed 1 | test acc %, seed 2 |")
    assert "| Layer Norm | 81.50 | 80.25 | 82.00 | 81.25 (80.25-82.00) | 83.00 | +1.75 |" in table
    assert "| test acc %, mean (range) over seeds 0, 1, 2 | 81.25 (80.25-82.00) |" in report.findings_table(images, studies)


def test_the_hardware_table_names_the_kernels_each_run_recorded(tmp_path):
    write_result(tmp_path / "old", "bn")  # written before runs recorded their kernels
    r = write_result(tmp_path / "new", "gn")
    r["kernels"] = {"aten": "AVX2", "onednn": "Intel AVX2", "mkl": "AVX2", "pinned": True, "threads": 2}
    (tmp_path / "new" / "results_gn.json").write_text(json.dumps(r))
    table = report.provenance([tmp_path / "old", tmp_path / "new"], tmp_path)
    assert table.startswith("Every run below: data folder; torch 2.\n")  # said once, not in every row
    assert "| `old/results_bn.json` | cpu | not recorded | 0 |" in table
    assert "| `new/results_gn.json` | cpu | AVX2 / Intel AVX2 / AVX2, 2 threads, pinned | 0 |" in table
    r["kernels"]["cpu_isa"], r["torch"] = "AVX-512", "3"
    (tmp_path / "new" / "results_gn.json").write_text(json.dumps(r))
    table = report.provenance([tmp_path / "old", tmp_path / "new"], tmp_path)
    assert table.startswith("Every run below: data folder.\n")
    assert "| `new/results_gn.json` | cpu | AVX2 / Intel AVX2 / AVX2, 2 threads, pinned (a CPU with AVX-512) | 3 | 0 |" in table


def test_the_hardware_table_merges_runs_alike_but_for_the_norm_or_the_seed_folder(tmp_path):
    for seed in (0, 1, 2):
        for norm in ("bn", "gn"):
            write_result(tmp_path / "arm" / f"seed{seed}", norm, seed=seed)
    write_result(tmp_path / "arm" / "seed3", "bn", seed=3)  # GN has no seed 3: a row of its own
    odd = write_result(tmp_path / "other" / "seed0", "bn", seed=0)
    write_result(tmp_path / "other" / "seed1", "bn", seed=1)
    odd["device"] = "cuda"  # another machine: never merged with the cpu runs
    (tmp_path / "other" / "seed0" / "results_bn.json").write_text(json.dumps(odd))
    for peak, seeds in (("0.1", (0, 1)), ("0.2", (0, 1)), ("0.3", (0,))):  # 0.3 lacks seed 1: a row of its own
        for seed in seeds:
            write_result(tmp_path / "peaks" / f"lr{peak}" / f"seed{seed}", "none", seed=seed)
    folders = [tmp_path / d / f"seed{s}" for d, seeds in (("arm", 4), ("other", 2)) for s in range(seeds)]
    folders += sorted(tmp_path.glob("peaks/lr*/seed*"))
    assert report.provenance(folders, tmp_path).splitlines()[2:] == [
        "| models | results file | hardware | kernels | seed |", "|---|---|---|---|---|",
        "| BN, GN | `arm/seed{0,1,2}/results_{bn,gn}.json` | cpu | not recorded | 0, 1, 2 |",
        "| Batch Norm | `arm/seed3/results_bn.json` | cpu | not recorded | 3 |",
        "| Batch Norm | `other/seed0/results_bn.json` | cuda | not recorded | 0 |",
                "| Batch Norm | `other/seed1/results_bn.json` | cpu | not recorded | 1 |",
        "| No Norm | `peaks/lr{0.1,0.2}/seed{0,1}/results_none.json` | cpu | not recorded | 0, 1 |",
        "| No Norm | `peaks/lr0.3/seed0/results_none.json` | cpu | not recorded | 0 |"]


def test_the_readme_hardware_table_is_the_short_one(tmp_path):
    write_result(tmp_path / "images", "bn")
    table = report.readme_tables(tmp_path / "images", tmp_path / "experiments", tmp_path)["hardware"]
    assert table.splitlines()[:3] == ["| models | results file | hardware | seed |", "|---|---|---|---|",
                                      "| Batch Norm | `images/results_bn.json` | cpu | 0 |"]
    for norm in ("gn", "ln"):  # three runs alike: one row says it
        r = write_result(tmp_path / "images", norm)
        r["kernels"] = {"aten": "AVX2", "onednn": "Intel AVX2", "mkl": "AVX2", "pinned": True, "threads": 2,
                        **({"cpu_isa": "AVX-512"} if norm == "gn" else {})}  # said in experiments/README's table
        (tmp_path / "images" / f"results_{norm}.json").write_text(json.dumps(r))
    table = report.readme_tables(tmp_path / "images", tmp_path / "experiments", tmp_path)["hardware"]
    assert table.splitlines()[2:] == ["| BN, GN, LN | `images/results_{bn,gn,ln}.json` | cpu | 0 |"]


def three_seeds(tmp_path, bn, gn, ln, same=None):
    """Headline runs of seeds 0-2 (seed 0 in images/, the others in seed<k>/), and BN's like-for-like runs."""
    images, studies = tmp_path / "images", tmp_path / "experiments"
    for s in range(3):
        folder = images if s == 0 else studies / f"seed{s}"
        for norm, accs in (("bn", bn), ("gn", gn), ("ln", ln)):
            write_result(folder, norm, accs[s], s)
        if same:
            write_result(studies / "like_for_like" / f"seed{s}", "bn", same[s], s)
    return images, studies


def test_the_rule_is_a_paired_t_test_over_the_seeds():
    runs = lambda accs: [{"seed": s, "test_acc": a} for s, a in enumerate(accs)]
    p = report.paired(runs([82.0, 83.0, 82.5]), runs([80.0, 81.2, 80.3]))  # differences 2.0, 1.8, 2.2
    assert [round(d, 6) for d in p["diffs"]] == [2.0, 1.8, 2.2] and round(p["mean"], 6) == 2.0
    assert round(p["sd"], 6) == 0.2 and round(p["t"], 3) == round(2.0 / (0.2 / 3 ** 0.5), 3) and p["real"]
    wide = report.paired(runs([82.0, 83.0, 82.5]), runs([80.0, 82.9, 80.3]))  # 2.0, 0.1, 2.2: t = 2.3 < 4.303
    assert not wide["real"] and report.verdict(wide) == "not shown; one sign"
    assert report.verdict(report.paired(runs([1.0, 2.0, 3.0]), runs([2.0, 1.0, 2.0]))) == "not shown; signs differ"
    assert not report.paired(runs([82.0]), runs([80.0]))["real"]  # one pair shows nothing
    assert report.paired(runs([82.0, 83.0]), runs([80.0, 81.2]))["real"]  # two pairs: t = 19.0 > 12.706
    assert not report.paired(runs([82.0, 83.0]), runs([80.0, 81.7]))["real"]  # 2.0, 1.3: t = 5.6 < 12.706
    by_seed = report.paired(runs([82.0, 83.0, 82.5])[::-1], runs([80.0, 81.2, 80.3]))  # paired by seed, not order
    assert sorted(round(d, 6) for d in by_seed["diffs"]) == [1.8, 2.0, 2.2]


def test_the_gaps_and_the_like_for_like_study_are_paired_by_seed(tmp_path):
    images, studies = three_seeds(tmp_path, bn=[83.0, 82.8, 83.1], gn=[80.0, 80.5, 81.0], ln=[80.5, 80.2, 80.9])
    gaps = report.gaps_text(images, studies)
    assert gaps == ("Over 3 seeds, BN leads GN by 2.47 points on average and LN by 2.43 (by seed: 2.10 to 3.00 and "
                    "2.20 to 2.60). Both leads are too large to be the luck of the seed ([how we judge](#findings-about-"
                    "normalization)); the gap between GN and LN is not.")
    assert tables.like_for_like_text(images, studies) == "_No like-for-like runs yet._"
    apart = three_seeds(tmp_path / "d", bn=[83.0, 82.8, 83.1], gn=[81.0, 81.5, 82.0], ln=[80.0, 80.4, 80.9])
    assert report.gaps_text(*apart).endswith("the gap between GN and LN is too.")  # GN - LN: 1.0, 1.1, 1.1, real
    one = three_seeds(tmp_path / "e", bn=[83.0, 82.8, 83.1], gn=[80.0, 80.5, 81.0], ln=[82.0, 83.9, 82.1])
    assert "Both leads are too large to be the luck of the seed against GN only (" in report.gaps_text(*one)
    images, studies = three_seeds(tmp_path / "b", bn=[83.0, 82.8, 83.1], gn=[80.0, 80.5, 81.0], ln=[80.5, 80.2, 80.9],
                                  same=[82.2, 82.1, 82.5])
    gaps = report.gaps_text(images, studies)
    assert ("With GN's and LN's exact layers (no extra norms after c3, c6), BN still leads GN by "
            "1.77 and LN by 1.73 (1.50 to 2.20 and 1.60 to 1.90). All four leads are too large to be the luck of the "
            "seed ([how we judge](#findings-about-normalization)); the gap between GN and LN is not.") in gaps
    mixed = three_seeds(tmp_path / "c", bn=[83.0, 82.8, 83.1], gn=[80.0, 80.5, 81.0], ln=[80.5, 80.2, 80.9],
                        same=[80.2, 82.1, 80.5])  # the same network: leads from -0.5 to 1.9, not shown
    assert ("The leads with each recipe are too large to be the luck of the seed; with the same layers, small "
            "enough to be the luck of the seed (") in report.gaps_text(*mixed)
    text = tables.like_for_like_text(images, studies)
    assert text.startswith("On the same network, BN against GN: +1.77 points (+1.50 to +2.20), real; against LN: "
                           "+1.73 points (+1.60 to +1.90), real. BN's recipe against BN on the same network: +0.70 "
                           "points (+0.60 to +0.80), real.")
    table = tables.like_for_like_table(images, studies).splitlines()
    assert table[2] == "| 0 | 83.00 | 82.20 | 80.00 | 80.50 |"
    assert table[-1] == "| mean (range) | 82.97 (82.80-83.10) | 82.27 (82.10-82.50) | 80.50 (80.00-81.00) | 80.53 (80.20-80.90) |"
    pairs = report.pairs_table(images, studies)
    assert "| BN - GN, the same network | +2.20 | +1.60 | +1.50 | +1.77 | **real**; one sign |" in pairs
