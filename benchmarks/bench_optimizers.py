"""Optimizer run time on synthetic ResNet-shaped problems (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_optimizers.py --benchmark-only`` (the project's
``addopts`` skip benchmarks by default; ``--benchmark-only`` overrides that). ``extra_info`` records the
predicted seconds of each plan (dp vs greedy vs uniform at the same budget).

The problems mimic CIFAR ResNet-20 (19 ReLUs) and ResNet-110 (109 ReLUs): activation 0 is the stem;
block ``b`` has activations ``2b+1`` (middle) and ``2b+2`` (end, adding the block input = activation
``2b``), with a one-level strided shortcut (``skip_depth=1``) at the first block of stages 2 and 3.
Numbers follow the measured OpenFHE costs in spirit: bootstrapping 20 s to level 9 or 25 s to level 13,
fresh encryptions at ``max_level``, linear work about 3 s at the top level scaling linearly with the
level, an activation about 0.05 s per degree scaling with the level; 15-45 candidates per layer (odd
degrees with 1-3 interval variants each), distortion = a per-layer sensitivity spread over two orders
of magnitude times an error decaying with the degree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from olafhe.core.contract.interfaces import Candidate, LayerSlot, OptimizationProblem
from olafhe.core.errors import InfeasibleError
from olafhe.core.poly.approximation import Approximation
from olafhe.optimizers.dp import DPOptimizer
from olafhe.optimizers.greedy import GreedyOptimizer
from olafhe.optimizers.uniform import UniformOptimizer

BOOTSTRAP = {9: 20.0, 13: 25.0}


def _candidates(rng: np.random.Generator, top: int, sensitivity: float) -> tuple[Candidate, ...]:
    n = int(rng.integers(15, 46))
    degrees = np.array([3, 5, 7, 9, 11, 13, 15, 19, 23, 27, 31, 39, 47, 55, 63])
    out = []
    for k in range(n):
        degree = int(degrees[k % len(degrees)])
        variant = k // len(degrees)                  # interval variants: same cost, other error
        a = Approximation("relu", "bench", (-8.0 - variant, 8.0 + variant), (np.ones(degree + 1),))
        error = math.exp(-degree / 9.0) * (1.0 + 0.5 * variant) * (0.8 + 0.4 * rng.random())
        secs = {lv: 0.05 * degree * (0.25 + 0.75 * lv / top) for lv in range(a.depth, top + 1)}
        out.append(Candidate(a, a.depth, sensitivity * error, secs))
    return tuple(out)


def resnet_problem(blocks_per_stage: int, max_level: int = 13, seed: int = 0) -> OptimizationProblem:
    """ResNet-(6n+2)-shaped problem with ``n = blocks_per_stage`` (3: ResNet-20, 18: ResNet-110)."""
    rng = np.random.default_rng(seed)
    top = max(max_level, *BOOTSTRAP)
    linear = {lv: 3.0 * lv / top for lv in range(top + 1)}
    layers = [LayerSlot("relu0", _candidates(rng, top, 10 ** rng.uniform(-1, 1)), 1, linear)]
    for b in range(3 * blocks_per_stage):
        mid, end = 2 * b + 1, 2 * b + 2
        strided = b in (blocks_per_stage, 2 * blocks_per_stage)
        layers.append(LayerSlot(f"relu{mid}", _candidates(rng, top, 10 ** rng.uniform(-1, 1)), 1, linear))
        layers.append(LayerSlot(f"relu{end}", _candidates(rng, top, 10 ** rng.uniform(-1, 1)), 1, linear,
                                skip_from=f"relu{2 * b}", skip_depth=1 if strided else 0))
    tail = {lv: 0.5 * lv / top for lv in range(top + 1)}
    return OptimizationProblem(tuple(layers), max_level, dict(BOOTSTRAP), 2, tail)


def _budget(p: OptimizationProblem, kind: str) -> float:
    """``tight``: 3x the least achievable distortion; ``moderate``: what degree 31 everywhere gives."""
    if kind == "tight":
        return 3.0 * sum(min(c.distortion for c in layer.candidates) for layer in p.layers)
    return UniformOptimizer(degree=31).optimize(p, 0.0).distortion


def _capped(p: OptimizationProblem, cap: int) -> OptimizationProblem:
    return OptimizationProblem(p.layers, p.max_level, p.bootstrap_configs, p.tail_depth,
                               p.tail_seconds_by_level, max_bootstraps=cap)


@pytest.mark.parametrize("blocks,max_level,kind", [
    (3, 9, "tight"), (3, 13, "tight"), (3, 9, "moderate"), (3, 13, "moderate"),
    (18, 13, "tight"), (18, 13, "moderate"),
])
def test_bench_dp(benchmark, blocks, max_level, kind):
    p = resnet_problem(blocks, max_level)
    budget = _budget(p, kind)
    rounds = 3 if blocks == 3 else 1
    sol = benchmark.pedantic(DPOptimizer().optimize, args=(p, budget), rounds=rounds, iterations=1)
    benchmark.extra_info.update(predicted_s=sol.predicted_seconds, bootstraps=sol.bootstraps,
                                level_after_bootstrap=sol.level_after_bootstrap)
    assert len(sol.choices) == 6 * blocks + 1 and sol.distortion <= budget
    assert sol.info["runtime_s"] < (10.0 if blocks == 3 else 60.0)


def test_bench_dp_binding_bootstrap_cap_resnet20(benchmark):
    """Times the DP with a bootstrap-count axis. Here the uncapped optimum already uses the fewest
    bootstraps any plan within the budget can have (a bootstrap costs ~20 activations), so one fewer
    is infeasible: the timed call runs the full capped DP and then raises."""
    p = resnet_problem(3, 13)
    budget = _budget(p, "moderate")
    free = DPOptimizer().optimize(p, budget)
    capped = _capped(p, free.bootstraps - 1)

    def run() -> None:
        with pytest.raises(InfeasibleError, match=f"at most {free.bootstraps - 1} times"):
            DPOptimizer().optimize(capped, budget)

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert DPOptimizer().optimize(_capped(p, free.bootstraps), budget).predicted_seconds == free.predicted_seconds


@pytest.mark.parametrize("blocks", [3, 18])
def test_bench_greedy(benchmark, blocks):
    p = resnet_problem(blocks, 13)
    budget = _budget(p, "moderate")
    sol = benchmark.pedantic(GreedyOptimizer().optimize, args=(p, budget), rounds=1, iterations=1)
    dp = DPOptimizer().optimize(p, budget)
    benchmark.extra_info.update(greedy_s=sol.predicted_seconds, dp_s=dp.predicted_seconds)
    assert dp.predicted_seconds <= sol.predicted_seconds * 1.001


@pytest.mark.parametrize("blocks", [3, 18])
def test_bench_uniform(benchmark, blocks):
    p = resnet_problem(blocks, 13)
    sol = benchmark.pedantic(UniformOptimizer(degree=31).optimize, args=(p, 0.0), rounds=1, iterations=1)
    dp = DPOptimizer().optimize(p, sol.distortion)
    benchmark.extra_info.update(uniform_s=sol.predicted_seconds, dp_s=dp.predicted_seconds,
                                bootstraps=sol.bootstraps)
    assert dp.predicted_seconds <= sol.predicted_seconds * 1.001
