"""Numeric safety of a plan before any key exists: trace inputs on the simulator, judge them.

:func:`check_plan_safety` traces the calibration images with the largest activation excursions (the
extremes, ``safety.images`` of them: cheap and the most likely to break) or given inputs (``infer``
traces exactly the images it is about to encrypt) through the compiled program on the traced simulator
(:mod:`olafhe.backends.sim_trace`) and judges the trace with :mod:`olafhe.core.planning.safety`.
:func:`safe_bootstrap_configs` is the planner's side: bootstrapping configurations measured below the
minimum precision are never optimized.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from olafhe.backends.sim_trace import trace_program
from olafhe.backends.simulator import plan_activations
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.program import Program
from olafhe.core.config import Config
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError, OlafheError
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.ckks import resolve_ckks
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.plan import Plan
from olafhe.core.planning.safety import SafetyLimits, SafetyReport
from olafhe.jobs.backend import make_backend
from olafhe.jobs.workspace import Loaded, Log, calibration_split, quiet

__all__ = ["check_plan_safety", "extreme_images", "safe_bootstrap_configs", "safety_limits", "target_backend"]


def target_backend(config: Config, plan: Plan, backend_name: str | None = None) -> str:
    """The backend the plan's ciphertexts will live on: ``backend_name`` unless it is the simulator, else
    the backend of the plan's cost table, else the config's encrypted (or cost) backend."""
    if backend_name and backend_name != "simulator":
        return backend_name
    if plan.ckks.cost_table:
        return plan.ckks.cost_table.rsplit("-N", 1)[0]
    return config.backend.name if config.backend.name != "simulator" else config.backend.cost_backend


def safety_limits(config: Config, plan: Plan, backend_name: str | None = None,
                  graph: Graph | None = None) -> SafetyLimits:
    """The limits ``plan`` is judged against on its target backend (see :func:`target_backend`)."""
    params = resolve_ckks(config, plan, graph)
    try:
        reserve = registry().get("backends", target_backend(config, plan, backend_name))(params).reserve_limbs()
    except OlafheError:   # unknown backend or parameters it refuses: assume no reserve (the tighter limit)
        reserve = 0
    return SafetyLimits.for_plan(plan, params, reserve, config.safety)


def extreme_images(graph: Graph, plan: Plan, images: torch.Tensor, count: int, batch_size: int = 500) -> np.ndarray:
    """Indices of ``count`` images with the largest normalized activation inputs under ``plan``.

    Layers are taken by decreasing largest ``|t|`` (the plan's interval scaling); each contributes the
    image that reaches it, then its second most extreme, ..., until ``count`` distinct images are chosen.
    """
    approx = plan.approximations()
    peaks: dict[str, list[np.ndarray]] = {name: [] for name in approx}

    def hook(name: str, x: torch.Tensor) -> None:
        if name in approx:   # to_unit is affine and increasing: the extremes of |t| are at min and max of x
            flat = x.flatten(1)
            ends = approx[name].to_unit(torch.stack([flat.amin(1), flat.amax(1)]).double().numpy())
            peaks[name].append(np.abs(ends).max(axis=0))

    fns = plan_activations(plan)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            graph.forward(images[start:start + batch_size], fns, hook)
    table = np.stack([np.concatenate(v) for v in peaks.values() if v])   # (layers, images)
    ranked = np.argsort(-table, axis=1, kind="stable")[np.argsort(-table.max(axis=1), kind="stable")]
    chosen: list[int] = []
    for image in ranked.T.ravel():   # each layer's most extreme image, then each layer's second, ...
        if int(image) not in chosen:
            chosen.append(int(image))
        if len(chosen) == min(count, table.shape[1]):
            break
    return np.array(chosen, dtype=np.int64)


def check_plan_safety(config: Config, plan: Plan, loaded: Loaded, images: torch.Tensor | None = None,
                      program: Program | None = None, backend_name: str | None = None,
                      log: Log = quiet) -> SafetyReport:
    """Trace ``images`` (default: the ``safety.images`` most extreme of the first ``safety.scan_images``
    calibration images) through ``plan`` on the traced simulator and judge every check; raises nothing
    (see :meth:`SafetyReport.raise_if_unsafe`).

    ``program``: the plan already compiled (any rotation-key budget), else compiled here;
    ``backend_name``: the backend that will run it (default: the plan's cost-table backend).
    """
    t0 = time.perf_counter()
    limits = safety_limits(config, plan, backend_name, loaded.graph)
    caps = make_backend(config, "simulator", plan, loaded.graph).capabilities()
    if images is None:
        cal_x = calibration_split(config, loaded.data_dir)[0][:config.safety.scan_images]
        pick = extreme_images(loaded.graph, plan, cal_x, config.safety.images, config.data.batch_size)
        images, source = cal_x[pick], f"the {len(pick)} most extreme of {len(cal_x)} calibration images"
    else:
        source = "the inputs to encrypt"
    if program is None or program.slots != caps.slots:
        program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level)
    trace = trace_program(program, caps, images.numpy(), seed=config.data.seed)
    report = SafetyReport.judge(plan, trace, limits, source)
    report.seconds = time.perf_counter() - t0
    log(report.summary() + f" ({report.seconds:.1f} s)")
    return report


def safe_bootstrap_configs(config: Config, costs: CostTable, configs: dict[int, float],
                           log: Log = quiet) -> dict[int, float]:
    """``configs`` (seconds per bootstrap by level after bootstrap) without those whose measured precision
    is below ``safety.min_bootstrap_precision_bits``; each one skipped is logged, none left is an error."""
    floor = config.safety.min_bootstrap_precision_bits
    if not config.safety.enabled:
        return configs
    kept, skipped = {}, []
    for level, seconds in configs.items():
        params = costs.bootstrap_params(level)
        bits = None if params is None else params.extra.get("bootstrap_precision_bits")
        if bits is not None and bits < floor:
            skipped.append(f"{level} levels after bootstrap (scale {params.scale_bits}, {bits:.2f} bits)")
        else:
            kept[level] = seconds
    for what in skipped:
        log(f"skipping {what}: below safety.min_bootstrap_precision_bits = {floor:g}")
    if not kept:
        raise ConfigError(
            f"every bootstrapping configuration of cost table {costs.backend}-N{costs.ring_dimension} is below "
            f"safety.min_bootstrap_precision_bits = {floor:g} ({'; '.join(skipped)}); lower it with "
            "--set safety.min_bootstrap_precision_bits=..."
        )
    return kept
