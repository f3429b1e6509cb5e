"""The evaluate job: test-set accuracy of the exact model or of a plan on the fast simulator."""

from __future__ import annotations

import time

import numpy as np

from olafhe.core.config import Config
from olafhe.core.errors import OlafheError
from olafhe.core.planning.plan import Plan
from olafhe.jobs.backend import make_backend
from olafhe.jobs.infer import run_infer
from olafhe.jobs.predict import predict
from olafhe.jobs.safety import check_plan_safety
from olafhe.jobs.workspace import Loaded, check_plan, load, test_set


def run_evaluate(config: Config, plan: Plan | None, limit: int | None, progress: bool = True,
                 loaded: Loaded | None = None, backend: str = "simulator", plan_path: str | None = None) -> dict:
    """Accuracy on ``limit`` class-balanced test images (all when None); ``plan_path`` is reported as ``plan``.

    With a plan (and ``safety.enabled``), ``safety`` holds its numeric safety report on the extreme
    calibration images (:func:`~olafhe.jobs.safety.check_plan_safety`): margins and failures.

    Any other ``backend`` than the simulator runs encrypted inference instead (:func:`run_infer`). A plan
    made for another model or checkpoint is refused before any simulation (:func:`check_plan`). Accuracy does
    not depend on where the plan was priced, so no cost-table warning here (``infer`` gives it).
    """
    loaded = loaded or load(config)
    if backend != "simulator":
        return run_infer(config, plan, limit or 1, backend, progress=progress, loaded=loaded)
    if plan is not None:
        check_plan(config, loaded, plan)
    x, y = test_set(loaded.data_dir, limit)
    t0 = time.perf_counter()
    noise = None
    if plan is not None and config.backend.ckks.noise:
        noise = make_backend(config, "simulator", plan).capabilities().precision_bits
    logits = predict(loaded.graph, x, config.data.batch_size, plan, noise_bits=noise, progress=progress)
    correct = int(np.sum(logits.argmax(1) == y))
    result = {"images": int(len(y)), "correct": correct, "accuracy": 100.0 * correct / max(len(y), 1),
              "backend": "simulator" if plan is not None else "plaintext", "plan": plan_path,
              "seconds": time.perf_counter() - t0}
    if plan is not None and config.safety.enabled:   # the margins, and any check the plan fails (not an error)
        try:
            result["safety"] = check_plan_safety(config, plan, loaded).to_dict()
        except OlafheError as exc:   # e.g. a plan too deep to run: the accuracy above still stands
            result["safety"] = {"ok": False, "failures": [f"the traced run failed: {exc}"]}
    return result
