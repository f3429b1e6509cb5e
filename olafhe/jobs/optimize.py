"""The optimize job: calibration -> candidate approximations -> degrees, bootstraps and levels -> a Plan.

Every bootstrapping configuration the cost table measured (levels after bootstrap) is optimized
separately, its distortion budget tuned until the fast simulator meets the accuracy target on the
tuning images; the fastest plan wins. Leveled backends (or ``optimizer.leveled``) get one search
without bootstraps.
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
from olafhe.core.contract.interfaces import Approximator, Candidate, DegreeOptimizer
from olafhe.core.errors import DataError, OlafheError
from olafhe.core.planning.ckks import plan_ckks
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanExtra
from olafhe.core.planning.planner import (
    TuningResult,
    build_problem,
    make_candidates,
    solution_to_plan,
    top_level,
    tune_budget,
)
from olafhe.jobs import workspace
from olafhe.jobs.backend import approximator_for, cost_table, make_backend, optimizer_for
from olafhe.jobs.predict import predict
from olafhe.jobs.workspace import Loaded, Log, calibration_split, get_calibration, load, quiet, sensitivities


@dataclass
class OptimizeResult:
    plan: Plan
    history: list[dict]
    seconds: float
    plaintext_accuracy: float


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
    accuracy_of: Callable[[Plan], float]
    target: float
    log: Log


def run_optimize(config: Config, approximator: str | None = None, optimizer: str | None = None,
                 log: Log = quiet, progress: bool = True, loaded: Loaded | None = None,
                 calibration: CalibrationResult | None = None) -> OptimizeResult:
    """The fastest plan that meets ``optimizer.accuracy_drop`` below plaintext accuracy on the tuning images."""
    t_start = time.perf_counter()
    approx = approximator_for(config, approximator)   # unknown names fail before any data is loaded
    opt = optimizer_for(config, optimizer)
    loaded = loaded or load(config)
    calib = calibration or get_calibration(config, loaded, log, progress)
    cost_backend = config.backend.cost_backend
    backend = make_backend(config, cost_backend if cost_backend != "simulator" else None, graph=loaded.graph)
    caps = backend.capabilities()
    costs = cost_table(config, slots=caps.slots)
    cal_x, _, tune_x, tune_y = calibration_split(config, loaded.data_dir)
    sens = sensitivities(config, loaded, cal_x, calib, log)
    cands_raw = _fit_candidates(config, approx, calib, log)
    configs, max_level = _bootstrap_configs(config, caps, costs)
    top = top_level(max_level, configs)
    cands = {name: make_candidates(c, sens[name], backend.chebyshev_depth, costs, top) for name, c in cands_raw.items()}
    program = compile_program(loaded.graph, None, caps.slots, input_level=top,
                              max_rotation_keys=config.backend.max_rotation_keys)
    plain_acc, target = _accuracy_target(config, loaded, tune_x, tune_y, log)
    search = _Search(config, approx.name, opt, program, cands, costs, max_level,
                     _plan_ckks_for(backend, caps, costs), _tuning_accuracy(config, loaded, caps, tune_x, tune_y),
                     target, log)
    best, history = _best_over_configs(search, configs)
    plan = best.plan
    plan.predicted = replace(plan.predicted, accuracy=best.accuracy, target_accuracy=target)
    plan.extra = PlanExtra(tuning={"images": len(tune_y), "plaintext_accuracy": plain_acc, "budget": best.budget,
                                   "history": history},
                           sensitivity=sens, linear_layers=program.linear_report())
    plan.fingerprint = workspace.fingerprint(config, loaded)
    return OptimizeResult(plan, history, time.perf_counter() - t_start, plain_acc)


def _fit_candidates(config: Config, approx: Approximator, calib: CalibrationResult, log: Log) -> dict[str, list]:
    degrees = config.approximation.degrees or approx.default_degrees()
    log(f"fitting {approx.name} candidates (degrees {degrees[0]}..{degrees[-1]}) for {len(calib.layers)} layers")
    return {s.name: approx.candidates(s, degrees) for s in calib.layers}


def _bootstrap_configs(config: Config, caps: Capabilities, costs: CostTable) -> tuple[dict[int, float], int]:
    """(seconds per bootstrap by level after bootstrap, empty when leveled; the leveled level limit)."""
    leveled = config.optimizer.leveled or not caps.bootstrapping
    max_level = config.optimizer.max_level or caps.max_level
    configs: dict[int, float] = {}
    if not leveled:
        configs = dict(costs.bootstrap) or {caps.max_level: float("nan")}
        configs = {lv: s for lv, s in configs.items() if math.isfinite(s)}
        if not configs:
            raise DataError(f"cost table for {costs.backend} has no bootstrap costs; run `olafhe costs`")
    return configs, max_level


def _plan_ckks_for(backend: Backend, caps: Capabilities, costs: CostTable) -> Callable[[int | None], PlanCKKS]:
    """The CKKS parameters a plan bootstrapping to a level (None: leveled) records."""
    name = f"{costs.backend}-N{costs.ring_dimension}"

    def ckks_for(level_after: int | None) -> PlanCKKS:
        measured = costs.bootstrap_params(level_after) if level_after is not None else None
        return plan_ckks(backend.params, caps, name, measured)

    return ckks_for


def _accuracy_target(config: Config, loaded: Loaded, tune_x: torch.Tensor, tune_y: np.ndarray,
                     log: Log) -> tuple[float, float]:
    """(plaintext accuracy on the tuning images, the accuracy a plan must reach)."""
    plain_logits = predict(loaded.graph, tune_x, config.data.batch_size)
    plain_acc = 100.0 * float(np.mean(plain_logits.argmax(1) == tune_y))
    target = plain_acc - config.optimizer.accuracy_drop
    log(f"plaintext accuracy on {len(tune_y)} tuning images: {plain_acc:.2f}% -> target {target:.2f}%")
    return plain_acc, target


def _tuning_accuracy(config: Config, loaded: Loaded, caps: Capabilities, tune_x: torch.Tensor,
                     tune_y: np.ndarray) -> Callable[[Plan], float]:
    """Simulator accuracy of a plan on the tuning images, with CKKS-like noise at its precision."""

    def accuracy_of(plan: Plan) -> float:
        bits = plan.ckks.precision_bits or caps.precision_bits
        logits = predict(loaded.graph, tune_x, config.data.batch_size, plan,
                         noise_bits=bits if config.backend.ckks.noise else None)
        return 100.0 * float(np.mean(logits.argmax(1) == tune_y))

    return accuracy_of


def _best_over_configs(search: _Search, configs: dict[int, float]) -> tuple[TuningResult, list[dict]]:
    """The fastest tuned plan over the bootstrapping configurations, and every attempt's history."""
    best: TuningResult | None = None
    history: list[dict] = []
    failures: list[str] = []
    for level_after, seconds in sorted(configs.items()) if configs else [(None, None)]:
        tag = f"[levels after bootstrap {level_after}]"
        try:
            tuned = _tune_config(search, level_after, seconds, tag)
        except OlafheError as exc:
            search.log(f"{tag} no plan: {exc}")
            failures.append(f"levels after bootstrap {level_after}: {exc}")
            continue
        history += [{**h, "level_after_bootstrap": level_after} for h in tuned.history]
        if best is None or tuned.solution.predicted_seconds < best.solution.predicted_seconds:
            best = tuned
    if best is None:
        raise OlafheError("no plan meets the accuracy target: " + "; ".join(failures))
    return best, history


def _tune_config(search: _Search, level_after: int | None, seconds: float | None, tag: str) -> TuningResult:
    """The tuned plan for one bootstrapping configuration (``level_after`` None: leveled)."""
    s = search
    if level_after is None:
        problem = build_problem(s.program, s.candidates, s.costs, s.max_level, {})
    else:
        problem = build_problem(s.program, s.candidates, s.costs, level_after, {level_after: seconds})
    ckks = s.ckks_for(level_after)

    def make_plan(sol):  # noqa: ANN001, ANN202
        return solution_to_plan(sol, problem, s.config.model.name, s.approximator, s.optimizer.name, ckks)

    return tune_budget(s.optimizer, problem, make_plan, s.accuracy_of, s.target,
                       log=lambda m: s.log(f"{tag} {m}"))
