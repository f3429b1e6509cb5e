"""The job steps behind the CLI: model + graph, calibration, optimization, evaluation, inference.

Each function takes a validated :class:`~olafhe.core.config.Config` and returns plain values (dicts,
Plans, CalibrationResults) so the CLI, benchmarks and tests share one code path.

Data discipline: calibration statistics come from the first ``data.calibration_images`` of a seeded
shuffle of ``train_subset``; the optimizer's budget is tuned on the *next* ``optimizer.eval_images``
of that shuffle (held out from the statistics, so out-of-interval inputs show up while tuning); the
test set is only ever used for reporting.
"""

from __future__ import annotations

import hashlib
import json
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from olafhe.core.calibration.calibrate import calibrate
from olafhe.core.calibration.stats import CalibrationResult
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend, Capabilities, CKKSParams
from olafhe.core.contract.interfaces import Approximator, DegreeOptimizer
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError, DataError, OlafheError
from olafhe.core.graph.fx_import import import_model
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.costs import CostTable, load_cost_table, machine_description
from olafhe.core.planning.plan import Plan
from olafhe.core.planning.planner import build_problem, make_candidates, solution_to_plan, tune_budget
from olafhe.data.cifar import balanced_subset, load_cifar10, to_tensor
from olafhe.data.paths import cache_dir
from olafhe.models import build_model

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ------------------------------------------------------------------------------------------------
# model, data
# ------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    model: torch.nn.Module
    graph: Graph
    data_dir: Path


def load(config: Config) -> Loaded:
    data_dir = config.data_dir()
    model = build_model(config.model.name, config.model.checkpoint or None, data_dir)
    graph = import_model(model, (3, 32, 32), name=config.model.name)
    return Loaded(model, graph, data_dir)


def calibration_split(config: Config, data_dir: Path) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(calibration images, labels, tuning images, labels) from train_subset, disjoint."""
    x, y = load_cifar10("train_subset", data_dir)
    n_cal, n_tune = config.data.calibration_images, config.optimizer.eval_images
    if n_cal + n_tune > len(x):
        raise ConfigError(
            f"data.calibration_images ({n_cal}) + optimizer.eval_images ({n_tune}) exceed the {len(x)} "
            "calibration images available"
        )
    order = np.random.default_rng(config.data.seed).permutation(len(x))
    cal, tune = order[:n_cal], order[n_cal:n_cal + n_tune]
    return to_tensor(x[cal]), y[cal], to_tensor(x[tune]), y[tune]


def test_set(data_dir: Path, limit: int | None) -> tuple[torch.Tensor, np.ndarray]:
    x, y = load_cifar10("test", data_dir)
    if limit:
        idx = balanced_subset(y, min(limit, len(y)), seed=0)
        x, y = x[idx], y[idx]
    return to_tensor(x), y


def predict(graph: Graph, images: torch.Tensor, batch_size: int, plan: Plan | None = None,
            noise_bits: float | None = None, progress: bool = False) -> np.ndarray:
    """Logits of the exact model (no plan) or of the plan's approximations (fast simulator path)."""
    if plan is not None:
        from olafhe.backends.simulator import simulate_logits

        return simulate_logits(graph, plan, images, batch_size, noise_bits=noise_bits, progress=progress)
    out = []
    it = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", unit="batch")
    with torch.no_grad():
        for s in it:
            out.append(graph.forward(images[s:s + batch_size]).numpy())
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------------


def _config_hash(config: Config, *sections: str) -> str:
    doc = {s: getattr(config, s).__dict__ if hasattr(getattr(config, s), "__dict__") else getattr(config, s)
           for s in sections}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_calibration(config: Config, out: str | None = None, progress: bool = True, log: Log = _quiet,
                    loaded: Loaded | None = None) -> CalibrationResult:
    loaded = loaded or load(config)
    cal_x, _, _, _ = calibration_split(config, loaded.data_dir)
    log(f"calibrating {config.model.name} on {len(cal_x)} train_subset images")
    result = calibrate(loaded.graph, cal_x, bins=config.calibration.bins, batch_size=config.data.batch_size,
                       progress=progress, model_name=config.model.name, source="cifar10/train_subset")
    path = Path(out or config.calibration.out or default_calibration_path(config))
    result.save(path)
    log(f"saved {len(result.layers)} layers to {path} ({result.seconds:.1f} s)")
    return result


def default_calibration_path(config: Config) -> Path:
    key = _config_hash(config, "model", "data", "calibration")
    return cache_dir() / f"{config.model.name}-calibration-{key}.json"


def get_calibration(config: Config, loaded: Loaded, log: Log = _quiet, progress: bool = True) -> CalibrationResult:
    path = Path(config.calibration.out) if config.calibration.out else default_calibration_path(config)
    if path.is_file():
        result = CalibrationResult.load(path)
        if result.names() == [a.name for a in loaded.graph.activations()]:
            return result
    return run_calibration(config, str(path), progress=progress, log=log, loaded=loaded)


# ------------------------------------------------------------------------------------------------
# backends, costs
# ------------------------------------------------------------------------------------------------


def slot_count(config: Config, graph: Graph | None = None, plan: Plan | None = None) -> int | None:
    """Slots per ciphertext: ``backend.ckks.slots`` when set, else the plan's, else automatic.

    Automatic packing is sparse when bootstrapping: the smallest power of two that holds the largest
    tensor of ``graph`` (every layout's period is at most that for grid and multiplexed layouts). A
    sparse bootstrap is much cheaper (OpenFHE, N = 2^16, 6 levels, measured: 15.7 s over 2^15 slots,
    11.2 s over 2^14, 9.1 s over 2^12) and as precise, while linear layers cost the same: data of period
    P repeats ``slots / P`` times either way. Without bootstrapping fewer slots save nothing, so the
    result is ``None`` (all ``ring_dimension / 2``).
    """
    c = config.backend.ckks
    if c.slots:
        return int(c.slots)
    ckks = plan.ckks if plan is not None else {}
    if ckks.get("slots"):
        return int(ckks["slots"])
    if graph is None or not bool(ckks.get("bootstrap", c.bootstrap)):
        return None
    largest = max(int(np.prod(node.shape)) for node in graph.nodes)
    return min(c.ring_dimension // 2, 1 << max(0, (largest - 1).bit_length()))


def ckks_params(config: Config, plan: Plan | None = None, graph: Graph | None = None) -> CKKSParams:
    """CKKS parameters from the config, overridden by the plan's (a plan is optimized for one
    bootstrapping configuration: its levels, scale, level budget and slots)."""
    c = config.backend.ckks
    p = dict(plan.ckks) if plan is not None else {}
    extra: dict = {"noise": c.noise}
    if p.get("precision_bits") is not None:
        extra["bootstrap_precision_bits"] = float(p["precision_bits"])
    return CKKSParams(
        ring_dimension=c.ring_dimension, scale_bits=int(p.get("scale_bits", c.scale_bits)),
        first_mod_bits=int(p.get("first_mod_bits", c.first_mod_bits)), levels=int(p.get("levels", c.levels)),
        bootstrap=bool(p.get("bootstrap", c.bootstrap)),
        level_budget=tuple(p.get("level_budget", c.level_budget)),  # type: ignore[arg-type]
        secret_key_dist=str(p.get("secret_key_dist", c.secret_key_dist)),
        bootstrap_iterations=c.bootstrap_iterations, slots=slot_count(config, graph, plan), insecure=c.insecure,
        threads=c.threads or None, extra=extra,
    )


def make_backend(config: Config, name: str | None = None, plan: Plan | None = None,
                 graph: Graph | None = None) -> Backend:
    """The backend ``name`` (default ``backend.name``) for ``plan``; ``graph`` enables automatic slots."""
    cls = registry().get("backends", name or config.backend.name)
    return cls(ckks_params(config, plan, graph))


def cost_table(config: Config, backend_name: str | None = None, slots: int | None = None) -> CostTable:
    """The cost table of ``backend_name`` (default ``backend.cost_backend``) at the configured ring dimension,
    with the bootstrap costs of ``slots`` slots (see :meth:`CostTable.for_slots`).

    When none was measured at that ring dimension, the nearest shipped table is scaled linearly in N
    (labelled ``estimated`` in its params).
    """
    name, n = backend_name or config.backend.cost_backend, config.backend.ckks.ring_dimension
    table = load_cost_table(name, n, missing_ok=True)
    if table is not None:
        return table.for_slots(slots)
    for other in (65536, 32768, 16384, 8192, 4096):
        base = load_cost_table(name, other, missing_ok=True)
        if base is not None:
            f = n / other
            return CostTable(name, n, {k: {lv: v * f for lv, v in t.items()} for k, t in base.ops.items()},
                             {k: v * f for k, v in base.bootstrap.items()}, base.machine,
                             {**base.params, "estimated_from": other}, base.created).for_slots(slots)
    raise DataError(f"no cost table shipped for backend {name!r}; measure one with `olafhe costs --backend {name}`")


# ------------------------------------------------------------------------------------------------
# optimization
# ------------------------------------------------------------------------------------------------


def _depth_fn(backend: Backend) -> Callable[[int], int]:
    return backend.chebyshev_depth


def sensitivities(config: Config, loaded: Loaded, images: torch.Tensor, calibration: CalibrationResult,
                  log: Log = _quiet) -> dict[str, float]:
    """Per-layer sensitivity of the logits to approximation error at that layer's output (cached).

    The perturbation has the *shape* of a real approximation error (each layer's degree-7 WLS fit
    error, rescaled), not white noise: convolutions and the final average pool pass correlated errors
    on far more than white noise, and white-noise sensitivities mispredicted ResNet-20's distortion by
    up to 7x (see olafhe/optimizers/sensitivity.py).
    """
    from olafhe.approximators.wls import WLSApproximator
    from olafhe.core.calibration.sensitivity import measure_sensitivity

    key = _config_hash(config, "model", "data", "calibration")
    path = cache_dir() / f"{config.model.name}-sensitivity-wls7-{key}.json"
    names = [a.name for a in loaded.graph.activations()]
    if path.is_file():
        cached = json.loads(path.read_text())
        if sorted(cached) == sorted(names):
            return {k: float(v) for k, v in cached.items()}
    t0 = time.perf_counter()
    wls = WLSApproximator(activation=config.approximation.activation)
    reference = {s.name: wls.fit(s, 7) for s in calibration.layers}
    sens = measure_sensitivity(loaded.graph, images[:256], names, reference=reference)
    path.write_text(json.dumps(sens, indent=1))
    log(f"measured sensitivities of {len(names)} layers in {time.perf_counter() - t0:.1f} s")
    return sens


@dataclass
class OptimizeResult:
    plan: Plan
    history: list[dict]
    seconds: float
    plaintext_accuracy: float


def approximator_for(config: Config, name: str | None = None) -> Approximator:
    cls = registry().get("approximators", name or config.approximation.approximator)
    return cls(activation=config.approximation.activation, **config.approximation.approximator_params)


def optimizer_for(config: Config, name: str | None = None) -> DegreeOptimizer:
    cls = registry().get("optimizers", name or config.optimizer.name)
    return cls(**config.optimizer.optimizer_params)


def run_optimize(config: Config, approximator: str | None = None, optimizer: str | None = None,
                 log: Log = _quiet, progress: bool = True, loaded: Loaded | None = None,
                 calibration: CalibrationResult | None = None) -> OptimizeResult:
    t_start = time.perf_counter()
    approx = approximator_for(config, approximator)   # unknown names fail before any data is loaded
    opt = optimizer_for(config, optimizer)
    loaded = loaded or load(config)
    calib = calibration or get_calibration(config, loaded, log, progress)
    backend = make_backend(config, config.backend.cost_backend if config.backend.cost_backend != "simulator" else None,
                           graph=loaded.graph)
    caps = backend.capabilities()
    costs = cost_table(config, slots=caps.slots)
    cal_x, _, tune_x, tune_y = calibration_split(config, loaded.data_dir)
    sens = sensitivities(config, loaded, cal_x, calib, log)
    degrees = config.approximation.degrees or approx.default_degrees()
    log(f"fitting {approx.name} candidates (degrees {degrees[0]}..{degrees[-1]}) for {len(calib.layers)} layers")
    cands_raw = {s.name: approx.candidates(s, degrees) for s in calib.layers}
    leveled = config.optimizer.leveled or not caps.bootstrapping
    max_level = config.optimizer.max_level or caps.max_level
    configs: dict[int, float] = {}
    if not leveled:
        configs = dict(costs.bootstrap) or {caps.max_level: float("nan")}
        configs = {lv: s for lv, s in configs.items() if math.isfinite(s)}
        if not configs:
            raise DataError(f"cost table for {costs.backend} has no bootstrap costs; run `olafhe costs`")
    top = max([max_level, *configs]) if configs else max_level
    depth_of = _depth_fn(backend)
    cands = {name: make_candidates(c, sens[name], depth_of, costs, top) for name, c in cands_raw.items()}
    # the linear structure does not depend on the plan: compile once with a placeholder plan
    placeholder = {name: _Placeholder(c[0].approximation) for name, c in cands.items()}
    program = compile_program(loaded.graph, placeholder, caps.slots, input_level=top,
                              max_rotation_keys=config.backend.max_rotation_keys)
    ckks = {"ring_dimension": caps.ring_dimension, "security_bits": caps.security_bits,
            "scale_bits": config.backend.ckks.scale_bits, "first_mod_bits": config.backend.ckks.first_mod_bits,
            "level_budget": list(config.backend.ckks.level_budget),
            "secret_key_dist": config.backend.ckks.secret_key_dist, "slots": caps.slots,
            "cost_table": f"{costs.backend}-N{costs.ring_dimension}"}
    plain_logits = predict(loaded.graph, tune_x, config.data.batch_size)
    plain_acc = 100.0 * float(np.mean(plain_logits.argmax(1) == tune_y))
    target = plain_acc - config.optimizer.accuracy_drop
    log(f"plaintext accuracy on {len(tune_y)} tuning images: {plain_acc:.2f}% -> target {target:.2f}%")

    def accuracy_of(plan: Plan) -> float:
        bits = plan.ckks.get("precision_bits") or caps.precision_bits
        logits = predict(loaded.graph, tune_x, config.data.batch_size, plan,
                         noise_bits=bits if config.backend.ckks.noise else None)
        return 100.0 * float(np.mean(logits.argmax(1) == tune_y))

    best = None
    history: list[dict] = []
    failures: list[str] = []
    config_items = sorted(configs.items()) if configs else [(None, None)]
    for level_after, seconds in config_items:
        if level_after is None:
            problem = build_problem(program, cands, costs, max_level, {})
        else:
            problem = build_problem(program, cands, costs, level_after, {level_after: seconds})

        ckks_l = {**ckks, **(costs.bootstrap_params(level_after) if level_after is not None else {})}

        def make_plan(sol, problem=problem, ckks_l=ckks_l):  # noqa: ANN001, ANN202
            return solution_to_plan(sol, problem, config.model.name, approx.name, opt.name, ckks_l)

        try:
            tuned = tune_budget(opt, problem, make_plan, accuracy_of, target,
                                log=lambda m, la=level_after: log(f"[levels after bootstrap {la}] {m}"))
        except OlafheError as exc:
            log(f"[levels after bootstrap {level_after}] no plan: {exc}")
            failures.append(f"levels after bootstrap {level_after}: {exc}")
            continue
        history += [{**h, "level_after_bootstrap": level_after} for h in tuned.history]
        if best is None or tuned.solution.predicted_seconds < best.solution.predicted_seconds:
            best = tuned
    if best is None:
        raise OlafheError("no plan meets the accuracy target: " + "; ".join(failures))
    plan = best.plan
    plan.predicted["accuracy"] = best.accuracy
    plan.predicted["target_accuracy"] = target
    plan.extra["tuning"] = {"images": len(tune_y), "plaintext_accuracy": plain_acc, "budget": best.budget,
                            "history": history}
    plan.extra["sensitivity"] = sens
    plan.extra["linear_layers"] = program.linear_report()
    return OptimizeResult(plan, history, time.perf_counter() - t_start, plain_acc)


@dataclass
class _Placeholder:
    approximation: object
    bootstrap_before: bool = False
    level_in: int = 0
    depth: int = 0


# ------------------------------------------------------------------------------------------------
# evaluation and encrypted inference
# ------------------------------------------------------------------------------------------------


def run_evaluate(config: Config, plan: Plan | None, limit: int | None, progress: bool = True,
                 loaded: Loaded | None = None, backend: str = "simulator") -> dict:
    loaded = loaded or load(config)
    if backend != "simulator":
        return run_infer(config, plan, limit or 1, backend, progress=progress, loaded=loaded)
    x, y = test_set(loaded.data_dir, limit)
    t0 = time.perf_counter()
    noise = None
    if plan is not None and config.backend.ckks.noise:
        noise = make_backend(config, "simulator", plan).capabilities().precision_bits
    logits = predict(loaded.graph, x, config.data.batch_size, plan, noise_bits=noise, progress=progress)
    correct = int(np.sum(logits.argmax(1) == y))
    return {"images": int(len(y)), "correct": correct, "accuracy": 100.0 * correct / max(len(y), 1),
            "backend": "simulator" if plan is not None else "plaintext", "plan": getattr(plan, "source", None),
            "seconds": time.perf_counter() - t0}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB since start, or since :func:`reset_peak_rss`.

    Reads ``VmHWM`` from ``/proc/self/status`` (resettable on Linux); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux ``clear_refs`` 5), so one run's peak excludes earlier runs.

    Returns False where the kernel offers no reset (then the peak covers the whole process).
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def check_runnable(plan: Plan, backend: Backend) -> Capabilities:
    """The backend's capabilities, after refusing (before any work) a plan it cannot run.

    The message names the plan's bootstraps and depth and the backend's limit.
    """
    caps = backend.capabilities()
    if plan.bootstraps and not caps.bootstrapping:
        raise OlafheError(
            f"backend {backend.name!r} cannot bootstrap, but the plan needs {plan.bootstraps} bootstraps "
            f"(total activation depth {plan.total_activation_depth()}, backend max level {caps.max_level}); "
            "make a leveled plan with --set optimizer.leveled=true"
        )
    if plan.input_level > caps.max_level:
        raise OlafheError(
            f"plan needs input level {plan.input_level} (total activation depth {plan.total_activation_depth()}, "
            f"{plan.bootstraps} bootstraps) but backend {backend.name!r} allows at most {caps.max_level}"
        )
    return caps


def run_infer(config: Config, plan: Plan | None, limit: int, backend_name: str | None = None,
              progress: bool = True, loaded: Loaded | None = None, log: Log = _quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on a real (or simulated) backend."""
    if plan is None:
        raise ConfigError("infer needs --plan PLAN.json (create one with `olafhe optimize`)")
    loaded = loaded or load(config)
    backend = make_backend(config, backend_name, plan, loaded.graph)
    caps = check_runnable(plan, backend)
    program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level,
                              cache_diagonals=caps.ring_dimension <= 2**14,
                              max_rotation_keys=config.backend.max_rotation_keys)
    x, y = test_set(loaded.data_dir, limit)
    sim_logits = predict(loaded.graph, x, config.data.batch_size, plan)
    reset_peak_rss()  # the peak below is this run's, not that of earlier work in the process
    t_keys = time.perf_counter()
    client, server = backend.keygen(program.key_request())
    keygen_s = time.perf_counter() - t_keys
    log(f"{caps.describe()}; keys for {len(program.rotations)} rotations in {keygen_s:.1f} s")
    correct = agree = 0
    seconds: list[float] = []
    classes: list[int] = []
    reports = []
    max_err = 0.0
    for i in range(len(y)):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(program.steps), desc=f"image {i + 1}/{len(y)}", unit="step")
        t0 = time.perf_counter()
        logits, report = encrypted_inference(program, client, server, x[i].numpy(),
                                             progress=(lambda _n, b=bar: b.update(1)) if bar else None)
        seconds.append(time.perf_counter() - t0)
        if bar:
            bar.close()
        reports.append(report.totals())
        classes.append(int(logits.argmax()))
        correct += int(logits.argmax() == y[i])
        agree += int(logits.argmax() == sim_logits[i].argmax())
        err = float(np.max(np.abs(logits - sim_logits[i])))
        max_err = max(max_err, err)
        log(f"image {i + 1}/{len(y)}: label {int(y[i])}, encrypted {int(logits.argmax())}, simulator "
            f"{int(sim_logits[i].argmax())}, max logit error {err:.2e}, {seconds[-1]:.1f} s "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in reports[-1].items())}), peak RSS {peak_rss_mb():.0f} MB")
    return {
        "images": int(len(y)), "correct": correct, "agree_with_simulator": agree / max(len(y), 1),
        "seconds_per_image": float(np.mean(seconds)) if seconds else 0.0, "peak_rss_mb": peak_rss_mb(),
        "backend": backend.name, "security_bits": caps.security_bits, "bootstraps": program.bootstraps,
        "max_logit_error": max_err, "keygen_seconds": keygen_s, "breakdown": reports,
        "ring_dimension": caps.ring_dimension, "model": plan.model, "approximator": plan.approximator,
        "optimizer": plan.optimizer, "degrees": plan.degrees, "predicted_latency_s": plan.predicted.get("latency_s"),
        "labels": [int(v) for v in y], "encrypted_classes": classes, "seconds": seconds,
        "rotation_keys": len(program.rotations), "machine": machine_description(),
    }


def predict_plan_seconds(config: Config, plan: Plan, backend_name: str, loaded: Loaded | None = None) -> float:
    """Predicted seconds per image of ``plan`` on ``backend_name``, from that backend's cost table.

    The plan is compiled as :func:`run_infer` would for that backend (its slots, Chebyshev depths and
    rotation-key budget), so a plan optimized against one library's costs can be priced on another.
    Refuses, like ``infer``, a plan the backend cannot run (bootstraps without bootstrapping, levels).
    """
    loaded = loaded or load(config)
    backend = make_backend(config, backend_name, plan, loaded.graph)
    caps = check_runnable(plan, backend)
    program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level,
                              max_rotation_keys=config.backend.max_rotation_keys)
    x, _ = test_set(loaded.data_dir, 1)
    return predict_program_seconds(program, cost_table(config, backend.name, caps.slots), backend, x[0].numpy())


def predict_program_seconds(program: Program, costs: CostTable, backend: Backend, image: np.ndarray) -> float:
    """Predicted latency of one inference: the program's operation counts (by kind and level, from an
    op-by-op simulator run with the target backend's Chebyshev depths) times the cost table."""
    from olafhe.backends.simulator import SimulatorBackend

    caps = backend.capabilities()
    sim = SimulatorBackend(CKKSParams(ring_dimension=caps.ring_dimension, levels=caps.max_level, slots=caps.slots,
                                      bootstrap=caps.bootstrapping, insecure=True, extra={"noise": False}))
    client, server = sim.keygen(program.key_request())
    server.chebyshev_depth = backend.chebyshev_depth  # type: ignore[method-assign]
    encrypted_inference(program, client, server, image)
    counts = dict(server.counter.counts)
    if caps.level_after_bootstrap is not None:  # bootstrap cost is keyed by the level it refreshes to
        boots = sum(n for (k, _), n in counts.items() if k == "bootstrap")
        counts = {key: n for key, n in counts.items() if key[0] != "bootstrap"}
        if boots:
            counts[("bootstrap", caps.level_after_bootstrap)] = boots
    return costs.predict(counts)
