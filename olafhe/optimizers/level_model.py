"""The level model every optimizer plans with, and an optimization problem in array form.

Levels count *remaining* levels; the model mirrors what :mod:`olafhe.core.compiler.runtime` executes:

* The client encrypts at ``input_level`` (any level ``0..max_level``; lower is cheaper).
* Before activation ``i``: ``linear_depth`` levels of linear work that starts at the main ciphertext's
  level ``m`` and costs ``linear_seconds_by_level[m]``.
* Residual add (``skip_from`` set): the skip value is the *output* of the earlier activation, minus
  ``skip_depth``; the sum lives at ``min(main, skip)``.
* Optional bootstrap of the main ciphertext: costs ``bootstrap_configs[L]`` and returns level ``L``
  (one ``L`` for the whole plan). Only the main path is refreshed: a later residual add still sees the
  older output's own level, so the state carries the levels of outputs that future adds need.
* Free level reduction to ``level_in``; the chosen candidate needs ``level_in >= depth``, costs
  ``seconds_by_level[level_in]`` and leaves ``level_in - depth``.
* After the last activation ``tail_depth`` levels of linear work costing ``tail_seconds_by_level``.
* No level is ever negative.

Cost tables (``dict[level, seconds]``) become vectors over levels ``0..top`` with
:func:`olafhe.core.planning.costs.level_costs`, the cost table's own interpolation rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from olafhe.core.contract.interfaces import OptimizationProblem
from olafhe.core.errors import InfeasibleError
from olafhe.core.planning.costs import level_costs
from olafhe.core.planning.planner import top_level

INF = float("inf")


@dataclass(frozen=True)
class Structure:
    """Everything about a problem the level DP needs, as arrays (built once per problem).

    ``track[i]``: indices of earlier activations whose output level a state before layer ``i`` carries
    (those some layer ``k >= i`` adds as its residual); ``track[n]`` is empty.
    ``act[i][c, l]``: candidate ``c``'s seconds at input level ``l`` (inf where ``l < depth``).
    """

    top: int
    max_level: int
    names: tuple[str, ...]
    skip_src: tuple[int | None, ...]
    track: tuple[tuple[int, ...], ...]
    linear_depth: tuple[int, ...]
    skip_depth: tuple[int, ...]
    tail_depth: int
    lin: tuple[np.ndarray, ...]
    act: tuple[np.ndarray, ...]
    depth: tuple[np.ndarray, ...]
    tail: np.ndarray
    base: int  # radix for encoding states as integers (levels and bootstrap counts are below it)

    @classmethod
    def of(cls, problem: OptimizationProblem) -> Structure:
        layers = problem.layers
        if not layers:
            raise ValueError("the optimization problem has no activation layers")
        if problem.max_level < 0:
            raise ValueError(f"max_level must be >= 0, got {problem.max_level}")
        names = tuple(layer.name for layer in layers)
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            raise ValueError("activation layer names must be unique")
        top = top_level(problem.max_level, problem.bootstrap_configs)
        skip_src: list[int | None] = []
        for i, layer in enumerate(layers):
            if not layer.candidates:
                raise ValueError(f"layer {layer.name!r} has no candidates")
            if layer.linear_depth < 0 or layer.skip_depth < 0:
                raise ValueError(f"layer {layer.name!r}: depths must be >= 0")
            src = None
            if layer.skip_from is not None:
                src = index.get(layer.skip_from)
                if src is None or src >= i:
                    raise ValueError(
                        f"layer {layer.name!r}: skip_from {layer.skip_from!r} is not an earlier activation"
                    )
            skip_src.append(src)
        track = tuple(
            tuple(sorted({s for s in skip_src[i:] if s is not None and s < i}))
            for i in range(len(layers) + 1)
        )
        act, depth = [], []
        for layer in layers:
            d = np.array([c.depth for c in layer.candidates], dtype=np.int64)
            if (d < 0).any():
                raise ValueError(f"layer {layer.name!r}: candidate depths must be >= 0")
            costs = np.array([level_costs(c.seconds_by_level, top) for c in layer.candidates])
            costs[np.arange(top + 1)[None, :] < d[:, None]] = INF
            act.append(costs)
            depth.append(d)
        return cls(
            top=top,
            max_level=problem.max_level,
            names=names,
            skip_src=tuple(skip_src),
            track=track,
            linear_depth=tuple(layer.linear_depth for layer in layers),
            skip_depth=tuple(layer.skip_depth for layer in layers),
            tail_depth=problem.tail_depth,
            lin=tuple(level_costs(layer.linear_seconds_by_level, top) for layer in layers),
            act=tuple(act),
            depth=tuple(depth),
            tail=level_costs(problem.tail_seconds_by_level, top),
            base=top + 2 + (problem.max_bootstraps or 0),
        )


def required_input_level(problem: OptimizationProblem, depths: Sequence[int]) -> int:
    """Fresh-encryption level a leveled (bootstrap-free) run needs with these activation depths.

    Levels only ever shift down together, so run the flow from a large level without reductions and
    measure how far the lowest value (main path, skip paths, tail) falls below the start.
    """
    start = 10**9
    level, lowest = start, start
    out: dict[str, int] = {}
    for layer, d in zip(problem.layers, depths, strict=True):
        level -= layer.linear_depth
        if layer.skip_from is not None:
            level = min(level, out[layer.skip_from] - layer.skip_depth)
        lowest = min(lowest, level)
        level -= d
        out[layer.name] = level
        lowest = min(lowest, level)
    lowest = min(lowest, level - problem.tail_depth)
    return start - lowest


def prepare(problem: OptimizationProblem) -> Structure:
    """Validate ``problem`` and precompute the arrays the DP uses."""
    if problem.max_bootstraps is not None and problem.max_bootstraps < 0:
        raise ValueError(f"max_bootstraps must be >= 0, got {problem.max_bootstraps}")
    return Structure.of(problem)


def check_budget(problem: OptimizationProblem, budget: float) -> tuple[list[np.ndarray], float]:
    """Per-layer candidate distortions (NaN read as inf) and the least achievable total.

    Raises :class:`InfeasibleError` for a negative or non-finite budget, or one below that least total.
    """
    if not math.isfinite(budget) or budget < 0:
        raise InfeasibleError(f"distortion budget must be a finite number >= 0, got {budget}")
    distortions = []
    for layer in problem.layers:
        d = np.array([c.distortion for c in layer.candidates], dtype=np.float64)
        distortions.append(np.where(np.isnan(d), INF, d))
    least = float(sum(d.min() for d in distortions))
    if least > budget:
        raise InfeasibleError(
            f"distortion budget {budget:.6g} is below the least achievable distortion {least:.6g} "
            f"(the most accurate candidate in every layer); raise the budget"
        )
    return distortions, least


def check_leveled_depth(problem: OptimizationProblem, indices: Sequence[int] | None = None) -> None:
    """In leveled mode, refuse problems too deep for ``max_level``: with the shallowest candidate in
    every layer, or with the candidates ``indices`` when given."""
    if problem.bootstrap_configs:
        return
    if indices is None:
        depths = [min(c.depth for c in layer.candidates) for layer in problem.layers]
        what = "even with the shallowest candidate in every layer"
    else:
        depths = [layer.candidates[k].depth for layer, k in zip(problem.layers, indices, strict=True)]
        what = "with the chosen candidates"
    need = required_input_level(problem, depths)
    if need > problem.max_level:
        raise InfeasibleError(
            f"leveled evaluation needs {need} levels {what} but max_level is {problem.max_level}; "
            f"enable bootstrapping or use larger CKKS parameters"
        )


def no_plan_message(problem: OptimizationProblem, what: str) -> str:
    """One-line explanation for a level-infeasible problem."""
    if problem.bootstrap_configs:
        mode = f"bootstrapping to levels {sorted(problem.bootstrap_configs)}"
        if problem.max_bootstraps is not None:
            mode += f" at most {problem.max_bootstraps} times"
    else:
        mode = "no bootstrapping"
    return (f"no level assignment fits {what} with max_level {problem.max_level} and {mode} "
            f"(some activation, residual path or the tail runs out of levels)")
