"""The Plan: what to evaluate at every activation layer, where to bootstrap, at which levels.

JSON format (see ``docs/contract.md``; extra fields are allowed and preserved)::

    {"format": "olafhe-plan", "version": 1,
     "model": str, "approximator": str, "optimizer": str,
     "layers": [{"name": str, "degree": int, "interval": [a, b], "basis": "chebyshev",
                 "coefficients": [...], "form": "plain"|"relu-sign", "stages": [...]?,
                 "depth": int, "level_in": int, "bootstrap_before": bool,
                 "stage_bootstrap": [bool], "stage_level_in": [int],   # composite only
                 "weighted_mse": float, "max_error": float, ...}, ...],
     "bootstraps": int, "input_level": int,
     "predicted": {"latency_s": float, "accuracy": float|null, "distortion": float},
     "ckks": {"ring_dimension": int, "security_bits": int, "levels": int, ...}}

``level_in`` is the level of the activation's input ciphertext (after any bootstrap and level
reduction); ``input_level`` is the level the client encrypts at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from olafhe.core.errors import DataError, OlafheError
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


@dataclass
class Plan:
    model: str
    approximator: str
    optimizer: str
    layers: list[PlanLayer]
    input_level: int
    ckks: dict
    predicted: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

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
            "predicted": {"latency_s": None, "accuracy": None, **self.predicted},
            "ckks": self.ckks,
        }
        doc.update(self.extra)
        return doc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "plan") -> Plan:
        if not isinstance(doc, dict):
            raise DataError(f"{origin} is not a JSON object")
        if doc.get("format", FORMAT) != FORMAT:
            raise DataError(f"{origin} is not an olafhe plan (format {doc.get('format')!r})")
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
                 "input_level", "predicted", "ckks"}
        plan = cls(
            model=str(doc["model"]),
            approximator=str(doc["approximator"]),
            optimizer=str(doc["optimizer"]),
            layers=layers,
            input_level=int(doc.get("input_level", layers[0].level_in + 1 if layers else 0)),
            ckks=dict(doc["ckks"]),
            predicted=dict(doc.get("predicted") or {}),
            extra={k: v for k, v in doc.items() if k not in known},
        )
        if "bootstraps" in doc and int(doc["bootstraps"]) != plan.bootstraps:
            raise DataError(
                f"{origin}: 'bootstraps' says {doc['bootstraps']} but {plan.bootstraps} layers bootstrap"
            )
        return plan

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"plan file {path} does not exist (create one with `olafhe optimize`)")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"plan file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(doc, origin=str(path))
