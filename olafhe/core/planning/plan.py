"""The Plan: what to evaluate at every activation layer, where to bootstrap, at which levels.

JSON format (see ``docs/contract.md``; unknown top-level fields are preserved)::

    {"format": "olafhe-plan", "version": 1,
     "model": str, "approximator": str, "optimizer": str,
     "layers": [{"name": str, "degree": int, "interval": [a, b], "basis": "chebyshev",
                 "coefficients": [...], "form": "plain"|"relu-sign", "stages": [...]?,
                 "depth": int, "level_in": int, "bootstrap_before": bool,
                 "stage_bootstrap": [bool], "stage_level_in": [int],   # composite only
                 "weighted_mse": float, "max_error": float, ...}, ...],
     "bootstraps": int, "input_level": int,
     "predicted": {"latency_s": float, "accuracy": float|null, "distortion": float, "target_accuracy": float},
     "ckks": {"ring_dimension": int, "security_bits": int, "levels": int, ...},   # see PlanCKKS
     "fingerprint": {"model": str, "graph": str, "checkpoint": str, "calibration": str},  # optional
     "tuning": {...}, "sensitivity": {layer: float}, "linear_layers": [...]}      # optional

``level_in`` is the level of the activation's input ciphertext (after any bootstrap and level
reduction); ``input_level`` is the level the client encrypts at.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from olafhe.core.errors import DataError, OlafheError
from olafhe.core.jsonfile import check_format, read_json, save_json
from olafhe.core.planning.fingerprint import ModelFingerprint
from olafhe.core.poly.approximation import Approximation

FORMAT = "olafhe-plan"
VERSION = 1


@dataclass(frozen=True)
class PlanLayer:
    name: str
    approximation: Approximation
    level_in: int
    bootstrap_before: bool
    depth: int
    # multi-stage (composite) approximations may bootstrap between stages: per stage, whether the running
    # value is bootstrapped first and the level it is reduced to (entry 0 mirrors the layer's own fields;
    # one more entry at the end is for the layer's output, after the final product)
    stage_bootstrap: tuple[bool, ...] = ()
    stage_level_in: tuple[int, ...] = ()

    @property
    def bootstraps(self) -> int:
        return int(self.bootstrap_before) + sum(1 for b in self.stage_bootstrap[1:] if b)

    def to_dict(self) -> dict:
        doc = {"name": self.name, **self.approximation.to_dict()}
        doc.update(depth=self.depth, level_in=self.level_in, bootstrap_before=self.bootstrap_before)
        if self.stage_bootstrap:
            doc.update(stage_bootstrap=list(self.stage_bootstrap), stage_level_in=list(self.stage_level_in))
        return doc


def _typed_fields(cls: type, doc: dict, converters: dict[str, Callable[[Any], Any]], origin: str) -> dict:
    """Keyword arguments for ``cls`` from ``doc``: each declared key converted, unknown keys refused."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in doc if k not in names]
    if unknown:
        raise DataError(f"{origin}: unknown field(s) {', '.join(unknown)}")
    try:
        return {k: None if v is None else converters[k](v) for k, v in doc.items()}
    except (TypeError, ValueError) as exc:
        raise DataError(f"{origin} is corrupt: {exc}") from exc


@dataclass(frozen=True)
class PlanCKKS:
    """The CKKS parameters a plan was optimized for; absent ones (None) are not written.

    ``levels`` and ``bootstrap`` describe the bootstrapping configuration (levels after bootstrap),
    ``precision_bits`` its measured precision, ``cost_table`` the table the plan was priced with,
    ``cost_machine`` the key of the machine that measured it (absent in plans made before it was recorded,
    which were all priced with shipped tables), ``slots`` the slots of one image and ``batch`` the images
    per ciphertext it was priced for.
    """

    ring_dimension: int | None = None
    security_bits: int | None = None
    scale_bits: int | None = None
    first_mod_bits: int | None = None
    level_budget: tuple[int, int] | None = None
    secret_key_dist: str | None = None
    slots: int | None = None
    cost_table: str | None = None
    cost_machine: str | None = None
    precision_bits: float | None = None
    levels: int | None = None
    bootstrap: bool | None = None
    batch: int | None = None   # images per ciphertext the plan was priced for (absent: one)

    def to_dict(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        if "level_budget" in doc:
            doc["level_budget"] = list(doc["level_budget"])
        return doc

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "plan") -> PlanCKKS:
        if not isinstance(doc, dict):
            raise DataError(f"{origin}: 'ckks' is not an object")
        converters = {"ring_dimension": int, "security_bits": int, "scale_bits": int, "first_mod_bits": int,
                      "level_budget": lambda v: tuple(int(x) for x in v), "secret_key_dist": str, "slots": int,
                      "cost_table": str, "cost_machine": str, "precision_bits": float, "levels": int,
                      "bootstrap": bool, "batch": int}
        return cls(**_typed_fields(cls, doc, converters, f"{origin}: ckks"))


@dataclass(frozen=True)
class PlanPredicted:
    """What the optimizer predicted: seconds per image, distortion, the test-set drop (points) the tuning
    criterion predicts and the drop allowed; plans of earlier versions recorded a tuning accuracy and target."""

    latency_s: float | None = None
    accuracy: float | None = None
    distortion: float | None = None
    target_accuracy: float | None = None
    test_drop: float | None = None
    max_test_drop: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("distortion", "target_accuracy", "test_drop", "max_test_drop")

    @property
    def meets_target(self) -> bool | None:
        """Whether the plan met its tuning target (None when it records none)."""
        if self.test_drop is not None and self.max_test_drop is not None:
            return self.test_drop <= self.max_test_drop
        if self.accuracy is not None and self.target_accuracy is not None:
            return self.accuracy >= self.target_accuracy
        return None

    def to_dict(self) -> dict:
        doc: dict = {"latency_s": self.latency_s, "accuracy": self.accuracy}  # always written, null when unknown
        for key in self.OPTIONAL:
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return doc

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "plan") -> PlanPredicted:
        if not isinstance(doc, dict):
            raise DataError(f"{origin}: 'predicted' is not an object")
        types = dict.fromkeys(("latency_s", "accuracy", *cls.OPTIONAL), float)
        return cls(**_typed_fields(cls, doc, types, f"{origin}: predicted"))


@dataclass
class PlanExtra:
    """Optional top-level records: how the budget was tuned, layer sensitivities, the linear layers'
    report, and any other keys (kept in order, written after the declared ones)."""

    tuning: dict | None = None
    sensitivity: dict[str, float] | None = None
    linear_layers: list[dict] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    DECLARED: ClassVar[tuple[str, ...]] = ("tuning", "sensitivity", "linear_layers")

    def to_dict(self) -> dict:
        doc = {k: getattr(self, k) for k in self.DECLARED if getattr(self, k) is not None}
        doc.update(self.other)
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> PlanExtra:
        return cls(**{k: doc[k] for k in cls.DECLARED if k in doc},
                   other={k: v for k, v in doc.items() if k not in cls.DECLARED})


@dataclass
class Plan:
    """Per activation layer: its approximation, input level and bootstraps; plus what the plan was
    optimized for (``ckks``), what it is predicted to achieve (``predicted``), the model it was made for
    (``fingerprint``; None in plans made before it was recorded) and optional records."""

    model: str
    approximator: str
    optimizer: str
    layers: list[PlanLayer]
    input_level: int
    ckks: PlanCKKS = field(default_factory=PlanCKKS)
    predicted: PlanPredicted = field(default_factory=PlanPredicted)
    extra: PlanExtra = field(default_factory=PlanExtra)
    fingerprint: ModelFingerprint | None = None

    @property
    def bootstraps(self) -> int:
        return sum(layer.bootstraps for layer in self.layers)

    @property
    def degrees(self) -> list[int]:
        return [layer.approximation.degree for layer in self.layers]

    def layer(self, name: str) -> PlanLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"plan has no layer {name!r}")

    def approximations(self) -> dict[str, Approximation]:
        return {layer.name: layer.approximation for layer in self.layers}

    def total_activation_depth(self) -> int:
        return sum(layer.depth for layer in self.layers)

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "approximator": self.approximator,
            "optimizer": self.optimizer,
            "layers": [layer.to_dict() for layer in self.layers],
            "bootstraps": self.bootstraps,
            "input_level": self.input_level,
            "predicted": self.predicted.to_dict(),
            "ckks": self.ckks.to_dict(),
        }
        if self.fingerprint is not None:
            doc["fingerprint"] = self.fingerprint.to_dict()
        doc.update(self.extra.to_dict())
        return doc

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    def digest(self) -> str:
        """sha256 of the plan's canonical JSON (sorted keys, no spaces): the plan id keys and ciphertexts
        record."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "plan") -> Plan:
        check_format(doc, FORMAT, VERSION, origin, required=False)
        missing = [k for k in ("model", "approximator", "optimizer", "layers", "ckks") if k not in doc]
        if missing:
            raise DataError(f"{origin} is missing field(s): {', '.join(missing)}")
        layers = []
        for i, entry in enumerate(doc["layers"]):
            try:
                if entry.get("basis", "chebyshev") != "chebyshev":
                    raise DataError(f"{origin}: layer {i} has unsupported basis {entry.get('basis')!r}")
                approx = Approximation.from_dict(entry, layer=str(entry["name"]))
                declared = int(entry["degree"])
                if declared != approx.degree:
                    raise DataError(
                        f"{origin}: layer {entry['name']!r} declares degree {declared} but its "
                        f"coefficients have degree {approx.degree}"
                    )
                layers.append(PlanLayer(
                    name=str(entry["name"]),
                    approximation=approx,
                    level_in=int(entry["level_in"]),
                    bootstrap_before=bool(entry["bootstrap_before"]),
                    depth=int(entry.get("depth", approx.depth)),
                    stage_bootstrap=tuple(bool(b) for b in entry.get("stage_bootstrap", ())),
                    stage_level_in=tuple(int(v) for v in entry.get("stage_level_in", ())),
                ))
                last = layers[-1]
                if last.stage_bootstrap and not (len(last.stage_bootstrap) == len(last.stage_level_in)
                                                 == len(approx.stages) + 1):
                    raise DataError(f"{origin}: layer {last.name!r} needs one stage_bootstrap and stage_level_in "
                                    f"entry per stage plus one for the output ({len(approx.stages) + 1})")
            except DataError:
                raise
            except (OlafheError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(f"{origin}: layer {i} is corrupt: {exc}") from exc
        known = {"format", "version", "model", "approximator", "optimizer", "layers", "bootstraps",
                 "input_level", "predicted", "ckks", "fingerprint"}
        plan = cls(
            model=str(doc["model"]),
            approximator=str(doc["approximator"]),
            optimizer=str(doc["optimizer"]),
            layers=layers,
            input_level=int(doc.get("input_level", layers[0].level_in + 1 if layers else 0)),
            ckks=PlanCKKS.from_dict(doc["ckks"], origin),
            predicted=PlanPredicted.from_dict(doc.get("predicted") or {}, origin),
            extra=PlanExtra.from_dict({k: v for k, v in doc.items() if k not in known}),
            fingerprint=ModelFingerprint.from_dict(doc["fingerprint"], origin) if "fingerprint" in doc else None,
        )
        if "bootstraps" in doc and int(doc["bootstraps"]) != plan.bootstraps:
            raise DataError(
                f"{origin}: 'bootstraps' says {doc['bootstraps']} but {plan.bootstraps} layers bootstrap"
            )
        return plan

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        doc = read_json(path, "plan file", "create one with `olafhe optimize`")
        return cls.from_dict(doc, origin=str(path))
