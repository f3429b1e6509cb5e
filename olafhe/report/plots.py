"""Plots of bench results: degrees per activation layer, and accuracy against latency with Pareto fronts.

Plots use matplotlib's object-oriented API on an Agg canvas, so they never touch pyplot's global
state or need a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from olafhe.core.planning.plan import Plan
from olafhe.report.markdown import number


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure with its own Agg canvas (no pyplot, no global backend switch)."""
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
    :func:`~olafhe.report.bench.run_bench` qualify. Predicted latencies are filled circles, measured
    ones hollow diamonds joined to their plan's prediction by a dotted line (the label sits on the first
    of the two); each kind gets its own front (a dashed step line through the points nothing beats).
    """
    usable = [p for p in points if number(p.get("accuracy")) is not None]
    if not usable:
        raise ValueError("plot_pareto needs at least one point with an accuracy")
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    kinds = (("predicted_latency_s", "predicted", "o", "C0"), ("measured_latency_s", "measured", "D", "C3"))
    where: dict[int, list[float]] = {}  # point index -> its latencies, predicted first
    for key, what, marker, colour in kinds:
        pts = [(i, t) for i, p in enumerate(usable) if (t := number(p.get(key))) is not None and t > 0]  # log x
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
