"""A tiny CNN for fast end-to-end tests, including encrypted runs at small ring dimensions.

Architecture (16x16x8 = 2,048 values after the first layer, two activation layers)::

    conv1 3->8 k3 s2 p1 + bn1 -> act1 (ReLU) -> conv2 8->8 k3 p1 + bn2 (+ act1's output) -> act2 (ReLU)
    -> pool (average 16x16) -> flatten -> fc 8->10

Its weights are produced by the project itself: a short, seeded, single-threaded Adam run on the
CIFAR-10 ``train_subset`` split, cached as ``<cache>/small_cnn-v1-<hash of the settings>.pt`` and reused.
Changing any training setting changes the hash, so a stale cache is never picked up.
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

from olafhe.data.cifar import load_cifar10, to_tensor
from olafhe.data.paths import cache_dir

VERSION = "v1"

TRAINING = {
    "version": VERSION,
    "split": "train_subset",
    "seed": 0,
    "epochs": 20,
    "batch_size": 50,
    "lr": 0.01,
    "weight_decay": 0.0,
    "optimizer": "adam",
}
"""Everything that determines the trained weights; hashed into the cache file name."""


class SmallCNN(nn.Module):
    """Two conv layers with a residual skip around the second, global average pool, linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.pool = nn.AvgPool2d(16)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(a)) + a)
        return self.fc(self.flatten(self.pool(out)))


def settings_hash(settings: dict | None = None) -> str:
    """Short hash of the training settings (part of the cache file name)."""
    text = json.dumps(settings or TRAINING, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def train_small_cnn(data_dir: Path | None = None, settings: dict | None = None) -> SmallCNN:
    """Train a :class:`SmallCNN` deterministically (seeded, one CPU thread) and return it in eval mode.

    Runs single-threaded so the floating-point reduction order, and hence the weights, do not depend on
    the machine's core count; the previous thread count is restored afterwards.
    """
    cfg = dict(settings or TRAINING)
    x, y = load_cifar10(cfg["split"], data_dir)
    inputs = to_tensor(x)
    labels = torch.from_numpy(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(int(cfg["seed"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg["seed"]))
            model = SmallCNN()
        opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        model.train()
        bs = int(cfg["batch_size"])
        for _ in range(int(cfg["epochs"])):
            order = torch.randperm(len(labels), generator=gen)
            for start in range(0, len(order), bs):
                idx = order[start:start + bs]
                opt.zero_grad()
                loss = F.cross_entropy(model(inputs[idx]), labels[idx])
                loss.backward()
                opt.step()
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
