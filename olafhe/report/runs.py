"""Saved encrypted runs (``olafhe infer --json`` outputs): loading them, matching them to plans, row fields.

Hour-long encrypted runs need not be repeated per report: a bench row whose plan a saved run measured
exactly takes its measured latency, memory and time breakdown from that run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from olafhe.core.errors import DataError
from olafhe.core.planning.plan import Plan


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


def run_fields(run: dict) -> dict:
    """Row fields from one ``olafhe infer`` result: latency, memory, agreement and the time breakdown.

    ``measured_breakdown`` is the mean seconds per image of each kind of step (bootstrap, linear, ...);
    runs with several images per ciphertext record one breakdown per ciphertext.
    """
    breakdown: dict[str, float] = {}
    per_ciphertext = [b for b in run.get("breakdown") or [] if isinstance(b, dict)]
    packed = "images_per_ciphertext" in run  # else one breakdown per image (runs before packing)
    images = int(run.get("images") or 1) if packed else max(len(per_ciphertext), 1)
    for b in per_ciphertext:
        for kind, seconds in b.items():
            breakdown[kind] = breakdown.get(kind, 0.0) + float(seconds) / images
    return {"measured_latency_s": run["seconds_per_image"], "peak_rss_mb": run.get("peak_rss_mb"),
            "backend": run.get("backend"), "agree_with_simulator": run.get("agree_with_simulator"),
            "measured_images": run.get("images"), "encrypted_correct": run.get("correct"),
            "max_logit_error": run.get("max_logit_error"), "keygen_seconds": run.get("keygen_seconds"),
            "measured_bootstraps": run.get("bootstraps"),
            "measured_breakdown": breakdown or None}
