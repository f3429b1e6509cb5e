"""Streaming calibration: exact moments, consistent histograms and quantiles, file round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from olafhe.core.calibration.calibrate import FINE, calibrate
from olafhe.core.calibration.stats import DEFAULT_QUANTILES, CalibrationResult
from olafhe.core.errors import ShapeError
from olafhe.data import to_tensor
from olafhe.data.cifar import balanced_subset, load_cifar10

BINS = 256


def calibration_images(n: int, data_dir: Path, seed: int = 0) -> tuple[np.ndarray, str]:
    """A fixed class-balanced subset of ``n`` CIFAR-10 *training* images (uint8) and a description of it."""
    x, y = load_cifar10("train_subset", data_dir)
    n = min(n, len(y))
    idx = balanced_subset(y, n, seed=seed) if n < len(y) else np.arange(len(y))
    return x[idx], f"cifar10/train_subset ({n} images, class-balanced, seed {seed})"


@pytest.fixture(scope="module")
def train64(data_dir: Path) -> tuple[np.ndarray, str]:
    return calibration_images(64, data_dir)


@pytest.fixture(scope="module")
def result(resnet20, train64) -> CalibrationResult:
    images, source = train64
    return calibrate(resnet20.graph, to_tensor(images), bins=BINS, batch_size=24, progress=False,
                     model_name="resnet20", source=source)


def _exact_inputs(graph, images: np.ndarray) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    with torch.no_grad():
        graph.forward(to_tensor(images), hook=lambda n, t: values.__setitem__(n, t.double().numpy().ravel()))
    return values


def test_uses_the_train_split(train64, cifar_train_subset, cifar_test) -> None:
    images, source = train64
    assert "train_subset" in source and images.shape == (64, 32, 32, 3)
    train_rows = {row.tobytes() for row in cifar_train_subset[0]}
    test_rows = {row.tobytes() for row in cifar_test[0]}
    assert all(row.tobytes() in train_rows and row.tobytes() not in test_rows for row in images)


def test_layers_match_graph_activations(result: CalibrationResult, resnet20) -> None:
    assert result.names() == [n.name for n in resnet20.graph.activations()]
    assert result.model == "resnet20" and result.images == 64 and result.seconds > 0
    for layer, node in zip(result.layers, resnet20.graph.activations(), strict=True):
        assert layer.count == 64 * int(np.prod(node.shape))


def test_statistics_are_exact(result: CalibrationResult, resnet20, train64) -> None:
    exact = _exact_inputs(resnet20.graph, train64[0])
    for layer in result.layers:
        v = exact[layer.name]
        assert (layer.min, layer.max) == (v.min(), v.max())
        assert layer.mean == pytest.approx(v.mean(), rel=1e-12, abs=1e-12)
        assert layer.std == pytest.approx(v.std(), rel=1e-9)
        counts, _ = np.histogram(v, bins=BINS, range=(layer.min, layer.max))
        assert np.abs(layer.hist_counts - counts).sum() <= 1e-3 * v.size  # only ties at bin edges may differ


def test_histogram_and_quantiles_are_consistent(result: CalibrationResult, resnet20, train64) -> None:
    exact = _exact_inputs(resnet20.graph, train64[0])
    for layer in result.layers:
        assert layer.hist_counts.sum() == layer.count
        assert len(layer.hist_edges) == BINS + 1
        assert layer.hist_edges[0] == layer.min and layer.hist_edges[-1] == pytest.approx(layer.max)
        qs = [layer.quantiles[q] for q in DEFAULT_QUANTILES]
        assert layer.min <= qs[0] and qs[-1] <= layer.max and all(np.diff(qs) >= 0)
        fine_bin = (layer.max - layer.min) / (FINE * BINS)
        lower = np.quantile(exact[layer.name], DEFAULT_QUANTILES, method="lower")
        assert np.all(np.abs(np.array(qs) - lower) <= fine_bin * 1.0001)


def test_batch_size_and_input_form_do_not_matter(result: CalibrationResult, resnet20, train64) -> None:
    images, _ = train64
    other = calibrate(resnet20.graph, to_tensor(images).numpy(), bins=BINS, batch_size=64, progress=False)
    for a, b in zip(result.layers, other.layers, strict=True):
        assert (a.count, a.min, a.max) == (b.count, b.min, b.max)
        assert a.mean == pytest.approx(b.mean, rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(a.hist_counts, b.hist_counts)
    assert other.model == resnet20.graph.name


def test_save_load_round_trip_is_exact(result: CalibrationResult, tmp_path: Path) -> None:
    loaded = CalibrationResult.load(result.save(tmp_path / "cal.json"))
    assert (loaded.model, loaded.images, loaded.source, loaded.seconds) == (
        result.model, result.images, result.source, result.seconds)
    assert len(loaded.layers) == len(result.layers)
    for a, b in zip(result.layers, loaded.layers, strict=True):
        assert (a.name, a.count, a.min, a.max, a.mean, a.std) == (b.name, b.count, b.min, b.max, b.mean, b.std)
        assert a.quantiles == b.quantiles
        np.testing.assert_array_equal(a.hist_edges, b.hist_edges)
        np.testing.assert_array_equal(a.hist_counts, b.hist_counts)


def test_bad_images(small_cnn) -> None:
    with pytest.raises(ShapeError, match=r"normalized float \(N, 3, 32, 32\).*convert raw images"):
        calibrate(small_cnn.graph, np.zeros((2, 32, 32, 3), np.uint8), progress=False)
    with pytest.raises(ShapeError, match="at least one image"):
        calibrate(small_cnn.graph, torch.zeros(0, 3, 32, 32), progress=False)
    with pytest.raises(ShapeError, match=r"\(N, 3, 32, 32\)"):
        calibrate(small_cnn.graph, torch.zeros(2, 3, 16, 16), progress=False)
