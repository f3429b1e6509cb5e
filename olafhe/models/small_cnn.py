"""A small CNN for fast end-to-end tests, including encrypted runs at small ring dimensions.

Architecture (16x16x8 = 2,048 values after the first layer, two activation layers)::

    conv1 3->8 k3 s2 p1 + bn1 -> act1 (ReLU) -> conv2 8->8 k3 p1 + bn2 (+ act1's output) -> act2 (ReLU)
    -> pool (average 4x4: a 4x4 grid) -> flatten (128) -> fc 128->10

It scores ~57 % on the CIFAR-10 test set (63 % on its training images). The classifier sees *where*
features are: behind a global average pool the same net scores ~37-45 % however wide it is (its
features see 7x7 pixels). The grid costs about twice the encrypted time of a global pool (gathering the
128 pooled values dominates); 16 channels would add ~2 points at 3.3x the cost of the global pool.

Its weights are produced by the project itself: a seeded, single-threaded SGD run (Nesterov momentum,
cosine schedule, random horizontal flips; ~30 s) on the 5,000 CIFAR-10 ``train_subset`` images, cached
as ``<cache>/small_cnn-<VERSION>-<hash of the settings>.pt`` and reused. Changing any training setting
changes the hash, so a stale cache is never picked up. The settings were chosen on 1,000 held-out
``train_subset`` images, never on the test set.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import SGD
from torch.optim.lr_scheduler import CosineAnnealingLR

from olafhe.data.cifar import load_cifar10, to_tensor
from olafhe.data.paths import cache_dir

VERSION = "v2"

TRAINING = {
    "version": VERSION,
    "split": "train_subset",
    "seed": 0,
    "epochs": 60,
    "batch_size": 64,
    "optimizer": "sgd-nesterov-cosine",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "augment": "flip",
    "threads": 1,
}
"""Everything that determines the trained weights; hashed into the cache file name. ``augment`` is
``"flip"`` (random horizontal flips), ``"crop+flip"`` (also random 32x32 crops of the image padded by 4)
or ``"none"``; ``threads`` fixes torch's thread count, hence the floating-point reduction order."""


class SmallCNN(nn.Module):
    """Two conv layers with a residual skip around the second, a 4x4 grid of averages, linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8, grid: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.pool = nn.AvgPool2d(16 // grid)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width * grid * grid, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(a)) + a)
        return self.fc(self.flatten(self.pool(out)))


def settings_hash(settings: dict | None = None) -> str:
    """Short hash of the training settings (part of the cache file name)."""
    text = json.dumps(settings or TRAINING, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """A randomly flipped (and for ``"crop+flip"`` shifted, zero-padded) copy of the batch ``x`` (NCHW)."""
    if kind == "none":
        return x
    if kind not in ("flip", "crop+flip"):
        raise ValueError(f"unknown augmentation {kind!r}; known: none, flip, crop+flip")
    n, _, h, w = x.shape
    out = x.clone()
    if kind == "crop+flip":
        padded = F.pad(x, (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2, n), generator=gen)
        out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def _optimizer(model: nn.Module, cfg: dict, steps: int) -> tuple[SGD, CosineAnnealingLR]:
    """SGD with Nesterov momentum, its rate annealed to zero over ``steps`` on a cosine."""
    opt = SGD(model.parameters(), lr=float(cfg["lr"]), momentum=float(cfg["momentum"]), nesterov=True,
              weight_decay=float(cfg["weight_decay"]))
    return opt, CosineAnnealingLR(opt, steps)


def train_small_cnn(data_dir: Path | None = None, settings: dict | None = None) -> SmallCNN:
    """Train a :class:`SmallCNN` deterministically (seeded, fixed thread count) and return it in eval mode.

    The thread count (``threads``) fixes the floating-point reduction order, so the weights do not depend
    on the machine's core count; the previous thread count is restored afterwards.
    """
    cfg = dict(settings or TRAINING)
    x, y = load_cifar10(cfg["split"], data_dir)
    inputs, labels = to_tensor(x), torch.from_numpy(y)
    bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.get("threads", 1)))
    try:
        gen = torch.Generator().manual_seed(int(cfg["seed"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg["seed"]))
            model = SmallCNN()
        opt, schedule = _optimizer(model, cfg, epochs * -(-len(labels) // bs))
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=gen)
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                opt.zero_grad()
                loss = F.cross_entropy(model(augment(inputs[idx], cfg.get("augment", "none"), gen)), labels[idx])
                loss.backward()
                opt.step()
                schedule.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def small_cnn_checkpoint(data_dir: Path | None = None) -> Path:
    """Path of the cached trained weights, training and saving them first when missing.

    The file is written to a temporary name and renamed, so concurrent callers never see a partial file.
    """
    path = cache_dir() / f"small_cnn-{VERSION}-{settings_hash()}.pt"
    if path.is_file():
        return path
    model = train_small_cnn(data_dir)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state_dict": state, "settings": TRAINING}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> int:
    """Number of correctly classified images (uint8 NHWC ``x``) by ``model`` in eval mode."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(to_tensor(x[start:start + batch_size]))
            correct += int((logits.argmax(1).numpy() == y[start:start + batch_size]).sum())
    return correct
