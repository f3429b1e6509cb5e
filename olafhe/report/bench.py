"""The side-by-side benchmark behind ``olafhe bench``.

It answers the project's central question with one table per model: at the accuracy the config asks
for, how much faster is a layerwise plan than the prior-work baseline (composite minimax sign-ReLU with
one degree everywhere)? Every row is a complete, saved plan evaluated on the simulator over the test
set (test accuracy is reported, never tuned on) and, on request, run encrypted once.

Outputs of :func:`run_bench` in ``out_dir``: ``<model>-<approximator>-<optimizer>.json`` (plans),
``results.json`` (rows, machine, command), ``results.md`` (the same as a Markdown table),
``<model>-degrees.png`` and ``<model>-pareto.png``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from olafhe.core.config import Config, load_config
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError, DataError, OlafheError, PluginError
from olafhe.core.planning.machine import machine_description
from olafhe.core.planning.plan import Plan, PlanPredicted
from olafhe.jobs.backend import approximator_for
from olafhe.jobs.evaluate import run_evaluate
from olafhe.jobs.infer import run_infer
from olafhe.jobs.latency import predict_plan_seconds
from olafhe.jobs.optimize import run_optimize
from olafhe.jobs.workspace import Loaded, get_calibration, load
from olafhe.report.markdown import fmt, number, results_markdown, update_readme
from olafhe.report.plots import plot_degrees, plot_pareto
from olafhe.report.runs import load_measured_runs, match_measured_run, run_fields

Log = Callable[[str], None]

DEFAULT_COMBOS: tuple[tuple[str, str], ...] = (
    ("composite-minimax", "uniform"),  # the prior-work baseline: first, speedups are relative to it
    ("composite-minimax", "published"),  # the same polynomials with the published consistent modulus
    ("wls", "uniform"),
    ("wls", "greedy"),
    ("wls", "dp"),
)

ROW_DEFAULTS: dict[str, Any] = {
    "backend": None, "accuracy": None, "images": None, "tuning_accuracy": None, "target_accuracy": None,
    "predicted_drop": None, "max_drop": None, "meets_target": None,
    "bootstraps": None, "total_depth": None, "predicted_latency_s": None, "measured_latency_s": None,
    "peak_rss_mb": None, "speedup_predicted": None, "speedup_measured": None, "degrees": [],
    "security_bits": None, "ring_dimension": None, "modulus": None, "plan": None, "error": None,
}


@dataclass(frozen=True)
class _Options:
    """What every combination of one bench run shares (see :func:`run_bench`)."""

    out_dir: Path
    log: Log
    encrypted: bool
    limit: int | None
    uniform_degree: int | None
    progress: bool
    backends: list[str] | None
    plans_dir: Path | None
    runs: list[dict]


def run_bench(configs: list[str], out_dir: Path, set_overrides: list[str] | None = None, log: Log = print,
              encrypted: bool = False, limit: int | None = None,
              combos: list[tuple[str, str]] | None = None, uniform_degree: int | None = None,
              readme: str | Path | None = None, progress: bool = True,
              backends: list[str] | None = None, plans_dir: str | Path | None = None,
              measured: Sequence[str | Path] | None = None) -> dict:
    """Optimize, evaluate and compare every (approximator, optimizer) combination on every config.

    Per config the model and calibration are loaded once and shared by all combinations. The first
    combination is the baseline for the speedup columns (by default composite-minimax/uniform, the
    prior-work polynomials at our own best placement; composite-minimax/published, the same polynomials
    with the published consistent modulus, is the second row).
    ``uniform`` with any approximator but the baseline's needs a degree: ``uniform_degree``, else the
    search of :func:`_uniform_plan`.

    A combination that fails with an :class:`OlafheError` (infeasible budget, backend limit) becomes a
    row with ``error`` set; the others still run, and only when every row failed does the bench raise
    (after writing its files). ``readme``: also replace the README results section.

    ``backends`` puts HE libraries side by side: each plan (optimized once, against the config's
    ``cost_backend``) gets one row per backend, with the latency that backend's cost table predicts for
    it and, with ``encrypted``, the latency measured on that backend. Speedups compare rows of the same
    model and backend. Default: one row per plan for the config's backend.

    ``plans_dir`` reuses the plans a previous bench saved there (``<model>-<approximator>-<optimizer>.json``)
    instead of optimizing again; every other column is recomputed. ``measured`` names saved
    ``olafhe infer --json`` outputs (files or folders of them): a row whose plan is the measured plan
    (same model, approximator, optimizer, degrees and bootstraps, on the row's backend) takes its measured
    latency and peak RSS from that run, so hour-long encrypted runs need not be repeated per report.
    Returns the document written to ``results.json``.
    """
    combos = [tuple(c) for c in (combos or DEFAULT_COMBOS)]  # type: ignore[misc]
    _check_names(combos, backends)  # fail fast on a bad name, before any model is loaded
    loaded_configs = [load_config(path, set_overrides, hooks=registry()) for path in configs]
    opts = _Options(Path(out_dir), log, encrypted, limit, uniform_degree, progress,
                    list(backends) if backends else None, Path(plans_dir) if plans_dir else None,
                    load_measured_runs(measured or []))
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    plots: dict[str, dict[str, str]] = {}
    t0 = time.perf_counter()
    for config in loaded_configs:
        model_rows, plans = _bench_model(config, combos, opts)
        rows += model_rows
        plots[config.model.name] = _plots(config.model.name, model_rows, plans, opts.out_dir)
    doc = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": bench_command(configs, opts.out_dir, set_overrides, encrypted, limit, combos, uniform_degree,
                                 backends, plans_dir, measured),
        "machine": machine_description(), "combos": [list(c) for c in combos], "limit": limit,
        "encrypted": encrypted, "backends": opts.backends, "plans_dir": str(plans_dir) if plans_dir else None,
        "measured": [str(m) for m in measured or []], "seconds": time.perf_counter() - t0, "rows": rows,
        "plots": plots,
    }
    _write(doc, opts.out_dir, readme, log)
    if rows and all(r.get("error") for r in rows):
        raise OlafheError(f"bench: every combination failed (see {opts.out_dir / 'results.md'}); first: "
                          f"{rows[0]['error']}")
    return doc


def _check_names(combos: Sequence[tuple[str, str]], backends: Sequence[str] | None) -> None:
    """Every approximator, optimizer and backend name resolves (a :class:`PluginError` names the bad one)."""
    for approx, opt in combos:
        registry().get("approximators", approx)
        registry().get("optimizers", opt)
    for backend in backends or []:
        registry().get("backends", backend)


def _plots(name: str, rows: list[dict], plans: dict[str, Plan], out_dir: Path) -> dict[str, str]:
    """The degree and Pareto plots of one model, by kind (a plot with nothing to show is left out)."""
    plots: dict[str, str] = {}
    if plans:
        plots["degrees"] = str(plot_degrees(plans, out_dir / f"{name}-degrees.png"))
    if any(r.get("accuracy") is not None for r in rows):
        plots["pareto"] = str(plot_pareto(rows, out_dir / f"{name}-pareto.png"))
    return plots


def _write(doc: dict, out_dir: Path, readme: str | Path | None, log: Log) -> None:
    """``results.json``, ``results.md`` and, when asked, the README's results section."""
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1))
    markdown = results_markdown(doc["rows"], doc["machine"], doc["command"])
    (out_dir / "results.md").write_text(markdown)
    log(f"bench: {len(doc['rows'])} rows written to {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    if readme is not None:
        update_readme(readme, markdown)


def _bench_model(config: Config, combos: list[tuple[str, str]],
                 opts: _Options) -> tuple[list[dict], dict[str, Plan]]:
    """All combinations for one config: rows (speedups filled in) and the successful plans by label."""
    name = config.model.name
    opts.log(f"bench {name}: loading model and calibration")
    loaded = load(config)
    calibration = get_calibration(config, loaded, opts.log, opts.progress)
    rows: list[dict] = []
    plans: dict[str, Plan] = {}
    targets = opts.backends or [config.backend.name]
    bar = tqdm(combos, desc=f"bench {name}", unit="plan", disable=not opts.progress, file=sys.stderr)
    for approx, opt in bar:
        bar.set_postfix_str(f"{approx}/{opt}")
        row, plan = _plan_row(config, approx, opt, combos[0], loaded, calibration, opts)
        if plan is None:
            rows += [_complete({**row, "backend": b}) for b in targets]
            continue
        plans[row["label"]] = plan
        rows += [_backend_row(config, row, plan, backend, loaded, opts) for backend in targets]
    bar.close()
    add_speedups(rows, combos[0])
    return rows, plans


def _plan_row(config: Config, approx: str, opt: str, baseline: tuple[str, str], loaded: Loaded,
              calibration: Any, opts: _Options) -> tuple[dict, Plan | None]:
    """One combination's plan, saved and evaluated on the simulator; on failure the row says why and no plan."""
    name, label = config.model.name, f"{approx}/{opt}"
    row: dict[str, Any] = {"model": name, "approximator": approx, "optimizer": opt, "label": label}
    try:
        t_opt = time.perf_counter()
        saved = opts.plans_dir / f"{name}-{approx}-{opt}.json" if opts.plans_dir else None
        if saved is not None:
            if not saved.is_file():
                raise OlafheError(f"no saved plan {saved} (bench without --plans to optimize it)")
            plan = Plan.load(saved)
            row["plan_source"] = str(saved)
        elif opt == "uniform" and (approx, opt) != baseline:
            plan, row["uniform_search"] = _uniform_plan(config, approx, loaded, calibration, opts.uniform_degree,
                                                        opts.log)
        else:
            plan = run_optimize(config, approx, opt, log=opts.log, progress=False, loaded=loaded,
                                calibration=calibration).plan
        row["optimize_seconds"] = time.perf_counter() - t_opt
        row["plan"] = str(plan.save(opts.out_dir / f"{name}-{approx}-{opt}.json"))
        evaluation = run_evaluate(config, plan, opts.limit, progress=False, loaded=loaded)
        row.update(_plan_fields(plan), accuracy=evaluation["accuracy"], images=evaluation["images"])
        return row, plan
    except OlafheError as exc:
        row["error"] = str(exc)
        opts.log(f"bench {name} {label}: failed: {exc}")
        return row, None


def _backend_row(config: Config, row: dict, plan: Plan, backend: str, loaded: Loaded, opts: _Options) -> dict:
    """``row`` on ``backend``: that backend's predicted latency and, when measured, its encrypted run."""
    side_by_side = bool(opts.backends)
    brow = {**row, "backend": backend, "label": f"{row['label']}@{backend}" if side_by_side else row["label"]}
    try:
        if side_by_side and backend != config.backend.cost_backend:
            brow["predicted_latency_s"] = predict_plan_seconds(config, plan, backend, loaded)
        if opts.encrypted:
            brow.update(_encrypted_fields(config, plan, loaded, opts.log, backend))
        elif (run := match_measured_run(opts.runs, plan, backend)) is not None:
            brow.update(run_fields(run), measured_from=run.get("path"))
        opts.log(f"bench {row['model']} {brow['label']}: test accuracy {brow['accuracy']:.2f}%, predicted "
                 f"{brow['predicted_latency_s']:.1f} s/image, {brow['bootstraps']} bootstraps")
    except OlafheError as exc:
        brow["error"] = str(exc)
        opts.log(f"bench {row['model']} {brow['label']}: failed: {exc}")
    return _complete(brow)


def _uniform_plan(config: Config, approx: str, loaded: Loaded, calibration: Any, degree: int | None,
                  log: Log) -> tuple[Plan, list[dict]]:
    """The uniform plan for ``approx``: at ``degree``, else at the cheapest degree that meets the target.

    With ``degree`` (or ``optimizer.optimizer_params.degree`` in the config) it is that degree. Otherwise
    the approximator's degrees (``approximation.degrees`` or its defaults) are tried in increasing order
    and the first whose plan meets the accuracy target on the *tuning* images is kept -- the cheapest
    honest single-degree plan, chosen without looking at test data. When none meets it, the most
    accurate one is kept (its row then says ``meets_target: false``). Returns the plan and the search.
    """
    if degree is None:
        degree = config.optimizer.optimizer_params.get("degree")  # a degree the config already fixes
    if degree is not None:
        candidates = [int(degree)]
    else:
        listed = config.approximation.degrees or approximator_for(config, approx).default_degrees()
        candidates = sorted(set(listed))
    history: list[dict] = []
    best: Plan | None = None
    for d in candidates:
        cfg = copy.deepcopy(config)
        cfg.approximation.degrees = [d]
        cfg.optimizer.optimizer_params = {**cfg.optimizer.optimizer_params, "degree": d}
        try:
            plan = run_optimize(cfg, approx, "uniform", progress=False, loaded=loaded, calibration=calibration).plan
        except (ConfigError, DataError, PluginError):
            raise  # not about the degree: every other degree would fail the same way
        except OlafheError as exc:  # e.g. this degree does not fit the levels: try the next one
            history.append({"degree": d, "error": str(exc)})
            continue
        pred = plan.predicted
        meets = bool(pred.meets_target)
        history.append({"degree": d, "tuning_accuracy": pred.accuracy, "target_accuracy": pred.target_accuracy,
                        "predicted_drop": pred.test_drop, "max_drop": pred.max_test_drop,
                        "predicted_latency_s": pred.latency_s, "meets_target": meets})
        log(f"  {approx}/uniform degree {d}: predicted drop {fmt(pred.test_drop, '.2f')} "
            f"(at most {fmt(pred.max_test_drop, '.2f')}), tuning accuracy {fmt(pred.accuracy, '.2f', '%')}")
        if best is None or _closeness(pred) > _closeness(best.predicted):
            best = plan
        if meets:
            best = plan
            break
    if best is None:
        errors = "; ".join(f"degree {h['degree']}: {h['error']}" for h in history)
        raise OlafheError(f"{approx}/uniform: no degree gave a plan ({errors})")
    best.extra.other["uniform_search"] = history
    return best, history


def _closeness(pred: PlanPredicted) -> float:
    """Larger for a plan closer to its tuning target (lower predicted drop, or higher tuning accuracy)."""
    if pred.test_drop is not None:
        return -pred.test_drop
    return pred.accuracy if pred.accuracy is not None else -1.0


def _plan_fields(plan: Plan) -> dict:
    pred = plan.predicted
    return {
        "tuning_accuracy": pred.accuracy,
        "target_accuracy": pred.target_accuracy,
        "predicted_drop": pred.test_drop,
        "max_drop": pred.max_test_drop,
        "meets_target": pred.meets_target,
        "bootstraps": plan.bootstraps,
        "total_depth": plan.total_activation_depth(),
        "predicted_latency_s": plan.predicted.latency_s,
        "degrees": plan.degrees,
        "security_bits": plan.ckks.security_bits,
        "ring_dimension": plan.ckks.ring_dimension,
        "modulus": (plan.extra.other.get("placement") or {}).get("modulus"),
    }


def _encrypted_fields(config: Config, plan: Plan, loaded: Loaded, log: Log, backend: str | None = None) -> dict:
    """Measured seconds/image and peak RSS of one encrypted image; a backend refusal is recorded.

    Peak RSS is the process's high-water mark (``ru_maxrss``), so a row also covers the rows before it;
    run one combination per process for per-plan memory.
    """
    try:
        enc = run_infer(config, plan, 1, backend_name=backend, progress=False, loaded=loaded, log=log)
    except OlafheError as exc:
        log(f"  encrypted run refused: {exc}")
        return {"encrypted_error": str(exc)}
    return run_fields(enc)


def _complete(row: dict) -> dict:
    """Every row carries every field (null when unknown), so results.json has one schema."""
    return {**ROW_DEFAULTS, **row}


def add_speedups(rows: list[dict], baseline: tuple[str, str]) -> None:
    """Fill ``speedup_predicted`` / ``speedup_measured`` = baseline latency / row latency, per model and backend.

    A speedup is null when the baseline row of that model (and backend) or either latency is missing.
    """
    for row in rows:
        base = next((r for r in rows if r["model"] == row["model"] and r.get("error") is None
                     and r.get("backend") == row.get("backend")
                     and (r["approximator"], r["optimizer"]) == tuple(baseline)), None)
        for key, latency in (("speedup_predicted", "predicted_latency_s"), ("speedup_measured", "measured_latency_s")):
            mine = number(row.get(latency))
            theirs = number(base.get(latency)) if base else None
            row[key] = theirs / mine if mine and theirs else None


def bench_command(configs: Sequence[str], out_dir: Path, set_overrides: Sequence[str] | None, encrypted: bool,
                  limit: int | None, combos: Sequence[tuple[str, str]] | None = None,
                  uniform_degree: int | None = None, backends: Sequence[str] | None = None,
                  plans_dir: str | Path | None = None, measured: Sequence[str | Path] | None = None) -> str:
    """The command that reproduces a bench run: the CLI line, or a Python call when the CLI cannot say it."""
    combos = [tuple(c) for c in (combos or DEFAULT_COMBOS)]
    if combos != list(DEFAULT_COMBOS) or uniform_degree is not None:
        args = [repr(list(configs)), repr(str(out_dir)), f"set_overrides={list(set_overrides or [])!r}",
                f"encrypted={encrypted!r}", f"limit={limit!r}", f"combos={combos!r}",
                f"uniform_degree={uniform_degree!r}", f"backends={list(backends) if backends else None!r}",
                f"plans_dir={str(plans_dir) if plans_dir else None!r}",
                f"measured={[str(m) for m in measured or []]!r}"]
        return f"python -c 'import olafhe.report.bench as b; b.run_bench({', '.join(args)})'"
    parts = ["olafhe", "bench", *map(str, configs), "--out", str(out_dir)]
    for item in set_overrides or []:
        parts += ["--set", item]
    if encrypted:
        parts.append("--encrypted")
    if limit:
        parts += ["--limit", str(limit)]
    if backends:
        parts += ["--backends", ",".join(backends)]
    if plans_dir:
        parts += ["--plans", str(plans_dir)]
    for item in measured or []:
        parts += ["--measured", str(item)]
    return shlex.join(parts)
