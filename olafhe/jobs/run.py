"""The main job (``olafhe run``): plaintext accuracy, optimize, simulator accuracy, encrypted inference."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from olafhe.core.config import Config
from olafhe.core.planning.plan import Plan
from olafhe.jobs.evaluate import run_evaluate
from olafhe.jobs.infer import run_infer
from olafhe.jobs.optimize import run_optimize
from olafhe.jobs.workspace import Log, load, quiet


def run_main_job(config: Config, out_dir: Path, log: Log = quiet,
                 show_plan: Callable[[Plan], None] | None = None) -> dict:
    """Run every step of ``config`` and return the report, also saved with the plan in ``out_dir``.

    ``show_plan`` is called with the plan as soon as it is optimized. The report holds the plan's path,
    the plaintext and simulator evaluations, the encrypted run (None when ``run.infer_images`` is 0),
    the predicted latency and the number of bootstraps.
    """
    loaded = load(config)
    log(f"== {config.model.name}: plaintext accuracy")
    plain = run_evaluate(config, None, config.run.evaluate_limit or None, loaded=loaded)
    log(f"   {plain['correct']}/{plain['images']} = {plain['accuracy']:.2f}%")
    log("== optimize")
    opt = run_optimize(config, log=log, loaded=loaded)
    plan_path = opt.plan.save(out_dir / f"{config.model.name}-plan.json")
    if show_plan is not None:
        show_plan(opt.plan)
    log("== simulator, test set")
    sim = run_evaluate(config, opt.plan, config.run.evaluate_limit or None, loaded=loaded)
    log(f"   {sim['correct']}/{sim['images']} = {sim['accuracy']:.2f}% in {sim['seconds']:.1f} s")
    enc = None
    if config.run.infer_images:
        log(f"== encrypted inference on {config.backend.name}, {config.run.infer_images} image(s)")
        enc = run_infer(config, opt.plan, config.run.infer_images, loaded=loaded, log=log)
    report = {"model": config.model.name, "plan": str(plan_path), "plaintext": plain, "simulator": sim,
              "encrypted": enc, "predicted_latency_s": opt.plan.predicted.latency_s,
              "bootstraps": opt.plan.bootstraps}
    (out_dir / f"{config.model.name}-run.json").write_text(json.dumps(report, indent=1))
    return report
