"""Layer sensitivities and the distortion model, on a tiny residual CNN built here (and on ResNet-20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.polynomial import chebyshev as C
from torch import nn

from olafhe.core.calibration.sensitivity import (
    empirical_wmse,
    measure_sensitivity,
    measured_distortion,
    polynomial_fn,
    predicted_distortion,
)
from olafhe.core.errors import ApproximationError, DataError
from olafhe.core.graph.fx_import import import_model
from olafhe.core.graph.ir import Graph
from olafhe.core.poly.approximation import Approximation


class TinyResNet(nn.Module):
    """conv-relu1, conv-relu2, conv + relu1 (residual) - relu3, global average pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.conv3, self.relu3 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.conv1(x))
        b = self.relu2(self.conv2(a))
        c = self.relu3(self.conv3(b) + a)
        return self.fc(torch.flatten(self.pool(c), 1))


@pytest.fixture(scope="module")
def tiny() -> Graph:
    torch.manual_seed(0)
    return import_model(TinyResNet(), (3, 8, 8), "tiny")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Smooth (blurred) random images in float64, so activation errors are spatially correlated."""
    x = torch.randn(200, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


@pytest.fixture(scope="module")
def inputs(tiny: Graph, images: torch.Tensor) -> dict[str, np.ndarray]:
    seen: dict[str, np.ndarray] = {}
    tiny.forward(images, hook=lambda name, x: seen.__setitem__(name, x.detach().numpy().ravel()))
    return seen


def fit_relu(x: np.ndarray, degree: int, name: str) -> Approximation:
    """Least-squares Chebyshev ReLU fit on the data range +-25 %, with a 5 % uniform weight floor so the
    polynomial stays bounded where data is sparse."""
    lo, hi = float(x.min()), float(x.max())
    a, b = lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo)
    grid = np.linspace(a, b, 400)
    pts = np.concatenate([x, grid])
    w = np.concatenate([np.full(x.size, 1 / x.size), np.full(grid.size, 0.05 / grid.size)])
    coeffs = C.chebfit((2 * pts - (a + b)) / (b - a), np.maximum(pts, 0), degree, w=np.sqrt(w))
    return Approximation("relu", "test-lsq", (a, b), (coeffs,), layer=name)


def make_plan(graph: Graph, images: torch.Tensor, inputs: dict[str, np.ndarray],
              degrees: list[int]) -> dict[str, Approximation]:
    names = [n.name for n in graph.activations()]
    fits = {n: fit_relu(inputs[n], d, n) for n, d in zip(names, degrees, strict=True)}
    wmse = empirical_wmse(graph, images, fits)
    return {n: Approximation(a.activation, a.method, a.interval, a.stages, weighted_mse=wmse[n], layer=n)
            for n, a in fits.items()}


def jacobian_sq_norm(graph: Graph, images: torch.Tensor, name: str) -> float:
    """Mean over images of ||d logits / d output(name)||_F^2, by autograd (the exact white-noise value)."""
    held: dict[str, torch.Tensor] = {}

    def capture(v: torch.Tensor) -> torch.Tensor:
        held["out"] = torch.relu(v).detach().requires_grad_(True)
        return held["out"]

    logits = graph.forward(images, activations={name: capture})
    total = 0.0
    for k in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, k].sum(), held["out"], retain_graph=True)
        total += float((grad ** 2).sum())
    return total / images.shape[0]


# ------------------------------------------------------------------------------------------------


def test_white_noise_sensitivity_is_the_jacobian_norm(tiny, images):
    sens = measure_sensitivity(tiny, images, noise_std=0.01)
    assert set(sens) == {"relu1", "relu2", "relu3"}
    for name, s in sens.items():
        assert s == pytest.approx(jacobian_sq_norm(tiny, images, name), rel=0.1)


def test_sensitivity_is_linear_in_small_noise(tiny, images, inputs):
    """s does not depend on sigma at and below the default noise level (0.01 of the output RMS)."""
    small = measure_sensitivity(tiny, images, noise_std=0.001)
    large = measure_sensitivity(tiny, images, noise_std=0.01)
    for name in small:
        assert large[name] == pytest.approx(small[name], rel=0.05)
    ref = make_plan(tiny, images, inputs, [4, 4, 4])
    small = measure_sensitivity(tiny, images, noise_std=0.001, reference=ref)
    large = measure_sensitivity(tiny, images, noise_std=0.01, reference=ref)
    for name in small:
        assert large[name] == pytest.approx(small[name], rel=0.05)


def test_absolute_noise_gives_the_same_sensitivity(tiny, images):
    rel = measure_sensitivity(tiny, images, ["relu2"], noise_std=0.01)
    ab = measure_sensitivity(tiny, images, ["relu2"], noise_std=0.005, relative=False)
    assert ab["relu2"] == pytest.approx(rel["relu2"], rel=0.1)


@pytest.mark.parametrize("degrees", [[3, 3, 3], [4, 4, 4], [6, 6, 6], [3, 6, 4], [8, 2, 8], [2, 8, 8]])
def test_prediction_within_factor_two_with_error_shaped_sensitivity(tiny, images, inputs, degrees):
    """Sensitivities measured with each layer's degree-4 error shape predict other plans' distortion."""
    ref = make_plan(tiny, images, inputs, [4, 4, 4])
    sens = measure_sensitivity(tiny, images, reference=ref)
    plan = make_plan(tiny, images, inputs, degrees)
    predicted = predicted_distortion(sens, plan)
    measured = measured_distortion(tiny, images, plan)
    assert 0.5 <= predicted / measured <= 2.0


def test_white_noise_underestimates_correlated_errors(tiny, images, inputs):
    """Documented limitation: white noise misses the spatial correlation of approximation errors that
    the final average pool passes on (here by a factor > 3 for every plan)."""
    sens = measure_sensitivity(tiny, images)
    for degrees in ([3, 3, 3], [6, 6, 6]):
        plan = make_plan(tiny, images, inputs, degrees)
        assert predicted_distortion(sens, plan) < measured_distortion(tiny, images, plan) / 3


def test_measured_distortion_matches_a_direct_computation(tiny, images, inputs):
    plan = make_plan(tiny, images, inputs, [5, 5, 5])
    direct = tiny.forward(images, activations={n: polynomial_fn(a) for n, a in plan.items()}) - tiny.forward(images)
    expected = float((direct ** 2).sum(dim=1).mean())
    assert measured_distortion(tiny, images, plan, batch_size=64) == pytest.approx(expected, rel=1e-9)
    assert measured_distortion(tiny, images, {}) == 0.0
    one = {"relu2": plan["relu2"]}
    assert 0 < measured_distortion(tiny, images, one) < measured_distortion(tiny, images, plan)


def test_polynomial_fn_is_exact_float64(inputs):
    approx = fit_relu(inputs["relu1"], 7, "relu1")
    x = torch.linspace(-2, 2, 101, dtype=torch.float64)
    assert np.array_equal(polynomial_fn(approx)(x).numpy(), approx(x.numpy()))
    assert polynomial_fn(approx)(x.float()).dtype == torch.float32


def test_predicted_distortion_arithmetic_and_errors(inputs):
    a = fit_relu(inputs["relu1"], 3, "relu1")
    with_mse = Approximation(a.activation, a.method, a.interval, a.stages, weighted_mse=0.5)
    assert predicted_distortion({"relu1": 4.0, "relu2": 9.0}, {"relu1": with_mse}) == pytest.approx(2.0)
    with pytest.raises(DataError, match="relu1"):
        predicted_distortion({"relu2": 1.0}, {"relu1": with_mse})
    with pytest.raises(ApproximationError, match="weighted MSE"):
        predicted_distortion({"relu1": 1.0}, {"relu1": a})


def test_unknown_layers_are_rejected(tiny, images):
    with pytest.raises(DataError, match="no activation layers"):
        measure_sensitivity(tiny, images, ["conv1"])
    with pytest.raises(DataError, match="reference"):
        measure_sensitivity(tiny, images, ["relu1"], reference={})


def test_resnet20_sensitivities_spread_over_an_order_of_magnitude(resnet20_graph, test_images):
    """On the real model (40 test images) sensitivities are finite, positive and differ > 10x."""
    sens = measure_sensitivity(resnet20_graph, test_images.x, batch_size=40)
    assert len(sens) == 19
    values = np.array(list(sens.values()))
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert values.max() / values.min() > 10
    assert math.isfinite(sum(values))
