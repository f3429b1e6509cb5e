"""What a plan was made for: the model's graph, its checkpoint's weights and the calibration settings.

A plan's degrees, intervals and levels only make sense for the graph and weights it was optimized on: a
ResNet-32 plan names every ResNet-20 activation but runs out of levels hours into an encrypted run.
:class:`ModelFingerprint` records sha256 hashes of each; :func:`check_plan_fingerprint` compares a plan's
with the loaded model's before any key generation or simulation. JSON form (the plan's ``fingerprint``)::

    {"model": str, "graph": sha256 hex, "checkpoint": sha256 hex, "calibration": sha256 hex}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from olafhe.core.errors import ConfigError, DataError
from olafhe.core.graph.ir import Graph

SHOWN = 8
"""Hex digits of a hash shown in messages."""


def _warn_stderr(message: str) -> None:
    print(f"olafhe: warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class ModelFingerprint:
    """sha256 hashes of a model's graph structure, its weights as imported, and its calibration settings.

    ``graph`` covers every node's name, op, inputs, shape and non-array parameters (strides, kinds);
    ``checkpoint`` every array parameter (folded weights and biases) in node order; ``calibration`` the
    settings that select the calibration and tuning images (None when unknown).
    """

    model: str
    graph: str
    checkpoint: str
    calibration: str | None = None

    def to_dict(self) -> dict:
        doc = {"model": self.model, "graph": self.graph, "checkpoint": self.checkpoint}
        if self.calibration is not None:
            doc["calibration"] = self.calibration
        return doc

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "plan") -> ModelFingerprint:
        if not isinstance(doc, dict):
            raise DataError(f"{origin}: 'fingerprint' is not an object")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in doc if k not in names]
        missing = [k for k in ("model", "graph", "checkpoint") if k not in doc]
        if unknown or missing:
            raise DataError(f"{origin}: fingerprint has unknown field(s) {', '.join(unknown) or '-'}, "
                            f"missing field(s) {', '.join(missing) or '-'}")
        if not all(isinstance(v, str) for v in doc.values() if v is not None):
            raise DataError(f"{origin}: fingerprint fields must be strings")
        return cls(**doc)

    def describe(self) -> str:
        """``resnet20 (graph 1a2b3c4d, checkpoint 5e6f7a8b)``: enough to tell two models apart."""
        return f"{self.model} (graph {self.graph[:SHOWN]}, checkpoint {self.checkpoint[:SHOWN]})"


def graph_fingerprint(graph: Graph, model: str, calibration: str | None = None) -> ModelFingerprint:
    """The fingerprint of an imported graph (``model`` is the config's model name)."""
    structure, weights = hashlib.sha256(), hashlib.sha256()
    for node in graph.nodes:
        arrays = {k: v for k, v in sorted(node.params.items()) if isinstance(v, np.ndarray)}
        other = {k: v for k, v in sorted(node.params.items()) if k not in arrays}
        record = [node.name, node.op, list(node.inputs), list(node.shape), other,
                  {k: list(v.shape) for k, v in arrays.items()}]
        structure.update(json.dumps(record, sort_keys=True, default=str).encode())
        for key, value in arrays.items():
            weights.update(f"{node.name}.{key}".encode())
            weights.update(np.ascontiguousarray(value, dtype="<f8").tobytes())
    structure.update(json.dumps(["output", graph.output]).encode())
    return ModelFingerprint(model, structure.hexdigest(), weights.hexdigest(), calibration)


def settings_hash(settings: dict) -> str:
    """sha256 of a JSON-able settings document (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def check_plan_fingerprint(recorded: ModelFingerprint | None, current: ModelFingerprint, plan_model: str,
                           warn: Callable[[str], None] = _warn_stderr) -> None:
    """Refuse a plan made for another graph or checkpoint than ``current``, naming both.

    A plan without a fingerprint (made before plans recorded one) is accepted with a warning, unless its
    ``model`` names another model; a different calibration alone is a warning.
    """
    if recorded is None:
        if plan_model != current.model:
            raise ConfigError(f"plan was made for {plan_model} but the config loads {current.describe()}; "
                              "optimize a plan for this model")
        warn(f"plan records no model fingerprint (made before plans had one): cannot check that it was made "
             f"for this {current.describe()}")
        return
    if (recorded.graph, recorded.checkpoint) != (current.graph, current.checkpoint):
        raise ConfigError(f"plan was made for {recorded.describe()} but the config loads {current.describe()}; "
                          "optimize a plan for this model")
    if None not in (recorded.calibration, current.calibration) and recorded.calibration != current.calibration:
        warn(f"plan was calibrated with other settings (calibration {recorded.calibration[:SHOWN]}, now "
             f"{current.calibration[:SHOWN]}: data.calibration_images, data.seed or calibration.*); "
             "its intervals may not fit these images")
