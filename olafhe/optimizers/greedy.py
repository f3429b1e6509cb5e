"""``greedy``: the classic marginal-ratio heuristic, then exact placement for its choices.

1. Start every layer at its least-distortion candidate (the most accurate plan).
2. Repeatedly take the single-layer move to a cheaper candidate with the best ratio
   ``seconds saved / distortion added`` (moves that add no distortion first, largest saving first)
   among those that keep the total within the budget; stop when none is left.
3. Place bootstraps, the bootstrap level, level reductions and the input level for these fixed
   choices with the exact level DP (:func:`olafhe.optimizers.placement.place`).
4. If no placement exists (a leveled problem too deep for ``max_level``), keep swapping to shallower
   candidates, least distortion added per level saved first, until one does or none is left.

Seconds estimate used for the moves. Greedy cannot see levels, so a candidate is priced as
``seconds_by_level[ref] + depth * level_price``: ``ref`` = the highest level any activation can run at
(``max(max_level, bootstrap levels)``, or the ``reference_level`` parameter; raised to the candidate's
depth when below it) and ``level_price`` = the cheapest bootstrap's seconds per level it provides
(``min_L seconds(L) / L``; 0 when leveled, or the ``level_price`` parameter), so deeper polynomials pay
for the bootstraps they cause.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from olafhe.core.contract.interfaces import DegreeOptimizer, OptimizationProblem, Solution
from olafhe.core.errors import InfeasibleError
from olafhe.optimizers.level_model import INF, Structure, check_budget, prepare
from olafhe.optimizers.placement import place


def estimated_seconds(s: Structure, problem: OptimizationProblem, reference_level: int | None,
                      level_price: float | None) -> list[np.ndarray]:
    """Per layer, every candidate's level-free seconds estimate (see module doc)."""
    ref = s.top if reference_level is None else min(int(reference_level), s.top)
    if level_price is None:
        per_level = [secs / lvl for lvl, secs in problem.bootstrap_configs.items() if lvl > 0]
        level_price = min(per_level, default=0.0)
    out = []
    for i in range(len(s.names)):
        at = np.maximum(s.depth[i], ref)
        secs = np.full(len(at), INF)
        ok = at <= s.top
        secs[ok] = s.act[i][np.nonzero(ok)[0], at[ok]]
        out.append(secs + s.depth[i] * float(level_price))
    return out


def _best_move(est: list[np.ndarray], dist: list[np.ndarray], cur: list[int],
               slack: float) -> tuple[int, int] | None:
    """The (layer, candidate) move with the best seconds-saved / distortion-added ratio, or None."""
    best: tuple[float, float] | None = None
    move = None
    for i, (e, d) in enumerate(zip(est, dist, strict=True)):
        saved = e[cur[i]] - e
        added = d - d[cur[i]]
        ok = (saved > 0) & (added <= slack) & np.isfinite(d)
        for c in np.nonzero(ok)[0]:
            ratio = INF if added[c] <= 0 else saved[c] / added[c]
            key = (ratio, saved[c])
            if best is None or key > best:
                best, move = key, (i, int(c))
    return move


def _shallower_move(s: Structure, est: list[np.ndarray], dist: list[np.ndarray], cur: list[int],
                    slack: float) -> tuple[int, int] | None:
    """The move to a shallower candidate with the least distortion added per level saved, or None."""
    best: tuple[float, float] | None = None
    move = None
    for i, d in enumerate(dist):
        saved = s.depth[i][cur[i]] - s.depth[i]
        added = d - d[cur[i]]
        for c in np.nonzero((saved > 0) & (added <= slack))[0]:
            key = (max(added[c], 0.0) / saved[c], est[i][c])
            if best is None or key < best:
                best, move = key, (i, int(c))
    return move


class GreedyOptimizer(DegreeOptimizer):
    """Marginal-ratio greedy degree choice plus exact bootstrap/level placement.

    Parameters: ``reference_level`` (int, default: highest level) and ``level_price`` (seconds per
    level, default: cheapest bootstrap per level) of the seconds estimate.
    """

    name = "greedy"
    description = "greedy seconds-saved per distortion-added moves, then exact bootstrap placement"

    def __init__(self, reference_level: int | None = None, level_price: float | None = None,
                 **params: Any) -> None:
        super().__init__(reference_level=reference_level, level_price=level_price, **params)
        self.reference_level = reference_level
        self.level_price = level_price

    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        t0 = time.perf_counter()
        s = prepare(problem)
        dist, _ = check_budget(problem, budget)
        est = estimated_seconds(s, problem, self.reference_level, self.level_price)
        cur = [int(np.lexsort((e, d))[0]) for d, e in zip(dist, est, strict=True)]
        total = float(sum(d[c] for d, c in zip(dist, cur, strict=True)))
        moves = 0
        while (move := _best_move(est, dist, cur, budget - total)) is not None:
            i, c = move
            total += dist[i][c] - dist[i][cur[i]]
            cur[i] = c
            moves += 1
        repairs = 0
        while True:
            try:
                solution = place(problem, cur, {"optimizer": self.name, "moves": moves, "repairs": repairs})
                break
            except InfeasibleError:
                move = _shallower_move(s, est, dist, cur, budget - total)
                if move is None:
                    raise
                i, c = move
                total += dist[i][c] - dist[i][cur[i]]
                cur[i] = c
                repairs += 1
        solution.info["runtime_s"] = time.perf_counter() - t0
        return solution
