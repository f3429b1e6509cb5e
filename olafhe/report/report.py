"""Reports: plots of plans, the side-by-side benchmark behind ``olafhe bench``, and the README results.

The benchmark answers the project's central question with one table per model: at the accuracy the
config asks for, how much faster is a layerwise plan than the prior-work baseline (composite minimax
sign-ReLU with one degree everywhere)? Every row is a complete, saved plan evaluated on the simulator
over the test set (test accuracy is reported, never tuned on) and, on request, run encrypted once.

Outputs of :func:`run_bench` in ``out_dir``: ``<model>-<approximator>-<optimizer>.json`` (plans),
``results.json`` (rows, machine, command), ``results.md`` (the same as a Markdown table),
``<model>-degrees.png`` and ``<model>-pareto.png``.

Plots use matplotlib's object-oriented API on an Agg canvas, so they never touch pyplot's global
state or need a display.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from olafhe.core.errors import ConfigError, DataError, OlafheError, PluginError
from olafhe.core.planning.plan import Plan

Log = Callable[[str], None]

DEFAULT_COMBOS: tuple[tuple[str, str], ...] = (
    ("composite-minimax", "uniform"),  # the prior-work baseline: first, speedups are relative to it
    ("wls", "uniform"),
    ("wls", "greedy"),
    ("wls", "dp"),
)
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure with its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_degrees(plans: dict[str, Plan], path: str | Path) -> Path:
    """Save a PNG of the polynomial degree per activation layer, one marker set per plan label.

    The y axis is log2 (degrees are mostly ``2^k - 1``); a layer whose input is bootstrapped first is
    circled with a hollow square in the plan's colour, so placement and degree read off one figure.
    Plans are drawn slightly apart in x so equal degrees do not hide each other.
    """
    if not plans:
        raise ValueError("plot_degrees needs at least one plan")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    longest = max(plans.values(), key=lambda p: len(p.layers))
    names = [layer.name for layer in longest.layers]
    fig = _figure(max(6.0, 0.38 * len(names) + 2.0), 4.2)
    ax = fig.add_subplot()
    markers = "osD^vP*Xh<>"
    spread = 0.3 / max(len(plans), 1)
    all_degrees: set[int] = set()
    for k, (label, plan) in enumerate(plans.items()):
        degrees = plan.degrees
        all_degrees.update(degrees)
        x = [i + (k - (len(plans) - 1) / 2) * spread for i in range(len(degrees))]
        (line,) = ax.plot(x, degrees, marker=markers[k % len(markers)], linewidth=1.2, markersize=5,
                          label=f"{label} ({plan.bootstraps} bootstraps)")
        boots = [i for i, layer in enumerate(plan.layers) if layer.bootstrap_before]
        if boots:
            ax.plot([x[i] for i in boots], [degrees[i] for i in boots], linestyle="none", marker="s",
                    markersize=12, markerfacecolor="none", markeredgecolor=line.get_color(), markeredgewidth=1.5)
    ax.plot([], [], linestyle="none", marker="s", markersize=10, markerfacecolor="none", markeredgecolor="black",
            label="bootstrap before layer")
    ax.set_yscale("log", base=2)
    ticks = sorted(all_degrees)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(min(ticks) / 1.4, max(ticks) * 1.4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("activation layer")
    ax.set_ylabel("polynomial degree")
    models = sorted({plan.model for plan in plans.values()})
    ax.set_title(f"degree per activation layer: {', '.join(models)}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats, in increasing latency.

    A point is on the front when every faster-or-equal point is strictly less accurate (lower latency
    and higher accuracy are better). Points with a non-finite coordinate never are.
    """
    finite = [i for i, (t, a) in enumerate(points) if math.isfinite(t) and math.isfinite(a)]
    order = sorted(finite, key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _label(point: dict) -> str:
    return str(point.get("label") or f"{point.get('approximator')}/{point.get('optimizer')}")


def plot_pareto(points: list[dict], path: str | Path) -> Path:
    """Save a PNG of test accuracy against latency, one labelled point per plan, Pareto fronts drawn.

    Each point is a dict with ``accuracy`` (%), ``predicted_latency_s`` and optionally
    ``measured_latency_s`` and ``label`` (else ``approximator/optimizer``) -- the rows of
    :func:`run_bench` qualify. Predicted latencies are filled circles, measured ones hollow diamonds
    joined to their plan's prediction by a dotted line (the label sits on the first of the two); each
    kind gets its own front (a dashed step line through the points nothing beats).
    """
    usable = [p for p in points if _number(p.get("accuracy")) is not None]
    if not usable:
        raise ValueError("plot_pareto needs at least one point with an accuracy")
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    kinds = (("predicted_latency_s", "predicted", "o", "C0"), ("measured_latency_s", "measured", "D", "C3"))
    where: dict[int, list[float]] = {}  # point index -> its latencies, predicted first
    for key, what, marker, colour in kinds:
        pts = [(i, t) for i, p in enumerate(usable) if (t := _number(p.get(key))) is not None and t > 0]  # log x
        if not pts:
            continue
        xs = [t for _, t in pts]
        ys = [float(usable[i]["accuracy"]) for i, _ in pts]
        filled = colour if what == "predicted" else "none"
        ax.scatter(xs, ys, marker=marker, s=46, facecolors=filled, edgecolors=colour, label=f"{what} latency",
                   zorder=3)
        for i, t in pts:
            where.setdefault(i, []).append(t)
        front = pareto_front(list(zip(xs, ys, strict=True)))
        if len(front) > 1:
            ax.step([xs[k] for k in front], [ys[k] for k in front], where="post", color=colour,
                    linestyle="--", linewidth=1, label=f"Pareto front ({what})")
    if not where:
        raise ValueError("plot_pareto needs at least one point with a predicted or measured latency")
    labels: dict[tuple[float, float], list[str]] = {}  # plans at the same spot share one label
    for i, xs in where.items():
        y = float(usable[i]["accuracy"])
        if len(xs) == 2:
            ax.plot(xs, [y, y], linestyle=":", color="grey", linewidth=1)
        labels.setdefault((xs[0], y), []).append(_label(usable[i]))
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    all_x = [t for xs in where.values() for t in xs]
    ax.set_xscale("log")
    ax.set_xlim(min(all_x) / 1.25, max(all_x) * 1.6)  # room on the right for the labels
    plain = lambda v, _pos: f"{v:g}"  # noqa: E731 - a tick formatter
    ax.xaxis.set_major_formatter(plain)
    if max(all_x) / min(all_x) < 20:  # within about a decade minor ticks carry the only numbers
        ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("latency per image (s, log scale)")
    ax.set_ylabel("test accuracy (%, simulator)")
    models = sorted({str(p["model"]) for p in usable if p.get("model")})
    ax.set_title(f"accuracy vs latency{': ' + ', '.join(models) if models else ''}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, format="png")
    return path


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else None (absent, null, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------


def run_bench(configs: list[str], out_dir: Path, set_overrides: list[str] | None = None, log: Log = print,
              encrypted: bool = False, limit: int | None = None,
              combos: list[tuple[str, str]] | None = None, uniform_degree: int | None = None,
              readme: str | Path | None = None, progress: bool = True,
              backends: list[str] | None = None, plans_dir: str | Path | None = None,
              measured: Sequence[str | Path] | None = None) -> dict:
    """Optimize, evaluate and compare every (approximator, optimizer) combination on every config.

    Per config the model and calibration are loaded once and shared by all combinations. The first
    combination is the baseline for the speedup columns (by default composite-minimax/uniform).

    ``uniform`` with any approximator but the baseline's needs a degree. With ``uniform_degree`` (or
    ``optimizer.optimizer_params.degree`` in the config) it is that degree. Otherwise the bench tries
    the approximator's degrees (``approximation.degrees`` or its defaults) in increasing order and
    keeps the first whose plan meets the accuracy target on the *tuning* images -- the cheapest honest
    single-degree plan, chosen without looking at test data.
    When none meets it, the most accurate one is kept and the row says ``meets_target: false``.

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
    from olafhe.core.config import load_config
    from olafhe.core.contract.registry import registry
    from olafhe.core.planning.costs import machine_description

    combos = [tuple(c) for c in (combos or DEFAULT_COMBOS)]  # type: ignore[misc]
    for approx, opt in combos:  # fail fast on a bad name, before any model is loaded
        registry().get("approximators", approx)
        registry().get("optimizers", opt)
    for backend in backends or []:
        registry().get("backends", backend)
    loaded_configs = [load_config(path, set_overrides) for path in configs]
    runs = load_measured_runs(measured or [])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    plots: dict[str, dict[str, str]] = {}
    t0 = time.perf_counter()
    for config in loaded_configs:
        model_rows, plans = _bench_model(config, combos, out_dir, log, encrypted, limit, uniform_degree, progress,
                                         backends, Path(plans_dir) if plans_dir else None, runs)
        rows += model_rows
        name = config.model.name
        plots[name] = {}
        if plans:
            plots[name]["degrees"] = str(plot_degrees(plans, out_dir / f"{name}-degrees.png"))
        if any(r.get("accuracy") is not None for r in model_rows):
            plots[name]["pareto"] = str(plot_pareto(model_rows, out_dir / f"{name}-pareto.png"))
    command = bench_command(configs, out_dir, set_overrides, encrypted, limit, combos, uniform_degree, backends,
                            plans_dir, measured)
    doc = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_description(),
        "combos": [list(c) for c in combos],
        "limit": limit,
        "encrypted": encrypted,
        "backends": list(backends) if backends else None,
        "plans_dir": str(plans_dir) if plans_dir else None,
        "measured": [str(m) for m in measured or []],
        "seconds": time.perf_counter() - t0,
        "rows": rows,
        "plots": plots,
    }
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1))
    markdown = results_markdown(rows, doc["machine"], command)
    (out_dir / "results.md").write_text(markdown)
    log(f"bench: {len(rows)} rows written to {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    if readme is not None:
        update_readme(readme, markdown)
    if rows and all(r.get("error") for r in rows):
        raise OlafheError(f"bench: every combination failed (see {out_dir / 'results.md'}); first: {rows[0]['error']}")
    return doc


def _bench_model(config: Any, combos: list[tuple[str, str]], out_dir: Path, log: Log, encrypted: bool,
                 limit: int | None, uniform_degree: int | None, progress: bool,
                 backends: list[str] | None = None, plans_dir: Path | None = None,
                 runs: list[dict] | None = None) -> tuple[list[dict], dict[str, Plan]]:
    """All combinations for one config: rows (speedups filled in) and the successful plans by label."""
    from tqdm import tqdm

    from olafhe.jobs import evaluate, latency, optimize, workspace

    name = config.model.name
    log(f"bench {name}: loading model and calibration")
    loaded = workspace.load(config)
    calibration = workspace.get_calibration(config, loaded, log, progress)
    rows: list[dict] = []
    plans: dict[str, Plan] = {}
    baseline = combos[0]
    side_by_side = bool(backends)
    targets = list(backends) if backends else [config.backend.name]
    bar = tqdm(combos, desc=f"bench {name}", unit="plan", disable=not progress, file=sys.stderr)
    for approx, opt in bar:
        bar.set_postfix_str(f"{approx}/{opt}")
        label = f"{approx}/{opt}"
        row: dict[str, Any] = {"model": name, "approximator": approx, "optimizer": opt, "label": label}
        try:
            t_opt = time.perf_counter()
            search = opt == "uniform" and (approx, opt) != baseline
            saved = plans_dir / f"{name}-{approx}-{opt}.json" if plans_dir else None
            if saved is not None:
                if not saved.is_file():
                    raise OlafheError(f"no saved plan {saved} (bench without --plans to optimize it)")
                plan = Plan.load(saved)
                row["plan_source"] = str(saved)
            elif search:
                plan, history = _uniform_plan(config, approx, loaded, calibration, uniform_degree, log)
                row["uniform_search"] = history
            else:
                plan = optimize.run_optimize(config, approx, opt, log=log, progress=False, loaded=loaded,
                                             calibration=calibration).plan
            row["optimize_seconds"] = time.perf_counter() - t_opt
            row["plan"] = str(plan.save(out_dir / f"{name}-{approx}-{opt}.json"))
            evaluation = evaluate.run_evaluate(config, plan, limit, progress=False, loaded=loaded)
            row.update(_plan_fields(plan), accuracy=evaluation["accuracy"], images=evaluation["images"])
            plans[label] = plan
        except OlafheError as exc:
            row["error"] = str(exc)
            log(f"bench {name} {label}: failed: {exc}")
            rows += [_complete({**row, "backend": b}) for b in targets]
            continue
        for backend in targets:
            brow = {**row, "backend": backend, "label": f"{label}@{backend}" if side_by_side else label}
            try:
                if side_by_side and backend != config.backend.cost_backend:
                    brow["predicted_latency_s"] = latency.predict_plan_seconds(config, plan, backend, loaded)
                if encrypted:
                    brow.update(_encrypted_fields(config, plan, loaded, log, backend))
                elif (run := match_measured_run(runs or [], plan, backend)) is not None:
                    brow.update(run_fields(run), measured_from=run.get("path"))
                log(f"bench {name} {brow['label']}: test accuracy {brow['accuracy']:.2f}%, predicted "
                    f"{brow['predicted_latency_s']:.1f} s/image, {brow['bootstraps']} bootstraps")
            except OlafheError as exc:
                brow["error"] = str(exc)
                log(f"bench {name} {brow['label']}: failed: {exc}")
            rows.append(_complete(brow))
    bar.close()
    add_speedups(rows, baseline)
    return rows, plans


def load_measured_runs(paths: Sequence[str | Path]) -> list[dict]:
    """Saved ``olafhe infer --json`` outputs from files or folders (``*.json``); other JSON files are skipped.

    A file that is not JSON, or a run without ``model``/``degrees`` (written before runs recorded their
    plan), is a :class:`DataError` or skipped respectively, so a stale file never matches by accident.
    """
    runs: list[dict] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"measured runs: {path} does not exist")
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for f in files:
            try:
                doc = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"measured runs: {f} is not a JSON file: {exc}") from exc
            if isinstance(doc, dict) and "seconds_per_image" in doc and "degrees" in doc and "model" in doc:
                runs.append({**doc, "path": str(f)})
    return runs


def match_measured_run(runs: Sequence[dict], plan: Plan, backend: str) -> dict | None:
    """The run (most images first) that measured exactly ``plan`` on ``backend``, else None."""
    same = [r for r in runs if r.get("backend") == backend and r.get("model") == plan.model
            and r.get("approximator") == plan.approximator and r.get("optimizer") == plan.optimizer
            and list(r.get("degrees") or []) == plan.degrees and r.get("bootstraps") == plan.bootstraps]
    return max(same, key=lambda r: int(r.get("images") or 0), default=None)


def _uniform_plan(config: Any, approx: str, loaded: Any, calibration: Any, degree: int | None,
                  log: Log) -> tuple[Plan, list[dict]]:
    """The uniform plan for ``approx`` at ``degree``, or by the increasing-degree search (see run_bench)."""
    from olafhe.jobs import backend, optimize

    if degree is None:
        degree = config.optimizer.optimizer_params.get("degree")  # a degree the config already fixes
    if degree is not None:
        candidates = [int(degree)]
    else:
        listed = config.approximation.degrees or backend.approximator_for(config, approx).default_degrees()
        candidates = sorted(set(listed))
    history: list[dict] = []
    best: Plan | None = None
    for d in candidates:
        cfg = copy.deepcopy(config)
        cfg.approximation.degrees = [d]
        cfg.optimizer.optimizer_params = {**cfg.optimizer.optimizer_params, "degree": d}
        try:
            plan = optimize.run_optimize(cfg, approx, "uniform", progress=False, loaded=loaded,
                                         calibration=calibration).plan
        except (ConfigError, DataError, PluginError):
            raise  # not about the degree: every other degree would fail the same way
        except OlafheError as exc:  # e.g. this degree does not fit the levels: try the next one
            history.append({"degree": d, "error": str(exc)})
            continue
        acc, target = plan.predicted.accuracy, plan.predicted.target_accuracy
        meets = acc is not None and target is not None and acc >= target
        history.append({"degree": d, "tuning_accuracy": acc, "target_accuracy": target,
                        "predicted_latency_s": plan.predicted.latency_s, "meets_target": meets})
        log(f"  {approx}/uniform degree {d}: tuning accuracy {_fmt(acc, '.2f', '%')} "
            f"(target {_fmt(target, '.2f', '%')})")
        if best is None or (acc or -1.0) > (best.predicted.accuracy or -1.0):
            best = plan
        if meets:
            best = plan
            break
    if best is None:
        errors = "; ".join(f"degree {h['degree']}: {h['error']}" for h in history)
        raise OlafheError(f"{approx}/uniform: no degree gave a plan ({errors})")
    best.extra.other["uniform_search"] = history
    return best, history


def _plan_fields(plan: Plan) -> dict:
    acc, target = plan.predicted.accuracy, plan.predicted.target_accuracy
    return {
        "tuning_accuracy": acc,
        "target_accuracy": target,
        "meets_target": None if acc is None or target is None else bool(acc >= target),
        "bootstraps": plan.bootstraps,
        "total_depth": plan.total_activation_depth(),
        "predicted_latency_s": plan.predicted.latency_s,
        "degrees": plan.degrees,
        "security_bits": plan.ckks.security_bits,
        "ring_dimension": plan.ckks.ring_dimension,
    }


def _encrypted_fields(config: Any, plan: Plan, loaded: Any, log: Log, backend: str | None = None) -> dict:
    """Measured seconds/image and peak RSS of one encrypted image; a backend refusal is recorded.

    Peak RSS is the process's high-water mark (``ru_maxrss``), so a row also covers the rows before it;
    run one combination per process for per-plan memory.
    """
    from olafhe.jobs import infer

    try:
        enc = infer.run_infer(config, plan, 1, backend_name=backend, progress=False, loaded=loaded, log=log)
    except OlafheError as exc:
        log(f"  encrypted run refused: {exc}")
        return {"encrypted_error": str(exc)}
    return run_fields(enc)


def run_fields(run: dict) -> dict:
    """Row fields from one ``olafhe infer`` result: latency, memory, agreement and the time breakdown.

    ``measured_breakdown`` is the mean seconds per image of each kind of step (bootstrap, linear, ...).
    """
    breakdown: dict[str, float] = {}
    per_image = [b for b in run.get("breakdown") or [] if isinstance(b, dict)]
    for b in per_image:
        for kind, seconds in b.items():
            breakdown[kind] = breakdown.get(kind, 0.0) + float(seconds) / len(per_image)
    return {"measured_latency_s": run["seconds_per_image"], "peak_rss_mb": run.get("peak_rss_mb"),
            "backend": run.get("backend"), "agree_with_simulator": run.get("agree_with_simulator"),
            "measured_images": run.get("images"), "encrypted_correct": run.get("correct"),
            "max_logit_error": run.get("max_logit_error"), "keygen_seconds": run.get("keygen_seconds"),
            "measured_bootstraps": run.get("bootstraps"),
            "measured_breakdown": breakdown or None}


ROW_DEFAULTS: dict[str, Any] = {
    "backend": None, "accuracy": None, "images": None, "tuning_accuracy": None, "target_accuracy": None,
    "meets_target": None,
    "bootstraps": None, "total_depth": None, "predicted_latency_s": None, "measured_latency_s": None,
    "peak_rss_mb": None, "speedup_predicted": None, "speedup_measured": None, "degrees": [],
    "security_bits": None, "ring_dimension": None, "plan": None, "error": None,
}


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
            mine = _number(row.get(latency))
            theirs = _number(base.get(latency)) if base else None
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
        return f"python -c 'import olafhe.report.report as r; r.run_bench({', '.join(args)})'"
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


# ------------------------------------------------------------------------------------------------
# Markdown and the README
# ------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    v = _number(value)
    return "—" if v is None else f"{format(v, spec)}{suffix}"


def compact_degrees(degrees: Sequence[int]) -> str:
    """``[7, 15, 15, 15, 31]`` -> ``"7, 15×3, 31"``: runs of equal degrees, in layer order."""
    parts: list[str] = []
    i = 0
    while i < len(degrees):
        j = i
        while j + 1 < len(degrees) and degrees[j + 1] == degrees[i]:
            j += 1
        parts.append(f"{degrees[i]}×{j - i + 1}" if j > i else f"{degrees[i]}")
        i = j + 1
    return ", ".join(parts)


def _machine_line(machine: dict | str) -> str:
    if isinstance(machine, str):
        return machine
    bits = [str(machine.get("cpu") or "unknown CPU")]
    if machine.get("cores"):
        bits.append(f"{machine['cores']} cores")
    if machine.get("memory_gb"):
        bits.append(f"{machine['memory_gb']} GB RAM")
    if machine.get("python"):
        bits.append(f"Python {machine['python']}")
    if machine.get("platform"):
        bits.append(str(machine["platform"]))
    return ", ".join(bits)


COLUMNS = ("model", "approximator", "optimizer", "backend", "test acc. (sim.)", "tuning acc.", "bootstraps",
           "act. depth", "predicted s/img", "speedup (pred.)", "measured s/img", "speedup (meas.)", "peak RSS",
           "security bits", "degrees")


def results_markdown(rows: list[dict], machine: dict | str, command: str) -> str:
    """The results as Markdown: one table row per plan, then notes, the machine and the command.

    Rows with ``error`` show it in place of numbers; rows below 128-bit security are flagged INSECURE
    (the project's rule: weaker parameters are labelled in every report).
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if r.get("error"):
            msg = str(r["error"]).replace("|", "\\|")
            cells = [r["model"], r["approximator"], r["optimizer"], r.get("backend") or "—", f"failed: {msg}"]
            cells += [""] * (len(COLUMNS) - len(cells))
        else:
            bits = r.get("security_bits")
            security = "—" if bits is None else (f"{bits}" if bits >= 128 else f"**{bits} (INSECURE)**")
            tuning = _fmt(r.get("tuning_accuracy"), ".2f", "%")
            if r.get("meets_target") is False:
                tuning += " (below target)"
            cells = [
                r["model"], r["approximator"], r["optimizer"], r.get("backend") or "—",
                _fmt(r.get("accuracy"), ".2f", "%"), tuning,
                _fmt(r.get("bootstraps"), ".0f"), _fmt(r.get("total_depth"), ".0f"),
                _fmt(r.get("predicted_latency_s"), ".1f"), _fmt(r.get("speedup_predicted"), ".2f", "×"),
                _measured_cell(r), _fmt(r.get("speedup_measured"), ".2f", "×"),
                _fmt(_number(r.get("peak_rss_mb")) and r["peak_rss_mb"] / 1024, ".1f", " GB"),
                security, compact_degrees(r.get("degrees") or []),
            ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    images = sorted({r["images"] for r in rows if r.get("images")})
    lines += [
        "",
        f"Test accuracy: simulator over {', '.join(map(str, images)) or '—'} CIFAR-10 test images; tuning "
        "accuracy: the held-out calibration images the budget was tuned on. Speedups are relative to the "
        "first row of each model and backend (the baseline). Predicted latency comes from the backend's cost "
        "table; measured latency is the mean over the images of an encrypted run (— when not run). "
        "Act. depth: sum of activation depths.",
        "",
        *_measured_notes(rows),
        f"Machine: {_machine_line(machine)}.",
        "",
        "Reproduce with:",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


def _measured_cell(row: dict) -> str:
    cell = _fmt(row.get("measured_latency_s"), ".1f")
    images = row.get("measured_images")
    return f"{cell} ({images} img)" if cell != "—" and isinstance(images, int) and images > 1 else cell


RUN_COLUMNS = ("model", "plan", "backend", "images", "correct", "same class as simulator", "max logit error",
               "s/img", "bootstraps", "bootstrap s", "linear s", "activation s", "keygen s", "peak RSS")


def _measured_notes(rows: list[dict]) -> list[str]:
    """A table of the encrypted runs behind the measured column: correctness, time breakdown, memory."""
    measured = [r for r in rows if _number(r.get("measured_latency_s")) is not None and not r.get("error")]
    if not measured:
        return []
    lines = ["Encrypted runs (seconds per image, mean over the run's class-balanced test images):", "",
             "| " + " | ".join(RUN_COLUMNS) + " |", "|" + "---|" * len(RUN_COLUMNS)]
    for r in measured:
        parts = dict(r.get("measured_breakdown") or {})
        boot_cell = _fmt(parts.get("bootstrap"), ".1f")
        act_cell = _fmt(parts.get("activation"), ".1f")
        if (r.get("measured_bootstraps") or 0) > 0 and not parts.get("bootstrap"):
            # a run saved before a composite's inner bootstraps were timed apart: they are in activation
            boot_cell, act_cell = "in activation", f"{act_cell} (incl. bootstraps)"
        agree = _number(r.get("agree_with_simulator"))
        images = r.get("measured_images")
        cells = [r["model"], f"{r['approximator']}/{r['optimizer']}", r.get("backend") or "—",
                 _fmt(images, ".0f"), _fmt(r.get("encrypted_correct"), ".0f"),
                 "—" if agree is None or not images else f"{round(agree * images)}/{images}",
                 _fmt(r.get("max_logit_error"), ".1e"), _fmt(r.get("measured_latency_s"), ".1f"),
                 _fmt(r.get("measured_bootstraps"), ".0f"), boot_cell, _fmt(parts.get("linear"), ".1f"),
                 act_cell, _fmt(r.get("keygen_seconds"), ".1f"),
                 _fmt(_number(r.get("peak_rss_mb")) and r["peak_rss_mb"] / 1024, ".1f", " GB")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    sources = [f"`{r['measured_from']}`" for r in measured if r.get("measured_from")]
    if sources:
        lines += ["", f"Runs read from {', '.join(sources)} (saved `olafhe infer --json` output of the same plans)."]
    return [*lines, ""]


def update_readme(readme_path: str | Path, markdown: str) -> Path:
    """Replace the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` with ``markdown``.

    The markers stay; text outside them is untouched. Missing or misordered markers are a
    :class:`DataError` (rather than appending somewhere unexpected).
    """
    path = Path(readme_path)
    if not path.is_file():
        raise DataError(f"README {path} does not exist")
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start:
        raise DataError(f"{path} needs the markers {README_START} and {README_END} (in that order) around "
                        "the results section")
    head = text[: start + len(README_START)]
    path.write_text(f"{head}\n{markdown.strip()}\n{text[end:]}")
    return path
