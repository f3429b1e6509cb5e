"""The infer job: encrypted inference of a few test images on a real (or simulated) backend."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from olafhe.core.compiler.packing import Packing, packed
from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import encrypted_batch_inference
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend, Client, Evaluator
from olafhe.core.errors import ConfigError, DataError
from olafhe.core.planning.ckks import images_per_ciphertext
from olafhe.core.planning.machine import machine_description
from olafhe.core.planning.plan import Plan
from olafhe.jobs.backend import compile_for_backend, cost_table, make_backend, warn_if_priced_elsewhere
from olafhe.jobs.latency import predict_program_seconds
from olafhe.jobs.memory import peak_rss_mb, reset_peak_rss
from olafhe.jobs.predict import predict
from olafhe.jobs.safety import check_plan_safety
from olafhe.jobs.workspace import Loaded, Log, check_plan, load, quiet, test_set


@dataclass
class _Tally:
    """Results of an encrypted run: seconds and step breakdowns per ciphertext, classes per image."""

    correct: int = 0
    agree: int = 0
    max_err: float = 0.0
    seconds: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)


def run_infer(config: Config, plan: Plan | None, limit: int, backend_name: str | None = None,
              progress: bool = True, loaded: Loaded | None = None, log: Log = quiet) -> dict:
    """Encrypted inference of ``limit`` class-balanced test images on a real (or simulated) backend.

    Images share ciphertexts where the slots allow (``backend.ckks.batch``, automatic by default: see
    :func:`~olafhe.core.planning.ckks.images_per_ciphertext`); the result gives seconds per ciphertext and
    per image. With ``safety.enabled`` those images are first traced on the simulator and the plan is
    refused (:class:`~olafhe.core.errors.UnsafePlanError`) before key generation when a numeric check fails.
    A plan made for another model or checkpoint is refused before any key generation (:func:`check_plan`);
    one priced with another machine's cost table is warned about (:func:`warn_if_priced_elsewhere`).
    """
    if plan is None:
        raise ConfigError("infer needs --plan PLAN.json (create one with `olafhe optimize`)")
    loaded = loaded or load(config)
    check_plan(config, loaded, plan)
    warn_if_priced_elsewhere(config, plan)
    batch = images_per_ciphertext(config, loaded.graph, plan, limit)
    backend, caps, packing, program = compile_for_backend(config, loaded.graph, plan, backend_name, batch)
    x, y = test_set(loaded.data_dir, limit)
    safety = None
    if config.safety.enabled:   # exactly the images about to be encrypted, before any key exists
        report = check_plan_safety(config, plan, loaded, images=x, program=program, backend_name=backend.name, log=log)
        report.raise_if_unsafe("refused before key generation (--set safety.enabled=false runs it anyway)")
        safety = report.to_dict()
    sim_logits, predicted_error = _simulator_reference(config, loaded, plan, x, program, packing, log)
    predicted = _predicted_per_image(config, program, backend, caps.slots, batch, x[0].numpy())
    reset_peak_rss()  # the peak below is this run's, not that of earlier work in the process
    t_keys = time.perf_counter()
    client, raw = backend.keygen(packing.key_request(program.key_request()))
    server = packed(raw, packing)
    keygen_s = time.perf_counter() - t_keys
    log(f"{caps.describe()}; {batch} image(s) per ciphertext; keys for {len(program.rotations)} rotations "
        f"in {keygen_s:.1f} s")
    tally = _Tally()
    for start in range(0, len(y), batch):
        idx = range(start, min(start + batch, len(y)))
        _infer_batch(program, client, server, [x[i].numpy() for i in idx], [int(y[i]) for i in idx],
                     sim_logits[start:idx.stop], f"{idx.stop}/{len(y)}", tally, progress, log)
    return {
        "images": int(len(y)), "correct": tally.correct, "agree_with_simulator": tally.agree / max(len(y), 1),
        "seconds_per_image": sum(tally.seconds) / max(len(y), 1), "peak_rss_mb": peak_rss_mb(),
        "images_per_ciphertext": batch,
        "seconds_per_ciphertext": float(np.mean(tally.seconds)) if tally.seconds else 0.0,
        "backend": backend.name, "security_bits": caps.security_bits, "bootstraps": program.bootstraps,
        "max_logit_error": tally.max_err, "predicted_max_logit_error": predicted_error,
        "keygen_seconds": keygen_s, "breakdown": tally.reports,
        "ring_dimension": caps.ring_dimension, "slots": caps.slots, "model": plan.model,
        "approximator": plan.approximator, "optimizer": plan.optimizer, "degrees": plan.degrees,
        "predicted_latency_s": plan.predicted.latency_s, "predicted_seconds_per_image": predicted,
        "predicted_seconds_per_ciphertext": None if predicted is None else predicted * batch,
        "labels": [int(v) for v in y],
        "encrypted_classes": tally.classes, "seconds": tally.seconds, "rotation_keys": len(program.rotations),
        "machine": machine_description(), "safety": safety,
    }


def _simulator_reference(config: Config, loaded: Loaded, plan: Plan, x: torch.Tensor, program: Program,
                         packing: Packing, log: Log) -> tuple[np.ndarray, float]:
    """The simulator's noise-free logits of ``x`` and its estimate of the CKKS error: the largest logit
    change when the compiled program runs on the simulator with its noise model (each bootstrap's random
    error at the plan's precision and its systematic error on the slots' mean), packed as encrypted."""
    exact = predict(loaded.graph, x, config.data.batch_size, plan)
    noisy_config = replace(config, backend=replace(config.backend, ckks=replace(config.backend.ckks, noise=True)))
    noisy = _program_logits(noisy_config, loaded, plan, x, program, packing)
    error = float(np.max(np.abs(noisy - exact))) if len(x) else 0.0
    log(f"simulator: predicted max logit error {error:.2e} (the program on the simulator, its noise model)")
    return exact, error


def _program_logits(config: Config, loaded: Loaded, plan: Plan, x: torch.Tensor, program: Program,
                    packing: Packing) -> np.ndarray:
    """Logits of the already compiled ``program`` on the simulator, packed as ``packing`` says."""
    batch = packing.batch
    backend = make_backend(config, "simulator", plan, loaded.graph, batch)
    client, raw = backend.keygen(packing.key_request(program.key_request()))
    server = packed(raw, packing)
    rows = [encrypted_batch_inference(program, client, server, [im.numpy() for im in x[i:i + batch]])[0]
            for i in range(0, len(x), batch)]
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def _predicted_per_image(config: Config, program: Program, backend: Backend, slots: int, batch: int,
                         image: np.ndarray) -> float | None:
    """Predicted seconds per image with ``batch`` images per ciphertext of ``slots`` slots (None without a
    cost table for this backend and ring)."""
    name = None if backend.name == "simulator" else backend.name
    try:
        costs = cost_table(config, name, slots).per_image(batch)
    except DataError:
        return None
    return predict_program_seconds(program, costs, backend, image)


def _infer_batch(program: Program, client: Client, server: Evaluator, images: list[np.ndarray], labels: list[int],
                 sim_logits: np.ndarray, name: str, tally: _Tally, progress: bool, log: Log) -> None:
    """Encrypt, evaluate and decrypt one ciphertext of images; compare with the simulator's logits and
    record it (``tally.seconds`` and ``tally.reports`` per ciphertext, classes per image)."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(program.steps), desc=f"images {name}", unit="step")
    t0 = time.perf_counter()
    logits, report = encrypted_batch_inference(program, client, server, images,
                                               progress=(lambda _n, b=bar: b.update(1)) if bar else None)
    tally.seconds.append(time.perf_counter() - t0)
    if bar:
        bar.close()
    tally.reports.append(report.totals())
    errors = []
    for row, label, sim in zip(logits, labels, sim_logits, strict=True):
        tally.classes.append(int(row.argmax()))
        tally.correct += int(row.argmax() == label)
        tally.agree += int(row.argmax() == sim.argmax())
        errors.append(float(np.max(np.abs(row - sim))))
    tally.max_err = max([tally.max_err, *errors])
    log(f"images {name}: labels {labels}, encrypted {tally.classes[-len(labels):]}, simulator "
        f"{[int(v) for v in sim_logits.argmax(1)]}, max logit error {max(errors):.2e}, {tally.seconds[-1]:.1f} s "
        f"for {len(labels)} ({', '.join(f'{k} {v:.1f} s' for k, v in tally.reports[-1].items())}), "
        f"peak RSS {peak_rss_mb():.0f} MB")
