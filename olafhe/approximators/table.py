"""The candidate table: every (layer, degree, interval variant) an approximator offers, with its errors
and costs — what ``olafhe candidates`` prints and what the optimizer chooses from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from olafhe.core.calibration.stats import CalibrationResult
from olafhe.core.contract.interfaces import Approximator

COLUMNS = (
    "layer", "degree", "method", "interval", "weighted_mse", "max_error", "outside_fraction", "depth",
    "nonscalar_mults",
)


def candidate_table(
    approximator: Approximator, calibration: CalibrationResult, degrees: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """One row per candidate of every layer (graph order; per layer as ``candidates`` returns them).

    ``degrees`` defaults to the approximator's ``default_degrees()``.
    """
    degrees = list(approximator.default_degrees() if degrees is None else degrees)
    rows = []
    for stats in calibration.layers:
        for approx in approximator.candidates(stats, degrees):
            rows.append(
                {
                    "layer": stats.name,
                    "degree": approx.degree,
                    "method": approx.method,
                    "interval": approx.interval,
                    "weighted_mse": approx.weighted_mse,
                    "max_error": approx.max_error,
                    "outside_fraction": approx.outside_fraction,
                    "depth": approx.depth,
                    "nonscalar_mults": approx.nonscalar_mults,
                }
            )
    return rows


def _cell(key: str, value: Any) -> str:
    if key == "interval":
        a, b = value
        return f"[{a:.4g}, {b:.4g}]"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3e}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Fixed-width text: a header line, a rule, one line per row; numbers right-aligned."""
    cells = [[_cell(k, row[k]) for k in COLUMNS] for row in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(COLUMNS)]
    left = {"layer", "method", "interval"}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if k in left else v.rjust(w) for k, v, w in zip(COLUMNS, values, widths, strict=True)
        ).rstrip()

    out = [line(COLUMNS), line(["-" * w for w in widths])]
    out.extend(line(c) for c in cells)
    return "\n".join(out)
