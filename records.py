"""Run records and reproducibility: the bookkeeping around a run, kept apart from the lesson in utils.py.

- the CPU kernels: pin torch to the published runs' AVX2 kernels and judge the pin by a kernel fingerprint;
- the files of a run: results_<norm>.json, model_<norm>.pt (same weights, same bytes) and the figures;
- the rerun verdict: is this run the committed (published) run of the same settings, bit for bit?
"""
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import model as net
import utils

ROOT = Path(__file__).resolve().parent
PUBLISHED = ("images", "experiments/seed1", "experiments/seed2")  # the folders of the published runs


# ----------------------------------------------------------------------------- the CPU

def read_cpuinfo(cpuinfo="/proc/cpuinfo"):
    """(model name, set of flags) of the first CPU Linux lists; (None, None) where there is no such file."""
    path = Path(cpuinfo)
    if not path.exists():
        return None, None
    first = {}
    for line in path.read_text().splitlines():  # one block per CPU: keep the first CPU's values
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    return first.get("model name"), set(first.get("flags", "").split())


def cpu_isa(cpuinfo="/proc/cpuinfo"):
    """The widest vector instructions of this CPU ("AVX-512", "AVX2", "below AVX2"); None where Linux lists none."""
    _, flags = read_cpuinfo(cpuinfo)
    if flags is None:
        return None
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "below AVX2"


def hardware(device):
    """Where the run happened, in words: the GPU, or the CPU with torch's kernels (pinned or not) and threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = read_cpuinfo()[0] or platform.machine()
    threads, isa = torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()
    pinned = ", pinned" if _KERNELS and cpu_kernels()["pinned"] else ""
    return f"CPU: {name} ({isa}{pinned}), {os.cpu_count()} cores, {threads} torch thread{'s' if threads > 1 else ''}"


# ----------------------------------------------------------------------------- the kernel pin

PIN_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PIN_THREADS = 2  # the published CPU runs': threads split every sum differently
PIN_FINGERPRINT = "aa19b08ea7d88f50"  # kernel_fingerprint() of the published runs' kernels (torch 2.14.1)
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, restored when the pin is turned off
_KERNELS = {}  # what cpu_kernels() measured, once per process: every library fixes its choice at first use


def kernel_fingerprint():
    """16 hex digits of a sha256 over what the kernels compute: train-split statistics, then for a small Net of
    each norm (channels_last, batch 8) its initial weights, one training step (forward, smoothed loss, backward,
    SGD update) and an eval forward. Two processes with the same fingerprint train bit for bit alike. It runs
    model.py's Net and utils.sgd, so an edit of either changes it too. Runs under a forked generator.

    Left out: MKL, which only batch-1 convolutions reach (the batch-statistics test's first column): the
    rerun verdict compares that column."""
    digest = hashlib.sha256()
    add = lambda *ts: [digest.update(t.detach().float().contiguous().numpy().tobytes()) for t in ts]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.arange(8) % 10
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pixels = x.float() / 255
        add(pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)))
        x = ((pixels - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)
        for norm in ("bn", "gn", "ln"):
            model = net.Net(norm, norm_1x1=norm == "bn").to(memory_format=torch.channels_last)
            add(*model.parameters())
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=0.1)
            loss.backward()
            utils.sgd(model, 0.1).step()
            add(out, loss, *(p.grad for p in model.parameters()), *model.parameters(), model.eval()(x))
    return digest.hexdigest()[:16]


def parse_verbose(text, onednn_built=True, mkl_built=True):
    """{"onednn": ..., "mkl": ...}: the instruction set each library's verbose output names ("unknown": it named
    none, as MKL on an AMD CPU; None: torch was built without it). For the record only: the fingerprint decides."""
    import re
    onednn = re.search(r"onednn_verbose.*,isa:(.+)", text)
    mkl = re.search(r"MKL_VERBOSE .*?architecture .*?\(Intel\(R\) ([^)]+)\)", text)
    said = lambda m, built: (m[1].strip() if m else "unknown") if built else None
    return {"onednn": said(onednn, onednn_built), "mkl": said(mkl, mkl_built)}


def _verbose_lines():
    """What oneDNN and MKL (where built in) write from C about one conv and one matmul of constant tensors."""
    sys.stdout.flush()
    x = torch.ones(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)  # C code writes to file descriptor 1, not to sys.stdout
        try:
            with contextlib.ExitStack() as verbose:  # a library torch was built without has no verbose mode
                for lib in (b for b in (torch.backends.mkldnn, torch.backends.mkl) if b.is_available()):
                    verbose.enter_context(lib.verbose(1))
                F.conv2d(x, torch.ones(16, 16, 3, 3).contiguous(memory_format=torch.channels_last), padding=1)
                torch.ones(64, 64) @ torch.ones(64, 64)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return f.read().decode(errors="replace")


def cpu_kernels():
    """The CPU kernels of this process: ATen's capability, what oneDNN and MKL name, the kernel_fingerprint, the
    threads, and "pinned": the pin ran, the fingerprint is the published runs' and the threads and variables are
    still the pin's. The first call runs torch's first operations if nothing has, and so fixes every library's
    choice for the process."""
    if not _KERNELS:
        libs = parse_verbose(_verbose_lines(), torch.backends.mkldnn.is_available(), torch.backends.mkl.is_available())
        _KERNELS.update(cpu_isa=cpu_isa(), aten=torch.backends.cpu.get_cpu_capability(), **libs,
                        fingerprint=kernel_fingerprint(), pinned=False)
    threads = torch.get_num_threads()
    held = _KERNELS["pinned"] and threads == PIN_THREADS and all(os.environ.get(k) == v for k, v in PIN_ENV.items())
    return {**_KERNELS, "threads": threads, "pinned": held}


def _fresh_fingerprint(threads):
    """kernel_fingerprint() in a new Python under the pin: what this CPU computes when nothing ran before the pin."""
    code = f"import torch, records\ntorch.set_num_threads({threads})\nprint(records.kernel_fingerprint())"
    probe = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, **PIN_ENV})
    said = (probe.stdout.strip() or probe.stderr.strip()).splitlines()
    if probe.returncode or not said:
        raise RuntimeError(f"pin_kernels: a fresh Python could not compute the kernel fingerprint (exit code "
                           f"{probe.returncode}: {said[-1] if said else 'it printed nothing'}). Check that torch "
                           "imports in a plain `python`, or set pin_cpu = False")
    return said[-1]


def pin_kernels(threads=PIN_THREADS, off_switch="pin_cpu = False", cpuinfo="/proc/cpuinfo"):
    """Run torch's CPU kernels with AVX2 instructions on `threads` threads, as the published runs did, and judge
    the result by kernel_fingerprint(): equal to PIN_FINGERPRINT, the run computes the published runs' bits on any
    x86-64 CPU with AVX2, Intel or AMD. Returns cpu_kernels().

    Each library reads its variable once (ATen at its first operation, oneDNN at its first conv), so this must
    run before torch computes anything: if something ran first, it raises rather than let a run go on half
    pinned. ARM CPUs are left as they are; an x86-64 CPU without AVX2 is refused before anything runs (AVX2 code
    would stop it with an illegal instruction). off_switch: how the caller turns the pin off."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"pin_kernels: this {platform.machine()} CPU has no AVX2; running its own kernels, so the last digits "
              "differ from the published runs")
        return cpu_kernels()
    if cpu_isa(cpuinfo) == "below AVX2":
        raise RuntimeError("pin_kernels: this x86-64 CPU has no AVX2, so it cannot run the published runs' AVX2 "
                           f"kernels. Set {off_switch} to run its own kernels (the last digits will differ)")
    os.environ.update(PIN_ENV)
    torch.set_num_threads(threads)
    found = cpu_kernels()
    fresh = found["fingerprint"] if found["fingerprint"] == PIN_FINGERPRINT else _fresh_fingerprint(threads)
    if found["aten"] != "AVX2" or found["fingerprint"] != fresh:
        raise RuntimeError(f"pin_kernels: too late, torch computed something before the pin (its kernels: ATen "
                           f"{found['aten']}, fingerprint {found['fingerprint']}; pinned they give {fresh}). Restart "
                           "the kernel (in Colab: Runtime > Restart session) and run all cells from the top, or set "
                           f"{off_switch} to run this CPU's own kernels (also if this CPU lacks AVX2)")
    if fresh != PIN_FINGERPRINT:
        causes = [f"torch {torch.__version__} computes other bits than the published runs' torch 2.14.1",
                  "model.py's Net or utils.sgd was changed (the fingerprint trains both)"]
        if threads != PIN_THREADS:
            causes.insert(0, f"this run's {threads} thread(s) split the sums otherwise than the published runs' {PIN_THREADS}")
        print(f"pin_kernels: AVX2 on {threads} thread{'s' if threads > 1 else ''}, but the kernel fingerprint is "
              f"{fresh}, not the published runs' {PIN_FINGERPRINT}: either " + ", or ".join(causes) +
              ". Expect their accuracy within a seed's reach, not their digits; recorded as not pinned")
    _KERNELS["pinned"] = fresh == PIN_FINGERPRINT
    return cpu_kernels()


def choose_kernels(device, pin_cpu=True, deterministic=False, off_switch="pin_cpu = False"):
    """Fix which kernels the run uses, before torch computes anything; returns them, for the results file.

    CPU: pin_kernels() with pin_cpu, else this CPU's fastest kernels on torch's own thread count. GPU: cuDNN's
    fastest convolutions, timed at the first step (so reruns differ in late digits), or with deterministic=True
    only deterministic algorithms: slower, bit for bit on the same GPU and software."""
    if device.type != "cuda":
        if pin_cpu:
            return pin_kernels(off_switch=off_switch)
        for k, v in PIN_ENV.items():  # a pin inherited from a parent process, or set by an earlier run here
            if os.environ.get(k) == v:
                del os.environ[k]
        torch.set_num_threads(DEFAULT_THREADS)
        return cpu_kernels()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for repeatable sums
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    return {"gpu": torch.cuda.get_device_name(device), "deterministic": deterministic,
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


# ----------------------------------------------------------------------------- the files of a run

def sha256(raw):
    return hashlib.sha256(raw).hexdigest()


def atomic_write(path, write):
    """write(tmp_path) then rename: an interrupted run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private (0600); the result should not be
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the name does: after a power loss, old or new
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _fsync_dir(folder):
    """Make a rename in folder durable (POSIX; Windows cannot open a folder and needs nothing)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_fig(fig, out_dir, name):
    """Write fig to <out_dir>/<name> as a PNG (out_dir None: only return it, for the notebook to show)."""
    if out_dir is not None:
        atomic_write(Path(out_dir) / name, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    return fig


def json_text(obj, indent=1):
    """Strict JSON (any reader parses it): a NaN or infinity, as a diverged run's loss, is written null. Floats
    are written in full: JSON gives back the same double."""
    clean = lambda v: (None if isinstance(v, float) and not math.isfinite(v) else
                       {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else
                       [clean(x) for x in v] if isinstance(v, (list, tuple)) else v)
    return json.dumps(clean(obj), indent=indent, allow_nan=False) + "\n"


def data_sha256(data):
    """sha256 of the test images and labels: the same copy of CIFAR-10's test split gives the same hex digest."""
    return sha256(data.x_test.cpu().contiguous().numpy().tobytes() + data.y_test.cpu().numpy().astype("int64").tobytes())


def net_settings(result):
    """How a results file's model was built, as model.settings() describes it (missing keys: Net's defaults)."""
    config = result.get("config", {})
    keys = [k for k in net.settings() if k != "norm" and k in config]
    return net.settings(result["norm"], **{k: config[k] for k in keys})


def checkpoint_bytes(model, data):
    """model_<norm>.pt's bytes: the weights, how the Net was built (model.config) and the train statistics its
    inputs are normalized with. Serialized in memory, so the archive's name is fixed: same weights, same bytes."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}  # plain tensors, any device
    ckpt = {"net": model.config, "mean": data.mean.flatten().tolist(), "std": data.std.flatten().tolist(),
            "state_dict": state}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def save_results(out_dir, model, hist, seed, device, data, extra=None, figures=None):
    """Write a run to out_dir: model_<norm>.pt, the figures ({name: figure} -> <name>_<norm>.png), then last
    results_<norm>.json: final-epoch accuracies, the full history, provenance, the kernels, the weights' sha256
    and the train statistics the model's inputs are normalized with. An older results file is removed first: a
    run interrupted while saving leaves no results file, never an old one beside new weights or figures."""
    config = {**(extra or {}).get("config", {}), **model.config}
    del config["norm"]  # a top-level key of the results file
    res = {
        "norm": model.norm,
        "params": net.count_params(model),
        "epochs": len(hist["test_acc"]),
        "train_acc": hist["train_acc"][-1],
        "test_acc": hist["test_acc"][-1],
        "minutes": round(sum(hist["seconds"]) / 60, 2),
        "history": hist,
        "precision": "full",  # every number as computed (older files rounded the history to 6 decimals)
        "seed": seed,
        "device": hardware(torch.device(device)),
        "data": data.source,
        "test_data_sha256": data_sha256(data),
        "mean": data.mean.flatten().tolist(),  # the model's inputs: (pixels / 255 - mean) / std, per channel
        "std": data.std.flatten().tolist(),
        "torch": torch.__version__,
        **(extra or {}),
        "config": config,  # how the net is built (model.config) and trained
    }
    if torch.device(device).type != "cuda":
        res["kernels"] = cpu_kernels()  # as they are now: a torch.set_num_threads since the start shows here
    raw = checkpoint_bytes(model, data)
    results = Path(out_dir) / f"results_{model.norm}.json"
    results.unlink(missing_ok=True)
    atomic_write(Path(out_dir) / f"model_{model.norm}.pt", lambda p: Path(p).write_bytes(raw))
    for name, fig in (figures or {}).items():
        save_fig(fig, out_dir, f"{name}_{model.norm}.png")
    res["weights_sha256"] = sha256(raw)
    atomic_write(results, lambda p: Path(p).write_text(json_text(res)))
    return res


def results_beside(path):
    """The results_<norm>.json written beside a saved model_<norm>.pt."""
    path = Path(path)
    return path.with_name(path.stem.replace("model_", "results_", 1) + ".json")


def read_checkpoint(raw, name):
    """A checkpoint's bytes as a dict of tensors and plain values; one that holds pickled Python objects (which
    could run code when loaded) is refused."""
    import pickle
    import zipfile
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise ValueError(f"{name} cannot be read: it is not a complete torch checkpoint (a zip archive); truncated, "
                         "or another kind of file")
    try:
        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{name} holds pickled Python objects, not only tensors and plain values, so it is not "
                         "loaded (unpickling could run code). Use a checkpoint written by save_results, or "
                         f"re-save your state_dict with torch.save. ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{name} is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict of weights")
    return ckpt


def load_checkpoint(path):
    """A saved model_<norm>.pt as {"net", "mean", "std", "state_dict"}, checked against the results_<norm>.json
    beside it, which must be its own run's: one from another run is an error, not a silent mismatch."""
    path, results = Path(path), results_beside(path)
    raw = path.read_bytes()
    ckpt = read_checkpoint(raw, path.name)
    res = json.loads(results.read_text()) if results.exists() else None
    if "state_dict" not in ckpt:  # a bare state_dict: its results file says how it was built
        if res is None:
            raise FileNotFoundError(f"{results} not found: {path.name} holds only weights and needs the results file "
                                    "written beside it, whose config says how the network was built")
        ckpt = {"net": net_settings(res), "mean": res["mean"], "std": res["std"], "state_dict": ckpt}
    ckpt["net"] = net.settings(**ckpt["net"])
    if res is not None and net_settings(res) != ckpt["net"]:
        raise ValueError(f"{path.name} and {results.name} in {path.parent} come from different runs: the weights "
                         f"say {ckpt['net']}, the results file {net_settings(res)}. Keep the two files of one run "
                         "together")
    if res is not None and res.get("weights_sha256", sha256(raw)) != sha256(raw):
        raise ValueError(f"{path.name} in {path.parent} is not the file its results file describes (sha256 "
                         f"{sha256(raw)[:12]}..., recorded {res['weights_sha256'][:12]}...): a run interrupted while "
                         "saving, or weights copied from another run. Keep the two files of one run together")
    return ckpt


def load_model(path, device="cpu"):
    """A saved model_<norm>.pt as the Net it was built as, weights loaded, in eval mode (see load_checkpoint).
    Its inputs must be normalized with the statistics it was trained with: as_trained(data, load_checkpoint(path))."""
    ckpt = load_checkpoint(path)
    model = net.Net(**ckpt["net"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def as_trained(data, stats):
    """data, normalizing with the mean and std a model was trained with (`stats`: its results file or checkpoint),
    whichever copy of the images is loaded now."""
    stat = lambda k: torch.tensor(stats[k], dtype=torch.float32, device=data.x_test.device).view(1, 3, 1, 1)
    return dataclasses.replace(data, mean=stat("mean"), std=stat("std"))


def load_results(out_dir="images"):
    """{norm: results} for every results_<norm>.json present, in bn, gn, ln order; a history's null reads as NaN."""
    found = {n: Path(out_dir) / f"results_{n}.json" for n in utils.NORM_NAMES}
    results = {n: json.loads(p.read_text()) for n, p in found.items() if p.exists()}
    for r in (r for r in results.values() if "history" in r):
        r["history"] = {k: [math.nan if v is None else v for v in vs] for k, vs in r["history"].items()}
    return results


def where_run(res):
    """What kind of run a results file records: 'GPU', 'CPU, pinned' or 'CPU, not pinned', and its data."""
    kernels = res.get("kernels") or {}
    kind = "GPU" if not kernels else "CPU, pinned" if kernels.get("pinned") else "CPU, not pinned"
    return kind, res.get("test_data_sha256")


def save_comparison(out_dir="images"):
    """comparison.png of the three models in out_dir, once all three have results; runs of another kind of
    hardware or other data than the first are labelled so, since their curves are not like for like."""
    results = load_results(out_dir)
    missing = [f"results_{n}.json" for n in ("bn", "gn", "ln") if n not in results]
    if missing:
        print(f"comparison.png waits for {', '.join(missing)} in {out_dir}/")
        return None
    results = {n: results[n] for n in ("bn", "gn", "ln")}
    kinds = {n: where_run(r) for n, r in results.items()}
    notes = None
    if len(set(kinds.values())) > 1:  # not like for like: each line says its hardware, and other data
        notes = {n: kind + (", other data" if data != kinds["bn"][1] else "") for n, (kind, data) in kinds.items()}
    fig = utils.plot_comparison({n: r["history"] for n, r in results.items()}, notes)
    return save_fig(fig, out_dir, "comparison.png")


# ----------------------------------------------------------------------------- the rerun verdict

def committed(path, root=ROOT):
    """The bytes of path (relative to root) as the repository's last commit holds them; None where that commit
    has no such file; raises OSError where root is not a git clone or git is missing."""
    try:
        probe = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-prefix"], capture_output=True, text=True)
    except FileNotFoundError:
        raise OSError("git is not installed") from None
    if probe.returncode:
        raise OSError(f"{root} is not a git clone")
    show = subprocess.run(["git", "-C", str(root), "show", f"HEAD:./{path}"], capture_output=True)
    return show.stdout if show.returncode == 0 else None


def run_settings(res):
    """A results file's settings as one dict: how the net is built (model.settings) and how it was trained."""
    return {**res.get("config", {}), **net_settings(res)}


def _differences(mine, theirs):
    plain = lambda v: json.loads(json.dumps(v))  # as a results file holds it: lists, not tuples
    keys = sorted(set(mine) | set(theirs))
    return [f"{k} {mine.get(k)!r} (published: {theirs.get(k)!r})" for k in keys if plain(mine.get(k)) != theirs.get(k)]


def published_run(norm, seed, config, epochs, data, kernels, root=ROOT):
    """The committed run this run repeats, read from the repository's last commit (never from files on disk,
    which a rerun may have replaced or edited), as {"path", "results", "state_dict" (None where its weights are
    not committed)}; or None, after saying in one line why there is nothing to compare with. The same run: same
    norm, seed, settings (config: the model's and the training's), epochs and data, and pinned CPU kernels on
    both sides. Call it before training: a mismatch is said before the first epoch."""
    def nothing(why):
        print(f"nothing to compare with: {why}")
    if "gpu" in kernels:
        return nothing("a GPU run is never compared with the published runs, which ran on a CPU (GPU kernels "
                       "compute other last digits)")
    if not kernels.get("pinned"):
        return nothing("this run's CPU kernels are not pinned to the published runs' (pin_cpu), so only its "
                       "accuracy, not its digits, can match")
    found = None
    for folder in PUBLISHED:
        where = f"{folder}/results_{norm}.json"
        try:
            raw = committed(where, root)
        except OSError as e:
            return nothing(f"{e}, so the committed runs cannot be told apart from files written here since "
                           "(clone the repository with git to compare)")
        if raw is not None and json.loads(raw)["seed"] == seed:
            found = where, raw
            break
    if found is None:
        return nothing(f"no published {utils.NORM_NAMES[norm]} run has seed {seed}")
    where, raw = found
    res = json.loads(raw)
    local = Path(root) / where
    if local.exists() and local.read_bytes() != raw:
        print(f"{where} has changed since the last commit: comparing with the committed version")
    if res.get("test_data_sha256") != data_sha256(data) or res.get("mean") != data.mean.flatten().tolist():
        return nothing(f"this run's images differ from those of {where} (another copy of CIFAR-10, or a subset), "
                       "and only runs on the same images can match")
    mine = run_settings({"norm": norm, "config": config})
    differs = _differences({**mine, "epochs": epochs}, {**run_settings(res), "epochs": res["epochs"]})
    if differs:
        return nothing(f"this run differs from {where} in " + ", ".join(differs))
    recorded = res.get("kernels") or {}
    if not recorded.get("pinned") or recorded.get("fingerprint", PIN_FINGERPRINT) != PIN_FINGERPRINT:
        return nothing(f"{where} does not record the pinned kernels (fingerprint {PIN_FINGERPRINT})")
    if departed_in_training(res.get("reproduction") or {}):
        return nothing(f"{where} records that its training departed from its own published run")
    pt = where.replace("results_", "model_").replace(".json", ".pt")
    weights = committed(pt, root)
    if weights is None and (Path(root) / pt).exists():
        print(f"{pt} is a local file, not part of the published run: compared without it")
    state = read_checkpoint(weights, pt)["state_dict"] if weights is not None else None
    if weights is not None and sha256(weights) != res.get("weights_sha256"):
        return nothing(f"the committed {pt} is not the file {where} describes")
    print(f"a published run has these settings: {where}; each epoch is compared with it")
    return {"path": where, "results": res, "state_dict": state}


def departed_in_training(verdict):
    """Whether a recorded verdict says the run's training departed (its history or weights), not only the
    evaluations after training: a run whose training repeated its reference can serve as the next reference."""
    if verdict.get("identical") is not False:
        return False
    part = verdict.get("part") or ("evaluations" if verdict["line"].startswith(EVALUATIONS_DEPART) else "training")
    return part != "evaluations"


EVALUATIONS_DEPART = "departs from the published run in the evaluations after training"


def _same(mine, theirs, digits):
    """mine equals theirs as a results file holds it: to `digits` decimals (None: exactly); NaN equals null."""
    if mine is None or (isinstance(mine, float) and math.isnan(mine)):
        return theirs is None or (isinstance(theirs, float) and math.isnan(theirs))
    if theirs is None:
        return False
    return (mine if digits is None else round(mine, digits)) == theirs


def digits(published, part):
    """How many decimals the published file holds for `part` ("history" or "batch_stats_acc"); None: all."""
    if published["results"].get("precision") == "full":
        return None
    return {"history": 6, "batch_stats_acc": 2}.get(part)


def epoch_departs(hist, published, epoch):
    """None when epoch (1-based) of hist equals the published history's in every number but the seconds (at the
    precision the file holds), else (key, this run's value, the published value) of the first that differs."""
    ref, places = published["results"]["history"], digits(published, "history")
    for k in (k for k in ref if k != "seconds"):
        mine = hist[k][epoch - 1] if k in hist else None
        theirs = ref[k][epoch - 1] if epoch <= len(ref[k]) else None
        if not _same(mine, theirs, places):
            return k, mine, theirs
    return None


def epoch_check(published):
    """For utils.fit's on_epoch: each epoch's line ends '= published' or says what differs (None: no check)."""
    if published is None:
        return None

    def check(hist):
        off = epoch_departs(hist, published, len(hist["test_acc"]))
        return "  = published" if off is None else f"  differs from published: {off[0]} {off[1]} against {off[2]}"
    return check


def _extras_depart(extra, published):
    """The first extra evaluation (flip-TTA, batch-statistics accuracies, confusion matrix) that differs from
    the published run's, as (name, this run's, the published), or None."""
    ref = published["results"]
    if extra.get("test_acc_flip_tta") != ref.get("test_acc_flip_tta"):
        return "test_acc_flip_tta", extra.get("test_acc_flip_tta"), ref.get("test_acc_flip_tta")
    places = digits(published, "batch_stats_acc")
    mine, theirs = extra.get("batch_stats_acc", {}), ref.get("batch_stats_acc", {})
    for size in sorted(set(mine) | set(theirs), key=int):
        if not _same(mine.get(size), theirs.get(size), places):
            return f"batch_stats_acc[{size}]", mine.get(size), theirs.get(size)
    if extra.get("confusion") != ref.get("confusion"):
        return "confusion", "another matrix", "the published one"
    return None


def reproduction(hist, model, data, extra, published):
    """The verdict on a finished run against published_run(): {"published", "identical", "epoch" (the first that
    departs, or None), "part" ("history", "evaluations" or "weights" that departed, or None), "line"}. Compared: every number of every epoch, the extra evaluations, the weights'
    sha256 (as save_results will write them) and, where committed, the weights tensor by tensor."""
    ref = published["results"]
    epochs, theirs = len(hist["test_acc"]), len(ref["history"]["test_acc"])
    first = next(((e, off) for e in range(1, min(epochs, theirs) + 1) if (off := epoch_departs(hist, published, e))),
                 None)
    raw = checkpoint_bytes(model, data)
    full = digits(published, "history") is None
    line, departs, part = None, None, "history"
    if first:
        departs, (k, a, b) = first
        gap = f" (difference {a - b:+.6g})" if isinstance(a, float) and isinstance(b, float) else ""
        line = f"departs from the published run at epoch {departs}: {k} {a} against {b}{gap}"
    elif epochs != theirs:
        departs = min(epochs, theirs) + 1
        line = f"departs from the published run at epoch {departs}: it ran {theirs} epochs, this run {epochs}"
    elif (off := _extras_depart(extra, published)):
        departs, part, line = epochs, "evaluations", f"{EVALUATIONS_DEPART}: {off[0]} {off[1]} against {off[2]}"
    elif published["state_dict"] is not None and not _same_tensors(model, published["state_dict"]):
        departs, part, line = epochs, "weights", f"departs from the published run in the weights after epoch {epochs}"
    elif full and sha256(raw) != ref.get("weights_sha256"):
        departs, part, line = epochs, "weights", (f"departs from the published run in the weights after epoch "
                                                  f"{epochs}: sha256 {sha256(raw)[:12]}... against "
                                                  f"{str(ref.get('weights_sha256'))[:12]}...")
    if line is None:
        what = (f"all {epochs} epochs, the flip-TTA, batch-statistics and confusion evaluations and the weights"
                if published["state_dict"] is not None or full else
                f"all {epochs} epochs and the flip-TTA, batch-statistics and confusion evaluations")
        if full:
            line = f"identical to the published run: {what}, bit for bit"
        else:
            line = (f"identical to the published run at the precision its file holds: {what} (its history to 6 "
                    "decimals, its batch-statistics accuracies to 2" +
                    ("; its weights tensor by tensor" if published["state_dict"] is not None else
                     "; its weights are not published and its older file records no reproducible sha256") +
                    ("" if "fingerprint" in ref.get("kernels", {}) else "; it records no kernel fingerprint") + ")")
    return {"published": published["path"], "identical": departs is None, "epoch": departs,
            "part": None if departs is None else part, "line": line}


def _same_tensors(model, state):
    mine = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return mine.keys() == state.keys() and all(torch.equal(mine[k], state[k]) for k in mine)
