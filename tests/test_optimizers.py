"""Degree optimizers: the DP against an independent brute force, and dp vs greedy vs uniform.

The brute force enumerates every plan (bootstrap config x input level x, per layer, candidate x
bootstrap-or-not x level_in) by recursion, tracking every activation output level by name; it reads
the cost dicts directly (the synthetic problems define every level), so it shares no code with the
optimizers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from olafhe.core.contract.interfaces import Candidate, LayerSlot, OptimizationProblem, Solution
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError, InfeasibleError
from olafhe.core.planning.costs import level_costs
from olafhe.core.planning.planner import top_level
from olafhe.core.poly.approximation import Approximation
from olafhe.optimizers.dp import DPOptimizer, distortion_units
from olafhe.optimizers.greedy import GreedyOptimizer
from olafhe.optimizers.uniform import UniformOptimizer

# ------------------------------------------------------------------------------------------------
# Synthetic problems
# ------------------------------------------------------------------------------------------------


def poly(degree: int) -> Approximation:
    return Approximation("relu", "test", (-1.0, 1.0), (np.linspace(1.0, 0.1, degree + 1),))


def make_candidate(rng: np.random.Generator, degree: int, top: int) -> Candidate:
    a = poly(degree)
    d = a.depth
    scale = 0.1 * degree * (0.8 + 0.4 * rng.random())
    secs = {lv: scale * (1.0 + lv / top) for lv in range(d, top + 1)}
    distortion = float(np.exp(-degree / 3.0) * (0.5 + rng.random()))
    return Candidate(a, d, distortion, secs)


def synthetic(seed: int, n: int, n_cand: int, max_level: int, configs: dict[int, float],
              structure: str = "chain", max_bootstraps: int | None = None) -> OptimizationProblem:
    """Random small problem. ``structure``: chain, resnet (layer i adds layer i-2's output for even
    i >= 2) or overlap (layer 3 adds layer 0 and layer 4 adds layer 1: two pending skips at once)."""
    rng = np.random.default_rng(seed)
    top = top_level(max_level, configs)
    degrees = [1, 2, 3, 5, 7]
    layers = []
    for i in range(n):
        picks = sorted(rng.choice(degrees, size=n_cand, replace=False))
        cands = tuple(make_candidate(rng, int(g), top) for g in picks)
        skip = None
        if structure == "resnet" and i >= 2 and i % 2 == 0:
            skip = f"act{i - 2}"
        if structure == "overlap" and i in (3, 4):
            skip = f"act{i - 3}"
        lin_cost = 0.5 + rng.random()
        layers.append(LayerSlot(
            name=f"act{i}",
            candidates=cands,
            linear_depth=int(rng.integers(0, 2)),
            linear_seconds_by_level={lv: lin_cost * (1 + lv) for lv in range(top + 1)},
            skip_from=skip,
            skip_depth=int(rng.integers(0, 2)) if skip else 0,
        ))
    return OptimizationProblem(
        layers=tuple(layers), max_level=max_level, bootstrap_configs=configs, tail_depth=1,
        tail_seconds_by_level={lv: 0.3 * (1 + lv) for lv in range(top + 1)}, max_bootstraps=max_bootstraps,
    )


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------


def brute_force(p: OptimizationProblem) -> list[tuple[float, float]]:
    """(seconds, distortion) of every valid plan."""
    plans: list[tuple[float, float]] = []
    n = len(p.layers)

    def rec(i: int, level: int, outs: dict[str, int], secs: float, dist: float, boots: int,
            boot_level: int | None, boot_secs: float) -> None:
        if i == n:
            if level >= p.tail_depth:
                plans.append((secs + at(p.tail_seconds_by_level, level), dist))
            return
        layer = p.layers[i]
        if level - layer.linear_depth < 0:
            return
        secs += at(layer.linear_seconds_by_level, level)
        level -= layer.linear_depth
        if layer.skip_from is not None:
            skip = outs[layer.skip_from] - layer.skip_depth
            if skip < 0:
                return
            level = min(level, skip)
        options = [False]
        if boot_level is not None and (p.max_bootstraps is None or boots < p.max_bootstraps):
            options.append(True)
        for boot in options:
            avail = boot_level if boot else level
            for cand in layer.candidates:
                for level_in in range(cand.depth, avail + 1):
                    out = level_in - cand.depth
                    rec(i + 1, out, {**outs, layer.name: out},
                        secs + (boot_secs if boot else 0.0) + cand.seconds_by_level[level_in],
                        dist + cand.distortion, boots + boot, boot_level, boot_secs)

    configs = list(p.bootstrap_configs.items()) or [(None, 0.0)]
    for boot_level, boot_secs in configs:
        for start in range(p.max_level + 1):
            rec(0, start, {}, 0.0, 0.0, 0, boot_level, boot_secs)
    return plans


def best_within(plans: list[tuple[float, float]], budget: float) -> float:
    return min((s for s, d in plans if d <= budget), default=math.inf)


def at(table: dict[int, float], level: int) -> float:
    """A cost the synthetic problems define at every level (an empty table means free)."""
    return table[level] if table else 0.0


def replay(p: OptimizationProblem, sol: Solution) -> tuple[float, float]:
    """Re-run the level flow of a solution; assert every level rule; return (seconds, distortion)."""
    assert 0 <= sol.input_level <= p.max_level
    assert len(sol.choices) == len(p.layers)
    level, secs, dist, outs, boots = sol.input_level, 0.0, 0.0, {}, 0
    for layer, ch in zip(p.layers, sol.choices, strict=True):
        assert ch.name == layer.name
        secs += at(layer.linear_seconds_by_level, level)
        level -= layer.linear_depth
        assert level >= 0
        if layer.skip_from is not None:
            skip = outs[layer.skip_from] - layer.skip_depth
            assert skip >= 0
            level = min(level, skip)
        if ch.bootstrap_before:
            assert sol.level_after_bootstrap in p.bootstrap_configs
            secs += p.bootstrap_configs[sol.level_after_bootstrap]
            level = sol.level_after_bootstrap
            boots += 1
        cand = layer.candidates[ch.candidate_index]
        assert cand.depth <= ch.level_in <= level
        secs += cand.seconds_by_level[ch.level_in]
        dist += cand.distortion
        level = ch.level_in - cand.depth
        outs[layer.name] = level
    assert level >= p.tail_depth
    secs += at(p.tail_seconds_by_level, level)
    assert boots == sol.bootstraps
    if p.max_bootstraps is not None:
        assert boots <= p.max_bootstraps
    if boots == 0:
        assert sol.level_after_bootstrap is None
    return secs, dist


def check_solution(p: OptimizationProblem, sol: Solution, budget: float | None = None) -> None:
    secs, dist = replay(p, sol)
    assert sol.predicted_seconds == pytest.approx(secs, rel=1e-9)
    assert sol.distortion == pytest.approx(dist, rel=1e-12)
    if budget is not None:
        assert dist <= budget * (1 + 1e-12)


def budgets_for(plans: list[tuple[float, float]], rng: np.random.Generator, count: int) -> list[float]:
    """Budgets halfway between distinct plan distortions (so discretization cannot matter)."""
    dists = np.unique(np.round([d for _, d in plans], 12))
    mids = (dists[:-1] + dists[1:]) / 2
    picks = rng.choice(mids, size=min(count, len(mids)), replace=False)
    return [float(dists[0]) * 1.0000001, *map(float, picks), float(dists[-1]) * 1.01]


# ------------------------------------------------------------------------------------------------
# DP == brute force
# ------------------------------------------------------------------------------------------------

CASES = [
    # seed, layers, candidates, max_level, configs, structure, max_bootstraps
    (1, 3, 3, 5, {4: 6.0}, "chain", None),
    (2, 4, 3, 4, {4: 5.0, 3: 3.5}, "chain", None),
    (12, 6, 2, 4, {4: 3.0, 3: 2.0}, "chain", None),
    (3, 4, 2, 5, {3: 4.0, 5: 7.0}, "resnet", None),
    (4, 5, 2, 4, {4: 6.0}, "resnet", None),
    (8, 6, 2, 4, {4: 3.0}, "resnet", None),
    (5, 5, 2, 4, {3: 2.0, 4: 4.0}, "overlap", None),
    (13, 5, 3, 5, {4: 3.0, 5: 4.0}, "overlap", None),
    (21, 4, 3, 6, {5: 3.0}, "resnet", 1),
    (23, 5, 2, 6, {5: 2.5}, "overlap", 2),
    (14, 6, 2, 5, {5: 3.0}, "overlap", 2),
    (9, 4, 3, 12, {}, "chain", None),
    (23, 5, 2, 13, {}, "resnet", None),
    (11, 5, 2, 13, {}, "overlap", None),
    (6, 4, 3, 5, {4: 3.0}, "resnet", 1),           # infeasible: every plan runs out of levels
]


@pytest.mark.parametrize("seed,n,n_cand,max_level,configs,structure,cap", CASES)
def test_dp_equals_brute_force(seed, n, n_cand, max_level, configs, structure, cap):
    p = synthetic(seed, n, n_cand, max_level, configs, structure, cap)
    plans = brute_force(p)
    if not plans:
        with pytest.raises(InfeasibleError):
            DPOptimizer().optimize(p, 1e9)
        return
    rng = np.random.default_rng(seed)
    dp = DPOptimizer(resolution=4000)
    margin = 1 - n / dp.resolution
    for budget in budgets_for(plans, rng, 4):
        if best_within(plans, budget * margin) == math.inf:   # only the rounding margin separates
            with pytest.raises(InfeasibleError):
                dp.optimize(p, budget)
            continue
        sol = dp.optimize(p, budget)
        check_solution(p, sol, budget)
        truth = best_within(plans, budget)
        assert sol.predicted_seconds >= truth - 1e-9          # never beats the exhaustive optimum
        assert sol.predicted_seconds <= best_within(plans, budget * margin) + 1e-9
        if best_within(plans, budget * margin) == truth:      # discretization cannot matter here
            assert sol.predicted_seconds == pytest.approx(truth, rel=1e-12)


def test_dp_uses_bootstrap_configs_and_level_reduction():
    """Hand-checked: every later layer must bootstrap; with L in {3, 5} the cheaper L=3 wins, with only
    L=5 the activation inputs are reduced from 5 to 3 (the next linear work needs just one level)."""
    top = 5
    cand = Candidate(poly(3), 2, 0.1, {lv: 1.0 + lv for lv in range(2, top + 1)})
    layers = tuple(
        LayerSlot(f"a{i}", (cand,), 1, {lv: 0.5 * lv for lv in range(top + 1)}) for i in range(3)
    )
    tail = {lv: 0.1 for lv in range(top + 1)}
    p = OptimizationProblem(layers, max_level=4, bootstrap_configs={3: 10.0, 5: 12.0}, tail_depth=1,
                            tail_seconds_by_level=tail)
    sol = DPOptimizer().optimize(p, 1.0)
    check_solution(p, sol, 1.0)
    # 4 -lin-> 3 -act-> 1 -lin-> 0 -boot-> 3 -act-> 1 -lin-> 0 -boot-> 3 -act-> 1 -tail
    assert (sol.level_after_bootstrap, sol.bootstraps, sol.input_level) == (3, 2, 4)
    assert [(c.bootstrap_before, c.level_in) for c in sol.choices] == [(False, 3), (True, 3), (True, 3)]
    assert sol.predicted_seconds == pytest.approx(2 + 4 + 0.5 + 10 + 4 + 0.5 + 10 + 4 + 0.1)
    assert sol.info["configs"][5] > sol.info["configs"][3]

    only5 = OptimizationProblem(layers, max_level=4, bootstrap_configs={5: 10.0}, tail_depth=1,
                                tail_seconds_by_level=tail)
    sol5 = DPOptimizer().optimize(only5, 1.0)
    check_solution(only5, sol5, 1.0)
    assert sol5.level_after_bootstrap == 5
    assert [(c.bootstrap_before, c.level_in) for c in sol5.choices] == [(False, 3), (True, 3), (True, 3)]
    assert sol5.predicted_seconds == pytest.approx(min(s for s, _ in brute_force(only5)))


def test_bootstrap_refreshes_only_the_main_path():
    """a2 adds a0's output (one level consumed on the shortcut). A bootstrap refreshes only the main
    path, so the add runs at a0's old level: a2 always needs its own bootstrap (if a bootstrap before
    a1 also refreshed a0's stored output, one bootstrap would do). With max_level 3, a0 can only leave
    a level for the shortcut if it is bootstrapped itself."""
    top = 6
    c = Candidate(poly(3), 2, 0.0, {lv: 1.0 for lv in range(2, top + 1)})
    free = {lv: 0.0 for lv in range(top + 1)}
    layers = (
        LayerSlot("a0", (c,), 1, free),
        LayerSlot("a1", (c,), 1, free),
        LayerSlot("a2", (c,), 1, free, skip_from="a0", skip_depth=1),
    )
    for max_level in (3, 4):
        p = OptimizationProblem(layers, max_level=max_level, bootstrap_configs={6: 5.0}, tail_depth=1,
                                tail_seconds_by_level=free)
        sol = DPOptimizer().optimize(p, 1.0)
        check_solution(p, sol)
        assert sol.bootstraps == 2 and sol.choices[2].bootstrap_before
        assert sol.predicted_seconds == pytest.approx(min(s for s, _ in brute_force(p)))
        if max_level == 3:
            assert sol.choices[0].bootstrap_before
    capped = OptimizationProblem(layers, max_level=4, bootstrap_configs={6: 5.0}, tail_depth=1,
                                 tail_seconds_by_level=free, max_bootstraps=1)
    assert brute_force(capped) == []
    with pytest.raises(InfeasibleError, match="at most 1 times"):
        DPOptimizer().optimize(capped, 1.0)


# ------------------------------------------------------------------------------------------------
# dp vs greedy vs uniform
# ------------------------------------------------------------------------------------------------


def resnet_like(seed: int, n: int = 9, n_cand: int = 8) -> OptimizationProblem:
    rng = np.random.default_rng(seed)
    top = 13
    layers = []
    for i in range(n):
        degrees = sorted({3, 7, 15, 31, *map(int, rng.integers(2, 60, size=n_cand))})
        cands = tuple(make_candidate(rng, g, top) for g in degrees)
        skip = f"r{i - 2}" if i >= 2 and i % 2 == 0 else None
        layers.append(LayerSlot(f"r{i}", cands, 1, {lv: 3.0 * lv / top for lv in range(top + 1)}, skip,
                                1 if i == 4 else 0))
    return OptimizationProblem(tuple(layers), 11, {9: 20.0, 13: 25.0}, 1,
                               {lv: 0.2 * lv / top for lv in range(top + 1)})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dp_never_slower_than_greedy_or_uniform(seed):
    p = resnet_like(seed)
    dp = DPOptimizer()
    n, k = len(p.layers), dp.resolution
    least = sum(min(c.distortion for c in layer.candidates) for layer in p.layers)
    for budget in (least * 1.5, least * 4, least * 30):
        # DP at B is optimal among plans of distortion <= B (1 - n/K); give greedy that budget
        sol_dp = dp.optimize(p, budget)
        check_solution(p, sol_dp, budget)
        sol_gr = GreedyOptimizer().optimize(p, budget * (1 - n / k))
        check_solution(p, sol_gr, budget)
        assert sol_dp.predicted_seconds <= sol_gr.predicted_seconds + 1e-9
    for degree in (3, 7, 15, 31):
        sol_un = UniformOptimizer(degree=degree).optimize(p, 0.0)
        check_solution(p, sol_un)
        assert {p.layers[i].candidates[c.candidate_index].approximation.degree
                for i, c in enumerate(sol_un.choices)} == {degree}
        sol_dp = dp.optimize(p, sol_un.distortion / (1 - n / k))
        assert sol_dp.predicted_seconds <= sol_un.predicted_seconds + 1e-9


def test_greedy_and_uniform_placement_is_optimal_for_their_choices():
    """Their placement is exact: equal to the brute force restricted to the same candidates."""
    p = synthetic(21, 4, 3, 5, {4: 3.0, 5: 4.0}, "resnet")
    sol = GreedyOptimizer().optimize(p, 10.0)
    fixed = OptimizationProblem(
        tuple(LayerSlot(layer.name, (layer.candidates[ch.candidate_index],), layer.linear_depth,
                        layer.linear_seconds_by_level, layer.skip_from, layer.skip_depth)
              for layer, ch in zip(p.layers, sol.choices, strict=True)),
        p.max_level, p.bootstrap_configs, p.tail_depth, p.tail_seconds_by_level)
    assert sol.predicted_seconds == pytest.approx(min(s for s, _ in brute_force(fixed)))
    check_solution(p, sol, 10.0)


def test_uniform_degree_choice_and_errors():
    p = resnet_like(5)
    opt = UniformOptimizer()
    assert opt.uses_budget is False
    sol = opt.optimize(p, 0.0)
    assert sol.info["degree"] == 31                  # the largest degree every layer has
    for layer, ch in zip(p.layers, sol.choices, strict=True):
        same = [c for c in layer.candidates if c.approximation.degree == 31]
        assert layer.candidates[ch.candidate_index].distortion == min(c.distortion for c in same)
    with pytest.raises(ConfigError, match="degree 4 is not among the candidates"):
        UniformOptimizer(degree=4).optimize(p, 0.0)


# ------------------------------------------------------------------------------------------------
# Infeasibility, leveled mode, registry, helpers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [DPOptimizer, GreedyOptimizer])
def test_budget_below_least_distortion_is_infeasible(cls):
    p = synthetic(3, 4, 2, 5, {4: 3.0}, "resnet")
    least = sum(min(c.distortion for c in layer.candidates) for layer in p.layers)
    with pytest.raises(InfeasibleError, match=r"below the least achievable distortion"):
        cls().optimize(p, least * 0.99)
    with pytest.raises(InfeasibleError, match="finite number"):
        cls().optimize(p, -1.0)


def test_leveled_mode_respects_max_level():
    p = synthetic(9, 4, 3, 12, {}, "chain")
    for opt in (DPOptimizer(), GreedyOptimizer(), UniformOptimizer(degree=2)):
        sol = opt.optimize(p, 100.0)
        check_solution(p, sol)
        assert sol.bootstraps == 0 and sol.level_after_bootstrap is None
        assert sol.input_level <= p.max_level
    # degree 7 (depth 3) in all 4 layers: 12 activation levels + 2 linear + 1 tail > 12
    with pytest.raises(InfeasibleError, match=r"needs \d+ levels with the chosen candidates but max_level is 12"):
        UniformOptimizer(degree=7).optimize(p, 0.0)


@pytest.mark.parametrize("cls", [DPOptimizer, GreedyOptimizer])
def test_leveled_mode_refuses_too_deep_problems(cls):
    top = 6
    deep = Candidate(poly(7), 3, 0.1, {lv: 1.0 for lv in range(3, top + 1)})
    shallow = Candidate(poly(3), 2, 0.5, {lv: 0.5 for lv in range(2, top + 1)})
    layers = tuple(LayerSlot(f"a{i}", (deep, shallow), 1, {}) for i in range(3))
    p = OptimizationProblem(layers, max_level=top, bootstrap_configs={}, tail_depth=1)
    # 3 * (1 + 2) + 1 = 10 levels needed with the shallowest candidates, 6 available
    with pytest.raises(InfeasibleError, match=r"needs 10 levels .* max_level is 6"):
        cls().optimize(p, 10.0)


def test_greedy_repairs_depth_in_leveled_mode():
    """The most accurate start (depth 3 everywhere) does not fit; greedy swaps to shallower ones."""
    top = 9
    deep = Candidate(poly(7), 3, 0.1, {lv: 0.1 for lv in range(3, top + 1)})
    shallow = Candidate(poly(3), 2, 0.5, {lv: 1.0 for lv in range(2, top + 1)})
    layers = tuple(LayerSlot(f"a{i}", (deep, shallow), 1, {}) for i in range(3))
    p = OptimizationProblem(layers, max_level=top, bootstrap_configs={}, tail_depth=0)
    sol = GreedyOptimizer().optimize(p, 10.0)
    check_solution(p, sol, 10.0)
    assert sol.info["repairs"] >= 1
    assert DPOptimizer().optimize(p, 10.0).predicted_seconds <= sol.predicted_seconds


def test_level_infeasible_with_bootstrapping_names_the_limits():
    top = 4
    cand = Candidate(poly(15), 4, 0.1, {4: 1.0})
    layers = (LayerSlot("a0", (cand,), 1, {}), LayerSlot("a1", (cand,), 1, {}, "a0", 1))
    p = OptimizationProblem(layers, max_level=top, bootstrap_configs={4: 1.0}, tail_depth=1)
    with pytest.raises(InfeasibleError, match=r"max_level 4 and bootstrapping to levels \[4\]"):
        DPOptimizer().optimize(p, 1.0)
    with pytest.raises(InfeasibleError, match="no level assignment"):
        UniformOptimizer().optimize(p, 0.0)


def test_max_bootstraps_cap_is_respected():
    p = synthetic(6, 4, 3, 5, {4: 3.0}, "resnet")
    free = DPOptimizer().optimize(p, 100.0)
    assert free.bootstraps >= 1
    capped = OptimizationProblem(p.layers, p.max_level, p.bootstrap_configs, p.tail_depth,
                                 p.tail_seconds_by_level, max_bootstraps=free.bootstraps - 1)
    try:
        sol = DPOptimizer().optimize(capped, 100.0)
    except InfeasibleError:
        return
    check_solution(capped, sol)
    assert sol.bootstraps <= free.bootstraps - 1
    assert sol.predicted_seconds >= free.predicted_seconds - 1e-9


def test_pruning_dominated_candidates_keeps_the_optimum():
    p = resnet_like(3)
    least = sum(min(c.distortion for c in layer.candidates) for layer in p.layers)
    pruned = DPOptimizer().optimize(p, least * 3)
    full = DPOptimizer(prune=False).optimize(p, least * 3)
    assert pruned.predicted_seconds == pytest.approx(full.predicted_seconds, rel=1e-12)
    assert sum(pruned.info["candidates_kept"]) < sum(full.info["candidates_kept"])


def test_larger_budget_is_never_slower():
    p = resnet_like(7)
    least = sum(min(c.distortion for c in layer.candidates) for layer in p.layers)
    times = [DPOptimizer().optimize(p, least * f).predicted_seconds for f in (1.2, 2, 5, 20, 100)]
    assert all(a >= b - 1e-9 for a, b in zip(times[:-1], times[1:], strict=True))
    assert times[0] > times[-1]


def test_registry_lookup():
    reg = registry()
    assert reg.get("optimizers", "dp") is DPOptimizer
    assert reg.get("optimizers", "greedy") is GreedyOptimizer
    assert reg.get("optimizers", "uniform") is UniformOptimizer
    assert {"dp", "greedy", "uniform"} <= set(reg.names("optimizers"))


def test_distortion_units_round_up():
    d = np.array([0.0, 1e-9, 0.2, 1 / 3, 0.9999, 1.0, 2.0, np.nan])
    units = distortion_units(d, budget=1.0, resolution=1000)
    unit = 1.0 / 1000
    assert units[0] == 0 and units[1] == 1
    assert all(u * unit >= x for u, x in zip(units[:6], d[:6], strict=True))
    assert units[5] == 1000
    assert units[6] > 1000 and units[7] > 1000          # over budget / NaN: never fits
    assert list(distortion_units(np.array([0.0, 0.1]), 0.0, 10)) == [0, 11]


def test_level_costs_interpolation_and_extrapolation():
    assert list(level_costs({}, 3)) == [0.0, 0.0, 0.0, 0.0]
    assert list(level_costs({2: 5.0}, 3)) == [5.0] * 4
    v = level_costs({2: 2.0, 4: 4.0}, 6)
    assert v[3] == pytest.approx(3.0)                    # interpolated
    assert v[6] == pytest.approx(6.0)                    # extrapolated upwards
    assert v[1] == pytest.approx(1.0)
    assert v[0] == pytest.approx(0.2)                    # floored at a tenth of the smallest value
