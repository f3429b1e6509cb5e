"""Simulator throughput: ResNet-20 with a polynomial in every ReLU over the full CIFAR-10 test set.

Run: ``.venv/bin/python -m pytest benchmarks/bench_simulator.py -o addopts="" -p no:cacheprovider``
(``-o addopts=""`` drops the project-wide ``--benchmark-skip``, which ``--benchmark-enable`` does not undo).
Needs the data directory (``$OLAFHE_DATA``).

The plan is built here, independently of calibration files and optimizers: the inputs of every
activation are recorded on 1,000 ``train_subset`` images, and each ReLU becomes a degree-15 ``wls`` fit
on that layer's range widened by 30 % (uniform degree, no bootstraps: the simulator's fast batch path
does not depend on placement). ``simulate_logits`` is what ``olafhe evaluate --plan`` and the
optimizer's tuning loop call, so its images/second bounds how fast plans can be scored. The exact
plaintext graph on the same images is benchmarked alongside as the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from olafhe.approximators.wls import WLSApproximator
from olafhe.backends.simulator import simulate_logits
from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.config import load_config
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanLayer
from olafhe.data.cifar import load_cifar10, to_tensor
from olafhe.jobs import workspace
from olafhe.jobs.workspace import Loaded, load

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "resnet20.toml"
DEGREE = 15
CALIBRATION_IMAGES = 1000
MARGIN = 0.3  # ARCHITECTURE.md: m = 0.3, floor 1e-2 gave 91.6 % at degree 15
SAMPLES_PER_LAYER = 200_000
BATCH = 500


@pytest.fixture(scope="module")
def resnet20() -> Loaded:
    return load(load_config(CONFIG))


@pytest.fixture(scope="module")
def test_images(resnet20: Loaded) -> tuple[torch.Tensor, np.ndarray]:
    x, y = workspace.test_set(resnet20.data_dir, None)
    assert len(y) == 10_000
    return x, y


def _activation_stats(loaded: Loaded) -> list[ActivationStats]:
    """Statistics of every activation's inputs on ``CALIBRATION_IMAGES`` training images."""
    x, _ = load_cifar10("train_subset", loaded.data_dir)
    images = to_tensor(x[:CALIBRATION_IMAGES])
    seen: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)

    def record(name: str, inputs: torch.Tensor) -> None:
        values = inputs.detach().numpy().ravel()
        keep = rng.choice(values.size, min(values.size, SAMPLES_PER_LAYER), replace=False)
        # keep the extremes too: the fit's interval is the full observed range
        seen[name] = np.concatenate([values[keep], [values.min(), values.max()]])

    with torch.no_grad():
        loaded.graph.forward(images, hook=record)
    return [ActivationStats.from_samples(a.name, seen[a.name]) for a in loaded.graph.activations()]


@pytest.fixture(scope="module")
def uniform_plan(resnet20: Loaded) -> Plan:
    wls = WLSApproximator(margin=MARGIN, floor=1e-2)
    layers = []
    for stats in _activation_stats(resnet20):
        approx = wls.fit(stats, DEGREE)
        layers.append(PlanLayer(stats.name, approx, level_in=approx.depth, bootstrap_before=False, depth=approx.depth))
    return Plan("resnet20", "wls", "uniform", layers, input_level=0, ckks=PlanCKKS(ring_dimension=65536))


def test_simulate_resnet20_full_test_set(benchmark, resnet20: Loaded, uniform_plan: Plan,  # noqa: ANN001
                                         test_images: tuple[torch.Tensor, np.ndarray]) -> None:
    x, y = test_images
    logits = benchmark.pedantic(simulate_logits, args=(resnet20.graph, uniform_plan, x),
                                kwargs={"batch_size": BATCH}, rounds=1, iterations=1)
    assert logits.shape == (10_000, 10)
    # test inputs beyond a layer's interval can blow a degree-15 polynomial up (ARCHITECTURE.md); count them
    finite = np.all(np.isfinite(logits), axis=1)
    accuracy = 100.0 * float(np.mean(finite & (logits.argmax(1) == y)))
    benchmark.extra_info.update(images=len(y), degree=DEGREE, layers=len(uniform_plan.layers), accuracy=accuracy,
                                non_finite_images=int((~finite).sum()),
                                images_per_second=len(y) / benchmark.stats.stats.mean)
    assert finite.mean() > 0.99
    # ARCHITECTURE.md measured ~91 % for degree-15 WLS on ResNet-20 (plaintext 91.8 %)
    assert accuracy > 85.0


def test_plaintext_resnet20_full_test_set(benchmark, resnet20: Loaded,  # noqa: ANN001
                                          test_images: tuple[torch.Tensor, np.ndarray]) -> None:
    x, y = test_images

    def run() -> np.ndarray:
        with torch.no_grad():
            return torch.cat([resnet20.graph.forward(x[s:s + BATCH]) for s in range(0, len(x), BATCH)]).numpy()

    logits = benchmark.pedantic(run, rounds=1, iterations=1)
    accuracy = 100.0 * float(np.mean(logits.argmax(1) == y))
    benchmark.extra_info.update(images=len(y), accuracy=accuracy,
                                images_per_second=len(y) / benchmark.stats.stats.mean)
    assert accuracy > 90.0  # the pre-trained checkpoint's documented 91.8 %
