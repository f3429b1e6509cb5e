"""The optimize job: calibration -> candidate approximations -> degrees, bootstraps and levels -> a Plan.

Every bootstrapping configuration the cost table measured (levels after bootstrap) is optimized
separately, its distortion budget tuned until the plan's predicted test-set drop (the tuning criterion on
the test-like tuning pool, simulated) is at most ``optimizer.tuning_target`` (the allowed drop less its
margin); the fastest plan wins.
Leveled backends (or ``optimizer.leveled``) get one search without bootstraps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from olafhe.core.calibration.stats import CalibrationResult
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.program import Program
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend, Capabilities
from olafhe.core.contract.interfaces import Approximator, Candidate, DegreeOptimizer, OptimizationProblem
from olafhe.core.errors import DataError, InfeasibleError, OlafheError
from olafhe.core.planning.ckks import images_per_ciphertext, plan_ckks
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.criterion import FlipCriterion
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanExtra
from olafhe.core.planning.planner import build_problem, make_candidates, solution_to_plan, top_level
from olafhe.core.planning.tuning import TuningResult, budget_bounds, tune_budget
from olafhe.jobs import workspace
from olafhe.jobs.backend import approximator_for, cost_table, make_backend, optimizer_for
from olafhe.jobs.predict import predict
from olafhe.jobs.safety import check_plan_safety, safe_bootstrap_configs
from olafhe.jobs.workspace import (
    Loaded,
    Log,
    TuningPool,
    calibration_split,
    get_calibration,
    load,
    quiet,
    sensitivities,
    tuning_pool,
)


@dataclass
class OptimizeResult:
    plan: Plan
    history: list[dict]
    seconds: float


@dataclass
class _Search:
    """What the searches over bootstrapping configurations share."""

    config: Config
    approximator: str
    optimizer: DegreeOptimizer
    program: Program
    candidates: dict[str, list[Candidate]]
    costs: CostTable
    max_level: int
    ckks_for: Callable[[int | None], PlanCKKS]
    logits_of: Callable[[Plan], np.ndarray]
    criterion: FlipCriterion
    log: Log


def run_optimize(config: Config, approximator: str | None = None, optimizer: str | None = None,
                 log: Log = quiet, progress: bool = True, loaded: Loaded | None = None,
                 calibration: CalibrationResult | None = None) -> OptimizeResult:
    """The fastest plan whose predicted test-set drop is at most ``optimizer.tuning_target`` points (the
    allowed ``accuracy_drop`` less its margin)."""
    t_start = time.perf_counter()
    approx = approximator_for(config, approximator)   # unknown names fail before any data is loaded
    opt = optimizer_for(config, optimizer)
    loaded = loaded or load(config)
    calib = calibration or get_calibration(config, loaded, log, progress)
    cost_backend = config.backend.cost_backend
    batch = images_per_ciphertext(config, loaded.graph)  # priced per image of this many per ciphertext
    backend = make_backend(config, cost_backend if cost_backend != "simulator" else None, graph=loaded.graph,
                           batch=batch)
    physical = backend.capabilities()
    caps = replace(physical, slots=physical.slots // batch)
    costs = cost_table(config, slots=physical.slots).per_image(batch)
    cal_x, _, _, _ = calibration_split(config, loaded.data_dir)
    sens = sensitivities(config, loaded, cal_x, calib, log)
    cands_raw = _fit_candidates(config, approx, calib, log)
    configs, max_level = _bootstrap_configs(config, caps, costs, log)
    configs = opt.select_bootstrap_configs(configs) if configs else configs
    top = top_level(max_level, configs)
    cands = {name: make_candidates(c, sens[name], backend.chebyshev_depth, costs, top) for name, c in cands_raw.items()}
    program = compile_program(loaded.graph, None, caps.slots, input_level=top,
                              max_rotation_keys=config.backend.max_rotation_keys)
    pool = tuning_pool(config, loaded.data_dir)
    criterion = _criterion(config, loaded, pool, log)
    pool = pool.images
    search = _Search(config, approx.name, opt, program, cands, costs, max_level,
                     _plan_ckks_for(backend, caps, costs, batch), _pool_logits(config, loaded, caps, pool), criterion,
                     log)
    best, history = _best_over_configs(search, configs)
    plan = best.plan
    allowed = config.optimizer.accuracy_drop
    plan.predicted = replace(plan.predicted, test_drop=best.predicted_drop, max_test_drop=allowed)
    plan.extra = PlanExtra(tuning={"images": len(pool), "pool": config.optimizer.tuning_pool, "met": best.met,
                                   "target": best.max_drop, "margin": config.optimizer.accuracy_margin,
                                   "criterion": _criterion_doc(criterion), "budget": best.budget, "history": history},
                           sensitivity=sens, linear_layers=program.linear_report(),
                           other={k: best.solution.info[k] for k in ("placement",) if k in best.solution.info})
    plan.fingerprint = workspace.fingerprint(config, loaded)
    if config.safety.enabled:  # the numeric model: refuse a plan whose values break CKKS, before any keys
        check_plan_safety(config, plan, loaded, log=log).raise_if_unsafe()
    return OptimizeResult(plan, history, time.perf_counter() - t_start)


def _fit_candidates(config: Config, approx: Approximator, calib: CalibrationResult, log: Log) -> dict[str, list]:
    degrees = config.approximation.degrees or approx.default_degrees()
    log(f"fitting {approx.name} candidates (degrees {degrees[0]}..{degrees[-1]}) for {len(calib.layers)} layers")
    return {s.name: approx.candidates(s, degrees) for s in calib.layers}


def _bootstrap_configs(config: Config, caps: Capabilities, costs: CostTable,
                       log: Log = quiet) -> tuple[dict[int, float], int]:
    """(seconds per bootstrap by level after bootstrap, empty when leveled; the leveled level limit).

    Configurations measured below ``safety.min_bootstrap_precision_bits`` are skipped (logged).
    """
    leveled = config.optimizer.leveled or not caps.bootstrapping
    max_level = config.optimizer.max_level or caps.max_level
    configs: dict[int, float] = {}
    if not leveled:
        configs = dict(costs.bootstrap) or {caps.max_level: float("nan")}
        configs = {lv: s for lv, s in configs.items() if math.isfinite(s)}
        if not configs:
            raise DataError(f"cost table for {costs.backend} has no bootstrap costs; run `olafhe costs`")
        configs = safe_bootstrap_configs(config, costs, configs, log)
    return configs, max_level


def _plan_ckks_for(backend: Backend, caps: Capabilities, costs: CostTable,
                   batch: int) -> Callable[[int | None], PlanCKKS]:
    """The CKKS parameters a plan bootstrapping to a level (None: leveled) records."""

    def ckks_for(level_after: int | None) -> PlanCKKS:
        measured = costs.bootstrap_params(level_after) if level_after is not None else None
        return plan_ckks(backend.params, caps, costs.name, measured, costs.machine_key, batch)

    return ckks_for


def _criterion(config: Config, loaded: Loaded, pool: TuningPool, log: Log) -> FlipCriterion:
    """The tuning criterion over the plaintext model's logits on the tuning pool."""
    reference = predict(loaded.graph, pool.images, config.data.batch_size)
    opt = config.optimizer
    crit = FlipCriterion(reference, opt.criterion_coefficient, opt.criterion_exponent, pool.parts)
    log(f"tuning pool: {len(reference)} {config.optimizer.tuning_pool} training images, plaintext median margin "
        f"{float(np.median(crit.margins)):.2f}; allowed test-set drop {opt.accuracy_drop} points, tuned to a "
        f"predicted {opt.tuning_target:.3g} (margin {opt.accuracy_margin:.0%})")
    return crit


def _criterion_doc(criterion: FlipCriterion) -> dict:
    return {"name": "flips", "coefficient": criterion.coefficient, "exponent": criterion.exponent,
            "parts": list(criterion.parts)}


def _pool_logits(config: Config, loaded: Loaded, caps: Capabilities,
                 pool: torch.Tensor) -> Callable[[Plan], np.ndarray]:
    """Simulated logits of a plan on the tuning pool, with CKKS-like noise at its bootstrap precision."""

    def logits_of(plan: Plan) -> np.ndarray:
        bits = plan.ckks.precision_bits or caps.precision_bits
        return predict(loaded.graph, pool, config.data.batch_size, plan,
                       noise_bits=bits if config.backend.ckks.noise else None)

    return logits_of


def _best_over_configs(search: _Search, configs: dict[int, float]) -> tuple[TuningResult, list[dict]]:
    """The fastest tuned plan over the bootstrapping configurations, and every attempt's history.

    Configurations are tried from the most levels down, each starting at the budget the previous one
    ended at; one whose fastest possible plan cannot beat the best so far is skipped unsimulated.
    """
    best: TuningResult | None = None
    history: list[dict] = []
    failures: list[str] = []
    start: float | None = None
    for level_after, seconds in sorted(configs.items(), reverse=True) if configs else [(None, None)]:
        tag = f"[levels after bootstrap {level_after}]"
        try:
            tuned = _tune_config(search, level_after, seconds, tag, start, best)
        except OlafheError as exc:
            search.log(f"{tag} no plan: {exc}")
            failures.append(f"levels after bootstrap {level_after}: {exc}")
            continue
        if tuned is None:
            continue
        history += [{**h, "level_after_bootstrap": level_after} for h in tuned.history]
        start = tuned.budget if math.isfinite(tuned.budget) else start
        if best is None or _better(tuned, best):
            best = tuned
    if best is None:
        raise OlafheError("no plan meets the predicted-drop target: " + "; ".join(failures))
    if not best.met:
        search.log(f"WARNING: no plan is predicted to lose at most {best.max_drop:.3g} points (the allowed drop "
                   f"less its margin); this is the most accurate one (predicted drop {best.predicted_drop:.2f}). "
                   "optimizer.best_effort = false makes this an "
                   "error; more levels or higher degrees may reach the target")
    return best, history


def _better(a: TuningResult, b: TuningResult) -> bool:
    """A plan meeting the target beats one that does not; then the faster, or (both best effort) the more
    accurate."""
    if a.met != b.met:
        return a.met
    if a.met:
        return a.solution.predicted_seconds < b.solution.predicted_seconds
    return a.predicted_drop < b.predicted_drop


def _tune_config(search: _Search, level_after: int | None, seconds: float | None, tag: str,
                 start: float | None, best: TuningResult | None) -> TuningResult | None:
    """The tuned plan for one bootstrapping configuration (``level_after`` None: leveled), or None when
    even its fastest plan is slower than ``best``."""
    s = search
    if level_after is None:
        problem = build_problem(s.program, s.candidates, s.costs, s.max_level, {})
    else:
        problem = build_problem(s.program, s.candidates, s.costs, level_after, {level_after: seconds})
    ckks = s.ckks_for(level_after)

    def make_plan(sol):  # noqa: ANN001, ANN202
        return solution_to_plan(sol, problem, s.config.model.name, s.approximator, s.optimizer.name, ckks)

    if best is not None and best.met and s.optimizer.uses_budget:
        fastest = _fastest_seconds(s.optimizer, problem)
        if fastest >= best.solution.predicted_seconds:
            s.log(f"{tag} skipped: its fastest plan ({fastest:.1f} s) is not faster than "
                  f"{best.solution.predicted_seconds:.1f} s")
            return None
    return tune_budget(s.optimizer, problem, make_plan, s.logits_of, s.criterion, s.config.optimizer.tuning_target,
                       start=start, log=lambda m: s.log(f"{tag} {m}"), best_effort=s.config.optimizer.best_effort)


def _fastest_seconds(optimizer: DegreeOptimizer, problem: OptimizationProblem) -> float:
    """Predicted seconds of the loosest-budget plan (the fastest this configuration allows)."""
    try:
        return optimizer.optimize(problem, budget_bounds(problem)[1]).predicted_seconds
    except InfeasibleError:
        return math.inf
