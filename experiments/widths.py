"""The channel-width runs (tuning/bn_w*_8ep.log): python experiments/widths.py name norm w1 w2 w3 epochs lr bs pad [threads=1 seed=0 wd= ls= pct=]
Unpinned (records.pin_kernels is not called): the CPU's own kernels, on `threads` threads."""
import sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch
import utils
from model import Net, count_params
name, norm, w1, w2, w3, epochs, lr, bs, pad, *rest = sys.argv[1:]
kw = dict(r.split("=") for r in rest)
torch.set_num_threads(int(kw.pop("threads", 1)))
seed = int(kw.pop("seed", 0))
wd = float(kw.pop("wd", 5e-4)); ls = float(kw.pop("ls", 0.1)); pct = float(kw.pop("pct", 0.25))
gen = utils.set_seed(seed)
data = utils.load_cifar10(ROOT / "data/cifar10", "cpu", seed=seed)
model = Net(norm, 4, (int(w1), int(w2), int(w3))).to(memory_format=torch.channels_last)
print(name, "params", count_params(model), flush=True)
t0 = time.time()
hist = utils.fit(model, data, int(epochs), int(bs), float(lr), gen, weight_decay=wd, label_smoothing=ls,
                 pad=int(pad), pct_start=pct)
print("FINAL", name, hist["train_acc"][-1], hist["test_acc"][-1], round((time.time() - t0) / 60, 1), "min", flush=True)
