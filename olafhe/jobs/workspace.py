"""What every job starts from: the model and its graph, the data splits, calibration and sensitivities.

Data discipline: calibration statistics come from the first ``data.calibration_images`` of a seeded
shuffle of ``train_subset``; the optimizer's budget is tuned on the *next* ``optimizer.eval_images``
of that shuffle (held out from the statistics, so out-of-interval inputs show up while tuning); the
test set is only ever used for reporting. Calibration statistics and sensitivities are cached under
:func:`~olafhe.data.paths.cache_dir`, keyed by :func:`config_key` (settings, graph and weights).
:func:`fingerprint` identifies the loaded model (graph, weights, calibration settings) for plans;
:func:`check_plan` refuses a plan made for another one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from olafhe.core.calibration.calibrate import calibrate
from olafhe.core.calibration.stats import CalibrationResult
from olafhe.core.config import Config
from olafhe.core.errors import ConfigError
from olafhe.core.graph.fx_import import import_model
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.fingerprint import ModelFingerprint, check_plan_fingerprint, graph_fingerprint, settings_hash
from olafhe.core.planning.plan import Plan
from olafhe.data.augment import crop_flipped, mixed
from olafhe.data.cifar import balanced_subset, load_cifar10, to_tensor
from olafhe.data.paths import cache_dir
from olafhe.models import build_model

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A :data:`Log` that drops every message."""


@dataclass
class Loaded:
    model: torch.nn.Module
    graph: Graph
    data_dir: Path


def load(config: Config) -> Loaded:
    data_dir = config.data_dir()
    model = build_model(config.model.name, config.model.checkpoint or None, data_dir)
    graph = import_model(model, (3, 32, 32), name=config.model.name)
    return Loaded(model, graph, data_dir)


def calibration_settings(config: Config) -> dict:
    """The settings that select the calibration and tuning images and their statistics (not the model:
    its graph and weights are fingerprinted themselves; not ``data.dir``, ``batch_size`` or output paths)."""
    data = {k: v for k, v in config.data.__dict__.items() if k not in ("dir", "batch_size")}
    return {"data": data, "calibration": {k: v for k, v in config.calibration.__dict__.items() if k != "out"}}


def fingerprint(config: Config, loaded: Loaded) -> ModelFingerprint:
    """What a plan made now would be made for: the loaded graph and weights, the calibration settings."""
    return graph_fingerprint(loaded.graph, config.model.name, settings_hash(calibration_settings(config)))


def check_plan(config: Config, loaded: Loaded, plan: Plan) -> None:
    """Refuse (:class:`~olafhe.core.errors.ConfigError`) a plan made for another model or checkpoint.

    Called by every job that runs a plan, before key generation or simulation; see
    :func:`~olafhe.core.planning.fingerprint.check_plan_fingerprint` for what is only a warning.
    """
    check_plan_fingerprint(plan.fingerprint, fingerprint(config, loaded), plan.model)


def calibration_split(config: Config, data_dir: Path) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(calibration images, labels, tuning images, labels) from train_subset, disjoint."""
    x, y = load_cifar10("train_subset", data_dir)
    n_cal, n_tune = config.data.calibration_images, config.optimizer.eval_images
    if n_cal + n_tune > len(x):
        raise ConfigError(
            f"data.calibration_images ({n_cal}) + optimizer.eval_images ({n_tune}) exceed the {len(x)} "
            "calibration images available"
        )
    order = np.random.default_rng(config.data.seed).permutation(len(x))
    cal, tune = order[:n_cal], order[n_cal:n_cal + n_tune]
    return to_tensor(x[cal]), y[cal], to_tensor(x[tune]), y[tune]


class TuningPool(NamedTuple):
    """The tuning criterion's images and the sizes of their consecutive parts (one per augmentation)."""

    images: torch.Tensor
    parts: tuple[int, ...]


def tuning_pool(config: Config, data_dir: Path) -> TuningPool:
    """The test-like images the tuning criterion is measured on, from the tuning split (held out from the
    calibration statistics): randomly cropped and flipped (``optimizer.tuning_pool = "cropflip"``), also
    blended pairwise (``"mixed"``; :mod:`olafhe.data.augment`), or both made from the same half of the split
    (``"mixed+cropflip"``, the default: two parts, so simulations stay at ``optimizer.eval_images``)."""
    x, _ = load_cifar10("train_subset", data_dir)
    n_cal, n_tune = config.data.calibration_images, config.optimizer.eval_images
    order = np.random.default_rng(config.data.seed).permutation(len(x))
    kind, seed = config.optimizer.tuning_pool, config.data.seed
    if kind == "mixed+cropflip":
        half = x[order[n_cal:n_cal + max(1, n_tune // 2)]]
        parts = [mixed(half, seed=seed), crop_flipped(half, seed=seed)]
    else:
        parts = [{"cropflip": crop_flipped, "mixed": mixed}[kind](x[order[n_cal:n_cal + n_tune]], seed=seed)]
    return TuningPool(to_tensor(np.concatenate(parts)), tuple(len(p) for p in parts))


def test_set(data_dir: Path, limit: int | None) -> tuple[torch.Tensor, np.ndarray]:
    x, y = load_cifar10("test", data_dir)
    if limit:
        idx = balanced_subset(y, min(limit, len(y)), seed=0)
        x, y = x[idx], y[idx]
    return to_tensor(x), y


def config_key(config: Config, loaded: Loaded | None = None) -> str:
    """Cache key of what calibration depends on: the ``model``, ``data`` and ``calibration`` sections and,
    given ``loaded``, its graph and weights (a retrained model, same config, never reads stale statistics)."""
    doc: dict = {s: getattr(config, s).__dict__ for s in ("model", "data", "calibration")}
    if loaded is not None:
        fp = graph_fingerprint(loaded.graph, config.model.name)
        doc["weights"] = [fp.graph, fp.checkpoint]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_calibration(config: Config, out: str | None = None, progress: bool = True, log: Log = quiet,
                    loaded: Loaded | None = None) -> CalibrationResult:
    loaded = loaded or load(config)
    cal_x, _, _, _ = calibration_split(config, loaded.data_dir)
    log(f"calibrating {config.model.name} on {len(cal_x)} train_subset images")
    result = calibrate(loaded.graph, cal_x, bins=config.calibration.bins, batch_size=config.data.batch_size,
                       progress=progress, model_name=config.model.name, source="cifar10/train_subset")
    path = Path(out or config.calibration.out or default_calibration_path(config, loaded))
    result.save(path)
    log(f"saved {len(result.layers)} layers to {path} ({result.seconds:.1f} s)")
    return result


def default_calibration_path(config: Config, loaded: Loaded | None = None) -> Path:
    return cache_dir() / f"{config.model.name}-calibration-{config_key(config, loaded)}.json"


def get_calibration(config: Config, loaded: Loaded, log: Log = quiet, progress: bool = True) -> CalibrationResult:
    path = Path(config.calibration.out) if config.calibration.out else default_calibration_path(config, loaded)
    if path.is_file():
        result = CalibrationResult.load(path)
        if result.names() == [a.name for a in loaded.graph.activations()]:
            return result
    return run_calibration(config, str(path), progress=progress, log=log, loaded=loaded)


def sensitivities(config: Config, loaded: Loaded, images: torch.Tensor, calibration: CalibrationResult,
                  log: Log = quiet) -> dict[str, float]:
    """Per-layer sensitivity of the logits to approximation error at that layer's output (cached).

    The perturbation has the *shape* of a real approximation error (each layer's degree-7 WLS fit
    error, rescaled), not white noise: convolutions and the final average pool pass correlated errors
    on far more than white noise, and white-noise sensitivities mispredicted ResNet-20's distortion by
    up to 7x (see olafhe/core/calibration/sensitivity.py).
    """
    from olafhe.approximators.wls import WLSApproximator
    from olafhe.core.calibration.sensitivity import measure_sensitivity

    path = cache_dir() / f"{config.model.name}-sensitivity-wls7-{config_key(config, loaded)}.json"
    names = [a.name for a in loaded.graph.activations()]
    if path.is_file():
        cached = json.loads(path.read_text())
        if sorted(cached) == sorted(names):
            return {k: float(v) for k, v in cached.items()}
    t0 = time.perf_counter()
    wls = WLSApproximator(activation=config.approximation.activation)
    reference = {s.name: wls.fit(s, 7) for s in calibration.layers}
    sens = measure_sensitivity(loaded.graph, images[:256], names, reference=reference)
    path.write_text(json.dumps(sens, indent=1))
    log(f"measured sensitivities of {len(names)} layers in {time.perf_counter() - t0:.1f} s")
    return sens
