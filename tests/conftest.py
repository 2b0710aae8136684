"""Shared fixtures: tiny synthetic CIFAR-shaped image folders, so no test needs the real data."""
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))  # the studies: shift.py, sweep.py, tables.py, the benchmarks
torch.set_num_threads(1)  # the tensors here are tiny: one thread is faster, and immune to a busy machine

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_image_folder(root, n_train=12, n_test=6, size=32, seed=0):
    """Write train/<class>/*.png and test/<class>/*.png; each class has its own colour, so it is learnable."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(len(CLASSES), 3, 1, 1, generator=g) * 200
    for split, n in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(CLASSES):
            d = Path(root) / split / name
            d.mkdir(parents=True)
            for i in range(n):
                noise = torch.rand(3, size, size, generator=g) * 55
                pixels = (colours[k] + noise).to(torch.uint8).permute(1, 2, 0).numpy()
                Image.fromarray(pixels).save(d / f"{i:04d}.png")
    return Path(root)


def jiggled(model, seed=0):
    """model with every parameter moved off its init (the zero-started branch scales too), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("cifar") / "cifar10")


@pytest.fixture
def data(image_folder):
    import utils
    return utils.load_cifar10(image_folder)
