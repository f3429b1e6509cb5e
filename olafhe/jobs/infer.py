"""The infer job: encrypted inference of a few test images on a real (or simulated) backend."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.config import Config
from olafhe.core.contract.backend import Client, Evaluator
from olafhe.core.errors import ConfigError
from olafhe.core.planning.machine import machine_description
from olafhe.core.planning.plan import Plan
from olafhe.jobs.backend import check_runnable, make_backend, warn_if_priced_elsewhere
from olafhe.jobs.memory import peak_rss_mb, reset_peak_rss
from olafhe.jobs.predict import predict
from olafhe.jobs.safety import check_plan_safety
from olafhe.jobs.workspace import Loaded, Log, check_plan, load, quiet, test_set


@dataclass
class _Tally:
    """Per-image results of an encrypted run."""

    correct: int = 0
    agree: int = 0
    max_err: float = 0.0
    seconds: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)


def run_infer(config: Config, plan: Plan | None, limit: int, backend_name: str | None = None,
              progress: bool = True, loaded: Loaded | None = None, log: Log = quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on a real (or simulated) backend.

    With ``safety.enabled`` those images are first traced on the simulator and the plan is refused
    (:class:`~olafhe.core.errors.UnsafePlanError`) before key generation when a numeric check fails.
    A plan made for another model or checkpoint is refused before any key generation (:func:`check_plan`);
    one priced with another machine's cost table is warned about (:func:`warn_if_priced_elsewhere`).
    """
    if plan is None:
        raise ConfigError("infer needs --plan PLAN.json (create one with `olafhe optimize`)")
    loaded = loaded or load(config)
    check_plan(config, loaded, plan)
    warn_if_priced_elsewhere(config, plan)
    backend = make_backend(config, backend_name, plan, loaded.graph)
    caps = check_runnable(plan, backend)
    program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level,
                              cache_diagonals=caps.ring_dimension <= 2**14,
                              max_rotation_keys=config.backend.max_rotation_keys)
    x, y = test_set(loaded.data_dir, limit)
    safety = None
    if config.safety.enabled:   # exactly the images about to be encrypted, before any key exists
        report = check_plan_safety(config, plan, loaded, images=x, program=program, backend_name=backend.name, log=log)
        report.raise_if_unsafe("refused before key generation (--set safety.enabled=false runs it anyway)")
        safety = report.to_dict()
    sim_logits = predict(loaded.graph, x, config.data.batch_size, plan)
    reset_peak_rss()  # the peak below is this run's, not that of earlier work in the process
    t_keys = time.perf_counter()
    client, server = backend.keygen(program.key_request())
    keygen_s = time.perf_counter() - t_keys
    log(f"{caps.describe()}; keys for {len(program.rotations)} rotations in {keygen_s:.1f} s")
    tally = _Tally()
    for i in range(len(y)):
        _infer_image(program, client, server, x[i].numpy(), int(y[i]), sim_logits[i], f"{i + 1}/{len(y)}",
                     tally, progress, log)
    return {
        "images": int(len(y)), "correct": tally.correct, "agree_with_simulator": tally.agree / max(len(y), 1),
        "seconds_per_image": float(np.mean(tally.seconds)) if tally.seconds else 0.0, "peak_rss_mb": peak_rss_mb(),
        "backend": backend.name, "security_bits": caps.security_bits, "bootstraps": program.bootstraps,
        "max_logit_error": tally.max_err, "keygen_seconds": keygen_s, "breakdown": tally.reports,
        "ring_dimension": caps.ring_dimension, "model": plan.model, "approximator": plan.approximator,
        "optimizer": plan.optimizer, "degrees": plan.degrees, "predicted_latency_s": plan.predicted.latency_s,
        "labels": [int(v) for v in y], "encrypted_classes": tally.classes, "seconds": tally.seconds,
        "rotation_keys": len(program.rotations), "machine": machine_description(), "safety": safety,
    }


def _infer_image(program: Program, client: Client, server: Evaluator, image: np.ndarray, label: int,
                 sim_logits: np.ndarray, name: str, tally: _Tally, progress: bool, log: Log) -> None:
    """Encrypt, evaluate and decrypt one image; compare with the simulator's logits and record it."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(program.steps), desc=f"image {name}", unit="step")
    t0 = time.perf_counter()
    logits, report = encrypted_inference(program, client, server, image,
                                         progress=(lambda _n, b=bar: b.update(1)) if bar else None)
    tally.seconds.append(time.perf_counter() - t0)
    if bar:
        bar.close()
    tally.reports.append(report.totals())
    tally.classes.append(int(logits.argmax()))
    tally.correct += int(logits.argmax() == label)
    tally.agree += int(logits.argmax() == sim_logits.argmax())
    err = float(np.max(np.abs(logits - sim_logits)))
    tally.max_err = max(tally.max_err, err)
    log(f"image {name}: label {label}, encrypted {int(logits.argmax())}, simulator "
        f"{int(sim_logits.argmax())}, max logit error {err:.2e}, {tally.seconds[-1]:.1f} s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in tally.reports[-1].items())}), peak RSS {peak_rss_mb():.0f} MB")
