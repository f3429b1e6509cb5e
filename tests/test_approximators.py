"""Tests of the built-in approximators (wls, minimax, composite-minimax), their shared error measures,
interval policies and the candidate table."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from numpy.polynomial import chebyshev as C

from olafhe.approximators.composite import CompositeMinimaxApproximator, composite_sign
from olafhe.approximators.intervals import data_interval, symmetric_bound
from olafhe.approximators.metrics import max_error, outside_fraction, weighted_mse
from olafhe.approximators.minimax import MinimaxApproximator
from olafhe.approximators.remez import remez
from olafhe.approximators.table import COLUMNS, candidate_table, format_table
from olafhe.approximators.wls import WLSApproximator, wls_weights
from olafhe.core.calibration.stats import ActivationStats, CalibrationResult
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ApproximationError
from olafhe.core.poly.approximation import Approximation


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def truncated(samples: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return samples[(samples >= lo) & (samples <= hi)]


@pytest.fixture(scope="module")
def mixture_samples() -> np.ndarray:
    """A realistic pre-activation distribution (BN output feeding a ReLU): 60 % N(-0.8, 0.6) and
    40 % N(0.5, 1.2), tails truncated at [-3.5, 5]."""
    rng = np.random.default_rng(20240601)
    n = 100_000
    x = np.where(rng.random(n) < 0.6, rng.normal(-0.8, 0.6, n), rng.normal(0.5, 1.2, n))
    return truncated(x, -3.5, 5.0)


@pytest.fixture(scope="module")
def mixture(mixture_samples: np.ndarray) -> ActivationStats:
    return ActivationStats.from_samples("layer1.relu", mixture_samples)


# Real ResNet-20 layers: see test_wls_vs_minimax_on_real_resnet20_layers at the end of this file.


@pytest.fixture(scope="module")
def skewed() -> list[ActivationStats]:
    """Synthetic skewed layers: right-skewed (shifted log-normal), left-skewed, and a wide one."""
    rng = np.random.default_rng(7)
    right = -1.0 + rng.lognormal(0.0, 0.7, 50_000)
    left = 2.0 - rng.gamma(2.0, 1.5, 50_000)
    wide = truncated(rng.standard_t(4, 50_000) * 3.0 + 2.0, -14.0, 23.0)
    return [
        ActivationStats.from_samples("right", right),
        ActivationStats.from_samples("left", left),
        ActivationStats.from_samples("wide", wide),
    ]


def dense(interval: tuple[float, float], points: int = 200_001, extra: tuple[float, ...] = (0.0,)) -> np.ndarray:
    a, b = interval
    return np.unique(np.r_[np.linspace(a, b, points), [e for e in extra if a < e < b]])


def alternations(error: np.ndarray, level: float) -> int:
    """Number of sign alternations (+1) among the grid points where ``|error| >= level``."""
    signs = np.sign(error[np.abs(error) >= level])
    return 1 + int(np.count_nonzero(signs[1:] != signs[:-1])) if signs.size else 0


# ---------------------------------------------------------------------------------------- plugins
@pytest.mark.parametrize(
    "name, cls",
    [("wls", WLSApproximator), ("minimax", MinimaxApproximator), ("composite-minimax", CompositeMinimaxApproximator)],
)
def test_registry_finds_builtin_approximators(name: str, cls: type) -> None:
    assert registry().get("approximators", name) is cls
    assert registry().sources()["approximators"][name] == "builtin"


# ---------------------------------------------------------------------------------------- wls vs minimax
@pytest.mark.parametrize("degree", [3, 7, 15, 31])
def test_wls_beats_minimax_in_weighted_mse(mixture: ActivationStats, degree: int) -> None:
    wls, mm = WLSApproximator().fit(mixture, degree), MinimaxApproximator().fit(mixture, degree)
    assert wls.interval == mm.interval
    assert wls.weighted_mse < 0.8 * mm.weighted_mse


@pytest.mark.parametrize("degree", [3, 7, 15, 31])
def test_minimax_beats_wls_in_max_error(mixture: ActivationStats, degree: int) -> None:
    wls, mm = WLSApproximator().fit(mixture, degree), MinimaxApproximator().fit(mixture, degree)
    assert wls.interval == mm.interval
    assert mm.max_error < wls.max_error
    # the recorded max error is the true one (independent, denser grid)
    x = dense(mm.interval)
    assert np.max(np.abs(mm(x) - relu(x))) == pytest.approx(mm.max_error, rel=1e-3)


def test_wls_beats_minimax_on_skewed_layers(skewed: list[ActivationStats]) -> None:
    for stats in skewed:
        wls, mm = WLSApproximator().fit(stats, 15), MinimaxApproximator().fit(stats, 15)
        assert wls.weighted_mse < mm.weighted_mse, stats.name


# ---------------------------------------------------------------------------------------- minimax
@pytest.mark.parametrize("degree", [1, 2, 4, 7, 15, 32, 63])
def test_minimax_equioscillates(mixture: ActivationStats, degree: int) -> None:
    approx = MinimaxApproximator().fit(mixture, degree)
    x = dense(approx.interval)
    error = approx(x) - relu(x)
    peak = np.max(np.abs(error))
    # Chebyshev alternation theorem: d + 2 alternating extrema, equal within 1 %
    assert alternations(error, 0.99 * peak) >= degree + 2
    assert approx.params["alternation_ratio"] >= 0.99


def test_minimax_matches_closed_forms() -> None:
    stats = ActivationStats.from_samples("unit", np.linspace(-1.0, 1.0, 1001))
    # ReLU = (x + |x|)/2 and the best quadratic for |x| on [-1, 1] is x^2 + 1/8 (error 1/8)
    quad = MinimaxApproximator(interval=[-1.0, 1.0]).fit(stats, 2)
    assert quad.max_error == pytest.approx(1.0 / 16.0, rel=1e-3)
    # best line for ReLU on [-5, 3]: half the chord's gap at the kink, 3 * 5 / 8 / 2
    line = MinimaxApproximator(interval=[-5.0, 3.0]).fit(stats, 1)
    assert line.max_error == pytest.approx(0.9375, rel=1e-6)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_minimax_smooth_activations_converge_fast(mixture: ActivationStats, activation: str) -> None:
    errors = [MinimaxApproximator(activation).fit(mixture, d).max_error for d in (3, 7, 15)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3  # smooth: geometric convergence, unlike ReLU's ~1/d


def test_minimax_reports_failure_with_ratio(mixture: ActivationStats) -> None:
    with pytest.raises(ApproximationError, match="ratio"):
        MinimaxApproximator(tol=1e-12, max_iter=1).fit(mixture, 31)


def test_remez_rejects_bad_shapes() -> None:
    grid = np.linspace(-1, 1, 5)
    with pytest.raises(ApproximationError, match="alternation points"):
        remez(C.chebvander(grid, 5), relu(grid))


# ---------------------------------------------------------------------------------------- wls
def test_wls_degree_one_is_weighted_linear_regression(mixture: ActivationStats) -> None:
    approx = WLSApproximator(floor=0.05).fit(mixture, 1)
    _, x, w = wls_weights(mixture, approx.interval, 1, 0.05)
    f = relu(x)
    xm, fm = np.average(x, weights=w), np.average(f, weights=w)
    slope = np.sum(w * (x - xm) * (f - fm)) / np.sum(w * (x - xm) ** 2)
    grid = np.linspace(*approx.interval, 101)
    np.testing.assert_allclose(approx(grid), fm + slope * (grid - xm), rtol=1e-10, atol=1e-12)


def test_wls_is_stable_up_to_degree_127(mixture: ActivationStats) -> None:
    fits = WLSApproximator().candidates(mixture, list(range(1, 128)))[1::3]  # the default-margin ones
    assert [f.degree for f in fits] == list(range(1, 128))
    assert all(np.all(np.isfinite(f.stages[0])) for f in fits)
    assert all(f.params["rank"] == f.degree + 1 for f in fits)
    wmse = np.array([f.weighted_mse for f in fits])
    slope = np.polyfit(np.log(np.arange(1, 128)), np.log(wmse), 1)[0]
    assert slope < -1.5  # error decreases with degree on average (ReLU: about d^-2 to d^-3)
    by_degree = {f.degree: f.weighted_mse for f in fits}
    assert by_degree[7] > by_degree[15] > by_degree[31] > by_degree[63] > by_degree[127]
    assert by_degree[127] < by_degree[15] / 50


def test_wls_fit_equals_candidate(mixture: ActivationStats) -> None:
    """The shared factorization of candidates() gives the same polynomial as a lone fit()."""
    lone = WLSApproximator(margin=0.25).fit(mixture, 23)
    swept = [c for c in WLSApproximator().candidates(mixture, [5, 23, 63]) if c.degree == 23]
    match = [c for c in swept if c.params["margin"] == 0.25]
    assert len(match) == 1
    np.testing.assert_allclose(match[0].stages[0], lone.stages[0], rtol=1e-9, atol=1e-12)


def test_wls_floor_bounds_tail_error(mixture: ActivationStats) -> None:
    """Without the floor the margins carry no weight and the polynomial is free to explode there."""
    a, b = data_interval(mixture, 0.2)
    tail = np.r_[np.linspace(a, mixture.min, 500), np.linspace(mixture.max, b, 500)]
    err = {}
    for floor in (0.0, 1e-2):
        approx = WLSApproximator(floor=floor).fit(mixture, 31)
        err[floor] = np.max(np.abs(approx(tail) - relu(tail)))
    assert err[1e-2] < 0.1
    assert err[0.0] > 10 * err[1e-2]


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_wls_other_activations(mixture: ActivationStats, activation: str) -> None:
    approx, finer = WLSApproximator(activation).candidates(mixture, [15, 31])[1::3]
    assert approx.activation == activation
    assert approx.max_error < 2e-2
    assert finer.max_error < approx.max_error / 100  # smooth: geometric convergence


def test_wls_callable_activation(mixture: ActivationStats) -> None:
    approx = WLSApproximator(np.tanh).fit(mixture, 31)
    assert approx.activation == "tanh"
    x = np.linspace(*approx.interval, 1001)
    assert np.max(np.abs(approx(x) - np.tanh(x))) <= approx.max_error < 1e-2


# ---------------------------------------------------------------------------------------- intervals
def test_candidates_one_per_degree_and_margin(mixture: ActivationStats) -> None:
    cands = WLSApproximator().candidates(mixture, [7, 15])
    assert [(c.degree, c.params["margin"]) for c in cands] == [
        (7, 0.1), (7, 0.25), (7, 0.5), (15, 0.1), (15, 0.25), (15, 0.5)
    ]
    width = mixture.max - mixture.min
    for c in cands:
        m = c.params["margin"]
        assert c.interval == pytest.approx((mixture.min - m * width, mixture.max + m * width))
        assert c.layer == "layer1.relu" and c.method == "wls"
    explicit = WLSApproximator(interval=[-2.0, 3.0]).candidates(mixture, [7, 15])
    assert [c.interval for c in explicit] == [(-2.0, 3.0), (-2.0, 3.0)]
    assert explicit[0].params["interval_policy"] == "explicit"


def test_quantile_interval_and_outside_fraction(mixture: ActivationStats, mixture_samples: np.ndarray) -> None:
    approx = WLSApproximator(interval="quantile", q=0.01, margin=0.0).fit(mixture, 9)
    lo, hi = np.quantile(mixture_samples, [0.01, 0.99])
    assert approx.interval == pytest.approx((lo, hi))
    assert approx.outside_fraction == pytest.approx(0.02, abs=1e-3)
    assert approx.params["q"] == 0.01
    assert WLSApproximator().fit(mixture, 9).outside_fraction == 0.0


def test_outside_fraction_matches_samples(mixture: ActivationStats, mixture_samples: np.ndarray) -> None:
    for a, b in [(-1.0, 1.0), (0.3, 4.0), (-10.0, -3.0)]:
        expected = np.mean((mixture_samples < a) | (mixture_samples > b))
        assert outside_fraction(mixture, (a, b)) == pytest.approx(expected, abs=2e-3)


def test_weighted_mse_is_expected_squared_error(mixture: ActivationStats, mixture_samples: np.ndarray) -> None:
    approx = WLSApproximator().fit(mixture, 7)
    empirical = np.mean((approx(mixture_samples) - relu(mixture_samples)) ** 2)
    assert weighted_mse(approx, relu, mixture) == pytest.approx(empirical, rel=0.02)
    assert approx.weighted_mse == weighted_mse(approx, relu, mixture)


@pytest.mark.parametrize("degree", [1, 9, 63, 127])
def test_max_error_fast_path_matches_direct_evaluation(mixture: ActivationStats, degree: int) -> None:
    approx = WLSApproximator().fit(mixture, degree)
    direct = max_error(lambda x: approx(x), relu, approx.interval, (0.0,))  # a plain callable: no DCT
    assert approx.max_error == pytest.approx(direct, rel=1e-9)


def test_symmetric_bound(mixture: ActivationStats) -> None:
    assert symmetric_bound(mixture, 0.2) == pytest.approx(max(-mixture.min, mixture.max) * 1.2)


# ---------------------------------------------------------------------------------------- composite
@pytest.fixture(scope="module")
def composite(mixture: ActivationStats) -> Approximation:
    return CompositeMinimaxApproximator().fit(mixture, 58)


def test_composite_structure(composite: Approximation, mixture: ActivationStats) -> None:
    assert composite.form == "relu-sign"
    assert composite.stage_degrees == (15, 15, 27)
    assert composite.degree == 58 and composite.depth == 4 + 4 + 5 + 1
    bound = max(-mixture.min, mixture.max) * 1.2
    assert composite.interval == pytest.approx((-bound, bound))
    for stage in composite.stages:  # odd polynomials: no even Chebyshev terms
        assert np.all(stage[0::2] == 0.0)
    # every stage's input stays in [-1, 1] (CKKS Chebyshev evaluation needs it)
    s = np.linspace(-1.0, 1.0, 100_001)
    for stage in composite.stages[:-1]:
        s = C.chebval(s, stage)
        assert np.max(np.abs(s)) <= 1.0 + 1e-12
    assert CompositeMinimaxApproximator().default_degrees() == [58]


def test_composite_reaches_sign_precision_2_pow_minus_13(composite: Approximation) -> None:
    eps = composite.params["epsilon"]
    # dead zone found by the search: ~2^-9.04 for (15, 15, 27)
    assert 2.0**-9.1 < eps < 2.0**-9.0
    t = np.r_[eps, eps * (1 + np.geomspace(1e-9, 1e-2, 2000)), np.geomspace(eps, 1.0, 300_000),
              np.linspace(eps, 1.0, 300_000)]
    t = np.r_[t, -t]  # both halves: [-1, -eps] U [eps, 1]
    s = t
    for stage in composite.stages:
        s = C.chebval(s, stage)
    assert np.max(np.abs(s - np.sign(t))) <= 2.0**-13


def test_composite_relu_error_bound(composite: Approximation) -> None:
    """Bound tested: |r(x) - ReLU(x)| <= B * 2^-13 on [-B, B] (measured ~B * 2^-13.1: outside the dead
    zone <= B * 2^-14, inside it the error peaks near |x| ~ B / (8 s'(0)))."""
    bound = composite.interval[1]
    x = np.r_[np.linspace(-bound, bound, 400_001), bound * np.geomspace(1e-8, 1e-2, 20_000)]
    x = np.r_[x, -x]
    worst = np.max(np.abs(composite(x) - relu(x)))
    assert worst <= bound * 2.0**-13
    assert composite.max_error == pytest.approx(worst, rel=1e-3)


def test_composite_dead_zone_two_pow_minus_13_is_infeasible() -> None:
    """With eps = 2^-13, (15, 15, 27) cannot reach 2^-13. Bernstein: a degree-D polynomial with
    |s| <= 1 + delta on [-1, 1] has s(eps) <= D (1 + delta) asin(eps), so an error delta on [eps, 1]
    needs delta >= (1 - D asin(eps)) / (1 + D asin(eps)), about 0.148 for D = 15 * 15 * 27."""
    sign = composite_sign(13.0, (15, 15, 27), 2.0**-13)
    t = np.linspace(-1.0, 1.0, 200_001)
    assert np.max(np.abs(sign(t))) <= 1.0 + sign.sign_error + 1e-9  # the premise: no overshoot
    slope = 6075 * math.asin(2.0**-13)
    assert sign.sign_error >= (1 - slope) / (1 + slope) > 0.14


def test_composite_candidates_ignore_degrees(mixture: ActivationStats) -> None:
    approx = CompositeMinimaxApproximator(margins=[0.0, 0.5])
    cands = approx.candidates(mixture, [3, 7, 58])
    assert [c.params["margin"] for c in cands] == [0.0, 0.5]
    assert cands[0].interval[1] == pytest.approx(max(-mixture.min, mixture.max))
    assert all(c.degree == 58 for c in cands)


def test_composite_explicit_degrees_and_epsilon(mixture: ActivationStats) -> None:
    approx = CompositeMinimaxApproximator(alpha=8, degrees=[7, 15], epsilon=2.0**-4).fit(mixture, 23)
    assert approx.stage_degrees == (7, 15) and approx.params["epsilon"] == 2.0**-4
    sign = composite_sign(8.0, (7, 15), 2.0**-4)
    assert approx.params["sign_error"] == sign.sign_error < 2.0**-8
    # the dead zone of an explicit epsilon is honoured, and the precision is reported, not enforced
    coarse = CompositeMinimaxApproximator(alpha=8, degrees=[7, 15], epsilon=2.0**-6).fit(mixture, 23)
    assert coarse.params["sign_error"] > 2.0**-8


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("degree", [0, -1, 128, 1.5, True, "7"])
def test_bad_degree(mixture: ActivationStats, degree: object) -> None:
    with pytest.raises(ApproximationError, match="degree"):
        WLSApproximator().fit(mixture, degree)  # type: ignore[arg-type]
    with pytest.raises(ApproximationError, match="degree"):
        MinimaxApproximator().fit(mixture, degree)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "interval, message",
    [([1.0, 1.0], "empty"), ([2.0, -1.0], "reversed"), ([float("nan"), 1.0], "non-finite"), ([1.0], "pair")],
)
def test_bad_interval(interval: list[float], message: str) -> None:
    with pytest.raises(ApproximationError, match=message):
        WLSApproximator(interval=interval)


def test_empty_calibration_range() -> None:
    stats = ActivationStats.from_samples("const", np.full(100, 2.0))
    with pytest.raises(ApproximationError, match="empty"):
        WLSApproximator().fit(stats, 3)


def test_non_finite_statistics(mixture: ActivationStats) -> None:
    with pytest.raises(ApproximationError, match="not finite"):
        dataclasses.replace(mixture, max=float("nan"))
    broken = ActivationStats.from_dict(mixture.to_dict())
    broken.hist_counts[5] = np.inf  # arrays are mutable: approximators re-validate
    for approximator in (WLSApproximator(), MinimaxApproximator(), CompositeMinimaxApproximator()):
        with pytest.raises(ApproximationError, match="non-finite"):
            approximator.fit(broken, 7)
    with pytest.raises(ApproximationError, match="ActivationStats"):
        WLSApproximator().fit({"min": 0, "max": 1}, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: WLSApproximator(flor=0.1), "unknown parameter"),
        (lambda: WLSApproximator(floor=-1.0), "floor"),
        (lambda: WLSApproximator("swish"), "unknown activation"),
        (lambda: WLSApproximator(interval="iqr"), "interval policy"),
        (lambda: WLSApproximator(margin=-0.1), "margin"),
        (lambda: WLSApproximator(q=0.7), "quantile"),
        (lambda: MinimaxApproximator(tol=1.5), "tol"),
        (lambda: CompositeMinimaxApproximator("gelu"), "ReLU only"),
        (lambda: CompositeMinimaxApproximator(degrees=[15, 16]), "odd"),
        (lambda: CompositeMinimaxApproximator(alpha=9), "pass degrees"),
        (lambda: CompositeMinimaxApproximator(epsilon=0.0), "epsilon"),
    ],
)
def test_bad_parameters(factory: object, message: str) -> None:
    with pytest.raises(ApproximationError, match=message):
        factory()  # type: ignore[operator]


def test_composite_unreachable_precision(mixture: ActivationStats) -> None:
    with pytest.raises(ApproximationError, match="cannot reach"):
        CompositeMinimaxApproximator(alpha=30, degrees=[3]).fit(mixture, 4)


# ---------------------------------------------------------------------------------------- table
def test_candidate_table_and_format(mixture: ActivationStats, skewed: list[ActivationStats]) -> None:
    calibration = CalibrationResult("synthetic", 100, "test", [mixture, *skewed[:2]])
    rows = candidate_table(WLSApproximator(margins=[0.2]), calibration, [3, 15])
    assert [(r["layer"], r["degree"]) for r in rows] == [
        (name, d) for name in calibration.names() for d in (3, 15)
    ]
    for row in rows:
        assert tuple(row) == COLUMNS
        assert row["method"] == "wls" and row["depth"] == math.ceil(math.log2(row["degree"] + 1))
        assert 0 < row["weighted_mse"] < row["max_error"] ** 2
    text = format_table(rows).splitlines()
    assert len(text) == len(rows) + 2
    assert text[0].split() == list(COLUMNS)
    assert text[2].split()[:3] == ["layer1.relu", "3", "wls"]
    starts = {line.index("wls") for line in text[2:]}
    assert len(starts) == 1  # fixed width: the method column is aligned
    composite_rows = candidate_table(CompositeMinimaxApproximator(), calibration)
    assert [r["degree"] for r in composite_rows] == [58, 58, 58]


def test_approximations_serialize(composite: Approximation, mixture: ActivationStats) -> None:
    for approx in (composite, WLSApproximator().fit(mixture, 15), MinimaxApproximator().fit(mixture, 15)):
        doc = json.loads(json.dumps(approx.to_dict()))
        back = Approximation.from_dict(doc, layer=approx.layer)
        x = np.linspace(*approx.interval, 1001)
        np.testing.assert_allclose(back(x), approx(x), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- a real ResNet-20 layer
@pytest.fixture(scope="module")
def resnet20_layer_stats(resnet20_graph, cifar_train_subset) -> list:
    from olafhe.core.calibration.calibrate import calibrate
    from olafhe.data.cifar import to_tensor

    x, _ = cifar_train_subset
    return calibrate(resnet20_graph, to_tensor(x[:48]), progress=False).layers


@pytest.mark.parametrize("index", [0, 9, 18])  # the stem, a middle layer, the last ReLU (widest range)
def test_wls_vs_minimax_on_real_resnet20_layers(resnet20_layer_stats, index: int) -> None:
    stats = resnet20_layer_stats[index]
    for degree in (7, 15):
        wls = WLSApproximator(margin=0.2).fit(stats, degree)
        mm = MinimaxApproximator(margin=0.2).fit(stats, degree)
        assert wls.interval == mm.interval
        assert wls.weighted_mse < mm.weighted_mse
        assert mm.max_error < wls.max_error
