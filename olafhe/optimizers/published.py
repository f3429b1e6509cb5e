"""``published``: the prior-work baseline as published -- one degree everywhere, a consistent modulus.

The paper we reproduce compares against uniform-degree polynomials (by default the composite minimax
ReLU, stages 15, 15, 27) evaluated with a *consistent ciphertext modulus*: every bootstrap refreshes to
the most levels the cost table offers (among the configurations that decrypt safely), every activation
starts at that top level right after a bootstrap, and no segment is ever reduced to a lower level. Only
the bootstraps a composite's later stages (or the linear work after it) need to fit are placed, by the
same exact level DP as ``uniform`` with level reductions switched off and the activations pinned to the
top level. ``uniform`` is the stronger baseline (our own best placement for the same polynomials).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from olafhe.core.contract.interfaces import OptimizationProblem, Solution
from olafhe.core.errors import ConfigError, InfeasibleError
from olafhe.core.planning.planner import STAGE_SEP
from olafhe.optimizers.level_dp import LevelPath, LevelSolver, _Table
from olafhe.optimizers.level_model import INF, Structure, no_plan_message, prepare
from olafhe.optimizers.placement import to_solution
from olafhe.optimizers.uniform import UniformOptimizer, uniform_indices

MODULUS = "consistent"


class _NoReduction(LevelSolver):
    """The level DP without free level reductions: each segment runs at the level it arrives with."""

    def _reduce(self, b: _Table, lmin: int) -> _Table:
        keep = b.lv[:, 0] >= lmin
        return _Table(b.lv[keep], b.nb[keep], b.cost[keep], b.code[keep])


def activation_starts(problem: OptimizationProblem) -> list[int]:
    """Indices of the slots where an activation begins (a composite's later stage slots excluded)."""
    return [i for i, layer in enumerate(problem.layers) if STAGE_SEP not in layer.name]


def consistent_structure(problem: OptimizationProblem, level: int) -> Structure:
    """The problem's level structure with a consistent modulus at ``level``: the client encrypts at
    ``max_level`` and every activation's first segment runs at ``level`` only (so, arriving lower, it
    must be bootstrapped)."""
    s = prepare(problem)
    lin = list(s.lin)
    lin[0] = np.where(np.arange(len(lin[0])) < problem.max_level, INF, lin[0])
    act = list(s.act)
    for i in activation_starts(problem):
        pinned = np.full_like(act[i], INF)
        pinned[:, level] = act[i][:, level]
        act[i] = pinned
    return replace(s, lin=tuple(lin), act=tuple(act))


def max_bootstrap_config(problem: OptimizationProblem) -> tuple[int, float]:
    """The bootstrapping configuration with the most levels after bootstrap (the problem's configurations
    are those that decrypt safely)."""
    if not problem.bootstrap_configs:
        raise ConfigError("published: a consistent modulus needs bootstrapping; the problem is leveled "
                          "(enable bootstrapping, or use the uniform optimizer)")
    level = max(problem.bootstrap_configs)
    return level, float(problem.bootstrap_configs[level])


def consistent_path(problem: OptimizationProblem, indices: list[int], level: int, seconds: float) -> LevelPath:
    """The cheapest consistent-modulus path for fixed candidates (bootstrap count capped when asked)."""
    s = consistent_structure(problem, level)
    allowed = [np.array([int(k)]) for k in indices]
    units = [np.zeros(1, dtype=np.int64) for _ in indices]
    path = _NoReduction(s, level, seconds, None).solve(allowed, units, 0)
    cap = problem.max_bootstraps
    if path is not None and cap is not None and sum(boot for _, boot, _ in path.steps) > cap:
        path = _NoReduction(s, level, seconds, cap).solve(allowed, units, 0)
    if path is None:
        raise InfeasibleError(no_plan_message(problem, "the chosen candidates with a consistent modulus "
                                              f"(every activation at level {level})"))
    return path


class PublishedOptimizer(UniformOptimizer):
    """One degree everywhere (``uniform``'s choice and ``degree`` parameter), consistent modulus."""

    name = "published"
    description = "published baseline: one degree everywhere, consistent modulus (every activation at the top level)"

    def select_bootstrap_configs(self, configs: dict[int, float]) -> dict[int, float]:
        """Only the configuration with the most levels after bootstrap."""
        level = max(configs)
        return {level: configs[level]}

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        t0 = time.perf_counter()
        level, seconds = max_bootstrap_config(problem)
        indices, degree = uniform_indices(problem, self.degree, self.name)
        path = consistent_path(problem, indices, level, seconds)
        placement = {"name": self.name, "modulus": MODULUS, "level_after_bootstrap": level}
        info = {"optimizer": self.name, "degree": degree, "placement": placement, "states_max": path.states_max}
        solution = to_solution(problem, path, level, info)
        solution.info["runtime_s"] = time.perf_counter() - t0
        return solution
