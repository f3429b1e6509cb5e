"""Bench results as Markdown, the README's results section, and the number formatting they share.

Rows below 128-bit security are flagged INSECURE in every table (the project's rule: weaker parameters
are labelled in every report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from olafhe.core.errors import DataError

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

COLUMNS = ("model", "approximator", "optimizer", "backend", "test acc. (sim.)", "tuning (acc. or predicted drop)",
           "bootstraps", "act. depth", "predicted s/img", "speedup (pred.)", "measured s/img", "speedup (meas.)",
           "peak RSS", "security bits", "degrees")
RUN_COLUMNS = ("model", "plan", "backend", "images", "correct", "same class as simulator", "max logit error",
               "s/img", "bootstraps", "bootstrap s", "linear s", "activation s", "keygen s", "peak RSS")


def number(value: Any) -> float | None:
    """``value`` as a finite float, else None (absent, null, NaN, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec`` plus ``suffix``, or an em dash when it is not a finite number."""
    v = number(value)
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


def _gigabytes(row: dict) -> str:
    return fmt(number(row.get("peak_rss_mb")) and row["peak_rss_mb"] / 1024, ".1f", " GB")


def _plan_cells(r: dict) -> list[Any]:
    """One results-table row: the plan's numbers, or its error in place of them."""
    if r.get("error"):
        msg = str(r["error"]).replace("|", "\\|")
        cells = [r["model"], r["approximator"], r["optimizer"], r.get("backend") or "—", f"failed: {msg}"]
        return cells + [""] * (len(COLUMNS) - len(cells))
    bits = r.get("security_bits")
    security = "—" if bits is None else (f"{bits}" if bits >= 128 else f"**{bits} (INSECURE)**")
    tuning = fmt(r.get("tuning_accuracy"), ".2f", "%") if r.get("predicted_drop") is None \
        else f"drop {fmt(r.get('predicted_drop'), '.2f')}"
    if r.get("meets_target") is False:
        tuning += " (below target)"
    return [
        r["model"], r["approximator"], r["optimizer"], r.get("backend") or "—",
        fmt(r.get("accuracy"), ".2f", "%"), tuning,
        fmt(r.get("bootstraps"), ".0f"), fmt(r.get("total_depth"), ".0f"),
        fmt(r.get("predicted_latency_s"), ".1f"), fmt(r.get("speedup_predicted"), ".2f", "×"),
        _measured_cell(r), fmt(r.get("speedup_measured"), ".2f", "×"), _gigabytes(r),
        security, compact_degrees(r.get("degrees") or []),
    ]


def results_markdown(rows: list[dict], machine: dict | str, command: str) -> str:
    """The results as Markdown: one table row per plan, then notes, the machine and the command.

    Rows with ``error`` show it in place of numbers; rows below 128-bit security are flagged INSECURE.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(c) for c in _plan_cells(r)) + " |" for r in rows]
    images = sorted({r["images"] for r in rows if r.get("images")})
    lines += [
        "",
        f"Test accuracy: simulator over {', '.join(map(str, images)) or '—'} CIFAR-10 test images; tuning: "
        "the test-set drop (points) the tuning criterion predicts from mixed, augmented training images held "
        "out from calibration (plans of earlier versions: accuracy on those images). Speedups are relative to the "
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
    cell = fmt(row.get("measured_latency_s"), ".1f")
    images = row.get("measured_images")
    return f"{cell} ({images} img)" if cell != "—" and isinstance(images, int) and images > 1 else cell


def _run_cells(r: dict) -> list[Any]:
    """One encrypted-runs row: correctness, the time per kind of step, keygen and memory."""
    parts = dict(r.get("measured_breakdown") or {})
    boot_cell = fmt(parts.get("bootstrap"), ".1f")
    act_cell = fmt(parts.get("activation"), ".1f")
    if (r.get("measured_bootstraps") or 0) > 0 and not parts.get("bootstrap"):
        # a run saved before a composite's inner bootstraps were timed apart: they are in activation
        boot_cell, act_cell = "in activation", f"{act_cell} (incl. bootstraps)"
    agree = number(r.get("agree_with_simulator"))
    images = r.get("measured_images")
    return [r["model"], f"{r['approximator']}/{r['optimizer']}", r.get("backend") or "—",
            fmt(images, ".0f"), fmt(r.get("encrypted_correct"), ".0f"),
            "—" if agree is None or not images else f"{round(agree * images)}/{images}",
            fmt(r.get("max_logit_error"), ".1e"), fmt(r.get("measured_latency_s"), ".1f"),
            fmt(r.get("measured_bootstraps"), ".0f"), boot_cell, fmt(parts.get("linear"), ".1f"),
            act_cell, fmt(r.get("keygen_seconds"), ".1f"), _gigabytes(r)]


def _measured_notes(rows: list[dict]) -> list[str]:
    """A table of the encrypted runs behind the measured column: correctness, time breakdown, memory."""
    measured = [r for r in rows if number(r.get("measured_latency_s")) is not None and not r.get("error")]
    if not measured:
        return []
    lines = ["Encrypted runs (seconds per image, mean over the run's class-balanced test images):", "",
             "| " + " | ".join(RUN_COLUMNS) + " |", "|" + "---|" * len(RUN_COLUMNS)]
    lines += ["| " + " | ".join(str(c) for c in _run_cells(r)) + " |" for r in measured]
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
