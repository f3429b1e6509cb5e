"""Timings of the built-in approximators on 19 synthetic layers shaped like ResNet-20's ReLU inputs
(calibration ranges from about +-4 up to -14...+23, as ARCHITECTURE measured).

Run: ``.venv/bin/python -m pytest benchmarks/bench_approximators.py --benchmark-only -p no:cacheprovider``.
Small dense factorizations suffer from BLAS thread oversubscription on a loaded machine; for stable
numbers set ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import numpy as np
import pytest

from olafhe.approximators.composite import CompositeMinimaxApproximator, composite_sign
from olafhe.approximators.minimax import MinimaxApproximator
from olafhe.approximators.wls import WLSApproximator
from olafhe.core.calibration.stats import ActivationStats

LAYERS = 19
ALL_DEGREES = list(range(1, 64))


@pytest.fixture(scope="module")
def layers() -> list[ActivationStats]:
    """Skewed (beta-shaped) layers whose ranges grow from [-4, 4] to [-14, 23]."""
    rng = np.random.default_rng(19)
    out = []
    for i in range(LAYERS):
        lo, hi = -4.0 - 10.0 * i / (LAYERS - 1), 4.0 + 19.0 * i / (LAYERS - 1)
        samples = lo + (hi - lo) * rng.beta(2.0, 4.0 + i % 3, 20_000)
        out.append(ActivationStats.from_samples(f"relu{i}", np.r_[samples, lo, hi]))
    return out


def test_wls_sweep_19_layers_degrees_1_to_63(benchmark, layers: list[ActivationStats]) -> None:
    """19 layers x every degree 1..63 (1197 fits, errors measured): the ``olafhe candidates`` path."""
    wls = WLSApproximator(margins=[0.2])
    result = benchmark.pedantic(
        lambda: [wls.candidates(stats, ALL_DEGREES) for stats in layers], rounds=3, iterations=1
    )
    assert sum(len(r) for r in result) == LAYERS * len(ALL_DEGREES)
    assert benchmark.stats.stats.min < 10.0


def test_wls_separate_fits_19_layers_degrees_1_to_63(benchmark, layers: list[ActivationStats]) -> None:
    """The same 1197 fits as independent ``fit`` calls (one factorization each)."""
    wls = WLSApproximator()
    result = benchmark.pedantic(
        lambda: [wls.fit(stats, d) for stats in layers for d in ALL_DEGREES], rounds=1, iterations=1
    )
    assert len(result) == LAYERS * len(ALL_DEGREES)


def test_minimax_19_layers_default_degrees(benchmark, layers: list[ActivationStats]) -> None:
    """Remez on 19 layers at the 15 default degrees (3..63)."""
    minimax = MinimaxApproximator()
    degrees = minimax.default_degrees()
    result = benchmark.pedantic(
        lambda: [minimax.fit(stats, d) for stats in layers for d in degrees], rounds=1, iterations=1
    )
    assert all(r.params["alternation_ratio"] >= 0.99 for r in result)


def test_minimax_one_layer_degrees_1_to_63(benchmark, layers: list[ActivationStats]) -> None:
    minimax = MinimaxApproximator()
    result = benchmark.pedantic(
        lambda: [minimax.fit(layers[-1], d) for d in ALL_DEGREES], rounds=1, iterations=1
    )
    assert len(result) == len(ALL_DEGREES)


def test_composite_design_alpha_13(benchmark) -> None:
    """Designing the (15, 15, 27) sign composite, including the search for its dead zone."""
    sign = benchmark.pedantic(
        lambda: composite_sign(13.0, (15, 15, 27)), setup=composite_sign.cache_clear, rounds=3, iterations=1
    )
    assert sign.sign_error <= 2.0**-13


def test_composite_fit_19_layers(benchmark, layers: list[ActivationStats]) -> None:
    """Composite ReLU on 19 layers once the design is cached (interval + error measurement only)."""
    composite = CompositeMinimaxApproximator()
    composite.sign  # noqa: B018  (design once, outside the timing)
    result = benchmark.pedantic(lambda: [composite.fit(stats, 58) for stats in layers], rounds=3, iterations=1)
    assert all(r.max_error <= r.interval[1] * 2.0**-13 for r in result)
