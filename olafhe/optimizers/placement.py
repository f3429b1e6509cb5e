"""Bootstrap placement for chosen candidates, and pricing a plan under the level model.

:func:`best_path` runs the level DP (:class:`~olafhe.optimizers.level_dp.LevelSolver`) for every bootstrap
configuration and keeps the fastest path; :func:`to_solution` turns it into a :class:`Solution`, checked
by replaying it through :func:`evaluate_plan`; :func:`place` does both for fixed candidates (what greedy,
uniform and plugins use).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from olafhe.core.contract.interfaces import LayerChoice, OptimizationProblem, Solution
from olafhe.core.errors import InfeasibleError
from olafhe.core.planning.costs import level_costs
from olafhe.core.planning.planner import top_level
from olafhe.optimizers.level_dp import LevelPath, LevelSolver
from olafhe.optimizers.level_model import Structure, check_leveled_depth, no_plan_message, prepare


def best_path(prep: Structure, problem: OptimizationProblem, allowed: Sequence[np.ndarray],
              units: Sequence[np.ndarray], capacity: int) -> tuple[LevelPath | None, int | None, dict]:
    """Run the level DP for every bootstrap config (or once, leveled) and keep the fastest path.

    With ``max_bootstraps`` the uncapped DP runs first: when its optimum respects the cap it is also
    the capped optimum (the capped plans are a subset); only otherwise does the slower DP with a
    bootstrap-count axis run. Returns the path, its bootstrap level (None when leveled) and
    ``{L: seconds or None}`` per config.
    """
    configs: list[tuple[int | None, float]] = sorted(problem.bootstrap_configs.items()) or [(None, 0.0)]
    best: tuple[LevelPath | None, int | None] = (None, None)
    per_config: dict = {}
    cap = problem.max_bootstraps
    for level, secs in configs:
        path = LevelSolver(prep, level, float(secs), None).solve(allowed, units, capacity)
        if path is not None and cap is not None and sum(boot for _, boot, _ in path.steps) > cap:
            path = LevelSolver(prep, level, float(secs), cap).solve(allowed, units, capacity)
        per_config[level] = None if path is None else path.seconds
        if path is not None and (best[0] is None or path.seconds < best[0].seconds):
            best = (path, level)
    return best[0], best[1], per_config


def evaluate_plan(problem: OptimizationProblem, choices: Sequence[LayerChoice], input_level: int,
                  boot_level: int | None) -> tuple[float, float]:
    """Replay a plan through the level model: ``(predicted seconds, true distortion)``.

    Raises ``ValueError`` when the plan breaks a level rule (negative level, ``level_in`` above the
    available level or below the candidate's depth, a bootstrap without a config).
    """
    top = top_level(problem.max_level, problem.bootstrap_configs)
    if not 0 <= input_level <= problem.max_level:
        raise ValueError(f"input level {input_level} outside 0..{problem.max_level}")
    level, seconds, distortion = input_level, 0.0, 0.0
    out: dict[str, int] = {}
    for layer, ch in zip(problem.layers, choices, strict=True):
        seconds += float(level_costs(layer.linear_seconds_by_level, top)[level])
        level -= layer.linear_depth
        if layer.skip_from is not None:
            level = min(level, out[layer.skip_from] - layer.skip_depth)
        if level < 0:
            raise ValueError(f"layer {layer.name!r}: level {level} < 0 before the activation")
        if ch.bootstrap_before:
            if boot_level is None:
                raise ValueError(f"layer {layer.name!r} bootstraps but the plan has no bootstrap level")
            seconds += float(problem.bootstrap_configs[boot_level])
            level = boot_level
        cand = layer.candidates[ch.candidate_index]
        if not cand.depth <= ch.level_in <= level:
            raise ValueError(f"layer {layer.name!r}: level_in {ch.level_in} not in [{cand.depth}, {level}]")
        seconds += float(level_costs(cand.seconds_by_level, top)[ch.level_in])
        distortion += cand.distortion
        level = ch.level_in - cand.depth
        out[layer.name] = level
    if level < problem.tail_depth:
        raise ValueError(f"the tail needs {problem.tail_depth} levels but only {level} are left")
    seconds += float(level_costs(problem.tail_seconds_by_level, top)[level])
    return seconds, distortion


def to_solution(problem: OptimizationProblem, path: LevelPath, boot_level: int | None,
                info: dict) -> Solution:
    """Turn a DP path into a :class:`Solution`, re-checking it with :func:`evaluate_plan`."""
    choices = tuple(
        LayerChoice(layer.name, cand, boot, level_in)
        for layer, (cand, boot, level_in) in zip(problem.layers, path.steps, strict=True)
    )
    bootstraps = sum(ch.bootstrap_before for ch in choices)
    level_after = boot_level if bootstraps else None
    seconds, distortion = evaluate_plan(problem, choices, path.input_level, level_after)
    if not math.isclose(seconds, path.seconds, rel_tol=1e-9, abs_tol=1e-9):
        raise RuntimeError(f"level DP bookkeeping error: path costs {path.seconds} s, replay {seconds} s")
    return Solution(
        choices=choices,
        input_level=path.input_level,
        level_after_bootstrap=level_after,
        bootstraps=bootstraps,
        predicted_seconds=seconds,
        distortion=distortion,
        info=info,
    )


def place(problem: OptimizationProblem, indices: Sequence[int], info: dict | None = None) -> Solution:
    """Best bootstrap placement, bootstrap level, level reductions and input level for fixed candidates."""
    prep = prepare(problem)
    check_leveled_depth(problem, indices)
    allowed = [np.array([int(k)]) for k in indices]
    units = [np.zeros(1, dtype=np.int64) for _ in indices]
    path, level, per_config = best_path(prep, problem, allowed, units, 0)
    if path is None:
        raise InfeasibleError(no_plan_message(problem, "the chosen candidates"))
    return to_solution(problem, path, level, {**(info or {}), "configs": per_config,
                                              "states_max": path.states_max})
