"""Choosing a plan's distortion budget: the largest whose predicted test-set drop meets the target.

The optimizer's budget bounds the plan's predicted distortion (sensitivity x weighted MSE), which scales the
logit perturbations; the tuning criterion (:class:`~olafhe.core.planning.criterion.FlipCriterion`) turns the
perturbations a simulated plan shows on the tuning pool into a predicted drop. Rather than simulating every
bisection step, one simulated plan gives the perturbations' shape; the drop at another budget ``b`` is
predicted by scaling them with ``sqrt(b / D)`` (``D`` the simulated plan's distortion), and each proposal is
then verified by one simulation. Three or four simulations per bootstrapping configuration suffice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from olafhe.core.contract.interfaces import DegreeOptimizer, OptimizationProblem, Solution
from olafhe.core.errors import InfeasibleError
from olafhe.core.planning.criterion import FlipCriterion
from olafhe.core.planning.plan import Plan

Log = Callable[[str], None]


@dataclass
class TuningResult:
    plan: Plan
    solution: Solution
    budget: float
    predicted_drop: float
    max_drop: float
    history: list[dict] = field(default_factory=list)
    met: bool = True  # False: no plan met max_drop and this is the most accurate (best effort)


@dataclass
class _Tuner:
    """Budget search state for one optimization problem."""

    optimizer: DegreeOptimizer
    problem: OptimizationProblem
    make_plan: Callable[[Solution], Plan]
    logits_of: Callable[[Plan], np.ndarray]
    criterion: FlipCriterion
    max_drop: float
    log: Log | None
    history: list[dict] = field(default_factory=list)
    solved: dict[float, tuple[Solution, Plan] | None] = field(default_factory=dict)
    verified: dict[float, tuple | None] = field(default_factory=dict)

    def solve(self, budget: float) -> tuple[Solution, Plan] | None:
        if budget not in self.solved:
            try:
                sol = self.optimizer.optimize(self.problem, budget)
                self.solved[budget] = (sol, self.make_plan(sol))
            except InfeasibleError:
                self.solved[budget] = None
        return self.solved[budget]

    def verify(self, budget: float) -> tuple[Solution, Plan, float, np.ndarray] | None:
        """Simulate the plan of ``budget``: (solution, plan, predicted drop, perturbations)."""
        if budget not in self.verified:
            self.verified[budget] = self._simulate(budget)
        return self.verified[budget]

    def _simulate(self, budget: float) -> tuple[Solution, Plan, float, np.ndarray] | None:
        res = self.solve(budget)
        if res is None:
            return None
        sol, plan = res
        pert = self.criterion.perturbations(self.logits_of(plan))
        drop = self.criterion.predicted_drop(pert)
        self.history.append({"budget": budget, "predicted_drop": drop, "flip_rate": self.criterion.flip_rate(pert),
                             "latency_s": sol.predicted_seconds, "bootstraps": sol.bootstraps})
        if self.log:
            self.log(f"budget {budget:.3e}: predicted drop {drop:.3f} points, latency {sol.predicted_seconds:.1f} s, "
                     f"{sol.bootstraps} bootstraps")
        return sol, plan, drop, pert

    def propose(self, distortion: float, pert: np.ndarray, lo: float, hi: float) -> float:
        """Largest budget in [lo, hi] whose scaled perturbations are predicted to meet the target."""
        def ok(b: float) -> bool:
            return self.criterion.predicted_drop(pert, math.sqrt(b / max(distortion, 1e-300))) <= self.max_drop

        if ok(hi):
            return hi
        if not ok(lo):
            return lo
        low, high = math.log(lo), math.log(hi)
        for _ in range(30):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if ok(math.exp(mid)) else (low, mid)
        return math.exp(low)


def budget_bounds(problem: OptimizationProblem) -> tuple[float, float]:
    """(least, largest) total distortion the candidates allow."""
    finite = [[c.distortion for c in s.candidates if math.isfinite(c.distortion)] for s in problem.layers]
    lo = sum(min(d) for d in finite)
    hi = sum(max(d) for d in finite)
    return max(lo, 1e-300) * 1.01, max(hi, lo * 10, 1e-299)


def tune_budget(optimizer: DegreeOptimizer, problem: OptimizationProblem, make_plan: Callable[[Solution], Plan],
                logits_of: Callable[[Plan], np.ndarray], criterion: FlipCriterion, max_drop: float,
                start: float | None = None, verifications: int = 5, log: Log | None = None,
                best_effort: bool = False) -> TuningResult:
    """The cheapest verified plan whose predicted test-set drop is at most ``max_drop`` points.

    ``start`` is the first budget to simulate (e.g. the one another bootstrapping configuration ended at);
    later budgets come from the scaling model, kept inside the bracket of budgets known to be infeasible
    or too inaccurate (below) and too inaccurate (above), falling back to bisection of that bracket.
    When even the most accurate plan misses ``max_drop``, ``best_effort`` returns it (``met`` False)
    instead of raising :class:`InfeasibleError`.
    """
    t = _Tuner(optimizer, problem, make_plan, logits_of, criterion, max_drop, log)
    if not optimizer.uses_budget:
        res = t.verify(math.inf)
        if res is None:
            raise InfeasibleError(f"optimizer {optimizer.name!r} found no plan")
        return TuningResult(res[1], res[0], math.inf, res[2], max_drop, t.history)
    lo, hi = budget_bounds(problem)
    lo = _feasible_floor(t, lo, hi)
    first = start or min(2.0 * lo, math.sqrt(lo * hi))  # near the most accurate plans: the usual answer
    good = _search(t, lo, hi, min(max(first, lo), hi), verifications)
    if not good:
        res = t.verify(lo)
        if res is not None and res[2] > max_drop and best_effort:
            return TuningResult(res[1], res[0], lo, res[2], max_drop, t.history, met=False)
        if res is None or res[2] > max_drop:
            reached = "no feasible plan" if res is None else f"a predicted drop of {res[2]:.2f} points"
            raise InfeasibleError(f"even the most accurate candidates reach {reached} > {max_drop} allowed; allow "
                                  "higher degrees, more levels, or a larger optimizer.accuracy_drop")
        good.append((lo, res))
    budget, (sol, plan, drop, _) = min(good, key=lambda g: g[1][0].predicted_seconds)
    return TuningResult(plan, sol, budget, drop, max_drop, t.history)


def _feasible_floor(t: _Tuner, lo: float, hi: float, steps: int = 10) -> float:
    """The smallest budget (within ~10 %) whose plan fits the levels, found by solving only (no simulation):
    lower budgets need higher degrees than the levels allow."""
    if t.solve(lo) is not None or t.solve(hi) is None:
        return lo
    low, high = math.log(lo), math.log(hi)
    for _ in range(steps):
        if high - low < 0.1:
            break
        mid = 0.5 * (low + high)
        low, high = (low, mid) if t.solve(math.exp(mid)) is not None else (mid, high)
    return math.exp(high)


def _search(t: _Tuner, lo: float, hi: float, budget: float, verifications: int) -> list[tuple[float, tuple]]:
    """Verified budgets meeting the target, searching for the largest such budget.

    Once a budget meeting the target and one missing it are known, the next budget interpolates the
    predicted drop between them in log-log space (the drop grows like a power of the budget); before that,
    the scaling model proposes, at most a factor 4 away.
    """
    good: list[tuple[float, tuple]] = []
    below: tuple[float, float] | None = None   # (budget, drop) of the largest budget meeting the target
    above: tuple[float, float] | None = None   # (budget, drop) of the smallest feasible budget missing it
    lower = lo
    for _ in range(verifications):
        res = t.verify(budget)
        if res is None:  # too deep for the levels: only looser budgets can work
            lower = max(lower, budget)
        elif res[2] <= t.max_drop:
            good.append((budget, res))
            lower = max(lower, budget)
            below = max(below or (0.0, 0.0), (budget, res[2]))
        else:
            above = min(above or (math.inf, 0.0), (budget, res[2]))
            if budget <= lo:  # the most accurate plan that fits the levels misses the target
                break
        upper = above[0] if above else math.inf
        if upper / lower < 1.15:
            break
        if below and above and below[1] > 0:
            slope = math.log(above[1] / below[1]) / math.log(above[0] / below[0])
            proposal = below[0] * (t.max_drop / below[1]) ** (1.0 / max(slope, 0.5))
        elif res is None:
            proposal = budget * 4.0
        else:
            proposal = t.propose(res[0].distortion, res[3], lo, hi)
        proposal = min(max(proposal, budget / 4.0), budget * 4.0, hi)
        if not lower < proposal < upper:
            proposal = math.sqrt(lower * upper) if upper < math.inf else min(budget * 4.0, hi)
        if good and abs(math.log(proposal / budget)) < 0.05:
            break
        budget = proposal
    return good
