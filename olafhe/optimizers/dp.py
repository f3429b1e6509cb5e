"""``dp``: exact dynamic program over candidates, bootstrap placement, level reductions and input level.

Problem: pick one candidate per activation layer, the bootstrap positions, one bootstrap level ``L``
(a key of ``bootstrap_configs``), every activation's ``level_in`` and the encryption level, to minimize
the predicted seconds (linear work + activations + bootstraps + tail) subject to
``sum(distortion) <= budget`` and the level rules of :mod:`olafhe.optimizers.level_model`.

Budget discretization. The budget is split into ``K = resolution`` units of ``budget / K``; every
candidate's distortion is rounded *up* to whole units, so any plan whose units fit in ``K`` also meets
the true budget. The result is optimal among those plans; it is at least as fast as the true optimum
for the slightly smaller budget ``budget * (1 - n / K)`` (n layers), since such plans lose less than one
unit per layer to rounding.

State. Before layer ``i`` a state is ``(m, s_1..s_p, b)``: ``m`` the main ciphertext's level, ``s_j``
the output levels of earlier activations that a later residual add still needs (pruned as soon as the
last such add has run; ResNets carry at most one), ``b`` the bootstraps so far (only when
``max_bootstraps`` is set). Each state holds a vector ``F[u]``, ``u = 0..K``: the least seconds to get
there using exactly ``u`` units, plus a back-pointer per entry.

Recursion for layer ``i`` (each step a vectorized min over the units axis):

1. linear + add: ``(m, s) -> (a = min(m - linear_depth, s_src - skip_depth), s')``, cost
   ``+ linear(m)``; paths where any level goes negative are dropped;
2. bootstrap: keep ``a``, or move to ``L`` at ``+ boot(L)`` (``b + 1``, capped);
3. level reduction: ``R[l] = min over x >= l of F[x]`` (suffix minimum over the main level);
4. candidate ``c`` with ``depth_c <= l``: ``F'[l - depth_c][u + w_c] = min(R[l][u] + act_c(l))``, and the
   new output level joins the pending skip levels if a later add uses it.

Initial states ``(I, 0)`` for every ``I <= max_level`` with ``F[0] = 0``; the answer is the minimum over
final states with ``m >= tail_depth`` of ``F[u] + tail(m)``, over ``u <= K``; the path is rebuilt from
the back-pointers. The whole DP runs once per bootstrap level ``L`` and the best ``L`` is kept.

Complexity. With ``T`` levels, ``S`` live states per layer (at most ``T^(1+p)`` times the bootstrap
counts), ``C`` candidates per layer after removing dominated ones (another candidate is no deeper, uses no
more units, has no more distortion and is no slower at any level), ``K`` units and ``Λ`` bootstrap
configs: time ``O(Λ · n · S · (C + T) · K)``, memory ``O(n · S · K)`` int32 back-pointers (stored
sparsely when most entries are infinite). Units that later layers cannot afford
(``u > K - sum of their least units``) are trimmed. With ``max_bootstraps`` the uncapped DP runs first
and the capped one (states also keyed by the bootstrap count, entries dominated by fewer bootstraps
and fewer units dropped) only when the uncapped optimum breaks the cap.

Measured on this machine (2 shared cores, synthetic problems of ``benchmarks/bench_optimizers.py``,
15-45 candidates per layer, K = 2000, two bootstrap configs): ResNet-20 (19 layers) 0.1-0.3 s,
ResNet-110 (109 layers) 0.9-1.7 s, about 140 MB; a binding bootstrap cap costs about 0.8 s on
ResNet-20 and 30 s / 0.6 GB on ResNet-110.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from olafhe.core.contract.interfaces import DegreeOptimizer, OptimizationProblem, Solution
from olafhe.core.errors import InfeasibleError
from olafhe.optimizers.level_model import Structure, check_budget, check_leveled_depth, no_plan_message, prepare
from olafhe.optimizers.placement import best_path, to_solution


def distortion_units(distortion: np.ndarray, budget: float, resolution: int) -> np.ndarray:
    """Each distortion rounded UP to whole units of ``budget / resolution`` (``resolution + 1``
    marks "never fits"; NaN counts as infinite)."""
    d = np.asarray(distortion, dtype=np.float64)
    d = np.where(np.isnan(d), np.inf, d)
    too_big = resolution + 1
    if budget <= 0:
        return np.where(d <= 0, 0, too_big).astype(np.int64)
    unit = budget / resolution
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.where(np.isfinite(d), np.ceil(np.maximum(d, 0.0) / unit), np.inf)
    scaled = np.where(scaled > too_big, too_big, scaled).astype(np.int64)
    # guard against floating rounding: units * unit must cover the true distortion
    short = np.isfinite(d) & (scaled * unit < d) & (scaled < too_big)
    return scaled + short.astype(np.int64)


def undominated(s: Structure, i: int, idx: np.ndarray, units: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """Positions in ``idx`` (candidates of layer ``i`` with their ``units`` and true ``distortion``) of
    the candidates that no other one dominates.

    ``a`` dominates ``b`` when it is no deeper, uses no more units, has no more true distortion and is
    no slower at any level; among identical candidates the first is kept. Dropping dominated candidates
    never changes the optimum: any path through ``b`` is matched by the same path through ``a``.
    """
    feats = np.column_stack([s.depth[i][idx], units, distortion, s.act[i][idx]])
    le = (feats[:, None, :] <= feats[None, :, :]).all(axis=2)    # le[a, b]: a <= b everywhere
    eq = (feats[:, None, :] == feats[None, :, :]).all(axis=2)
    n = len(units)
    earlier = np.arange(n)[:, None] < np.arange(n)[None, :]
    dominated = (le & (~eq | earlier)).any(axis=0)
    return np.nonzero(~dominated)[0]


class DPOptimizer(DegreeOptimizer):
    """Exact (budget-discretized) DP: fastest plan within the distortion budget.

    Parameters: ``resolution`` (int, default 2000) units the budget is split into; ``prune`` (bool,
    default True) drop dominated candidates first.
    """

    name = "dp"
    description = "exact dynamic program over degrees, bootstrap placement and levels (budget in units)"

    def __init__(self, resolution: int = 2000, prune: bool = True, **params: Any) -> None:
        super().__init__(resolution=resolution, prune=prune, **params)
        if int(resolution) < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution}")
        self.resolution = int(resolution)
        self.prune = bool(prune)

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        t0 = time.perf_counter()
        s = prepare(problem)
        distortions, least = check_budget(problem, budget)
        check_leveled_depth(problem)
        k = self.resolution
        allowed, units = [], []
        for i, d in enumerate(distortions):
            u = distortion_units(d, budget, k)
            keep = np.nonzero(u <= k)[0]
            if self.prune:
                keep = keep[undominated(s, i, keep, u[keep], d[keep])]
            allowed.append(keep)
            units.append(u[keep])
        if sum(int(u.min(initial=k + 1)) for u in units) > k:
            raise InfeasibleError(
                f"distortion budget {budget:.6g} is within the rounding margin of the least achievable "
                f"distortion {least:.6g}: with each layer rounded up to units of budget/{k} the most "
                f"accurate plan no longer fits; raise the resolution or the budget"
            )
        path, level, per_config = best_path(s, problem, allowed, units, k)
        if path is None:
            raise InfeasibleError(
                f"no plan meets the distortion budget {budget:.6g} (least achievable {least:.6g}, "
                f"budget split into {k} units): " + no_plan_message(problem, "the candidates")
                + "; raise the budget or the resolution"
            )
        info = {
            "optimizer": self.name,
            "resolution": k,
            "unit": budget / k,
            "configs": per_config,
            "candidates_kept": [len(a) for a in allowed],
            "states_max": path.states_max,
        }
        solution = to_solution(problem, path, level, info)
        solution.info["runtime_s"] = time.perf_counter() - t0
        return solution
