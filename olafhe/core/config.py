"""Typed configuration: TOML files validated into dataclasses, with dotted ``--set`` overrides.

Every section and key is declared below; an unknown key or a value of the wrong type is a
:class:`~olafhe.core.errors.ConfigError` naming the dotted key. ``--set model.name=resnet44`` parses
the value as a TOML literal (``3``, ``true``, ``[7, 15]``, ``"x"``) and falls back to a plain string.
Plugin-specific parameters go in free-form tables (``approximator_params``, ``optimizer_params``);
plugins may add defaults and checks for them through :class:`ConfigHooks` (the plugin registry is one).

The data directory rule lives here too (config value, else ``$OLAFHE_DATA``, else ``../shared/data``),
so the config and the data loaders resolve it the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tomli

from olafhe.core.errors import ConfigError, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the folder that holds the ``olafhe`` package)."""

DATA_ENV = "OLAFHE_DATA"
EXPECTED_LAYOUT = (
    "cifar10/test.npz and cifar10/train_subset.npz (or a torchvision cifar-10-batches-py folder) "
    "and checkpoints/*.th"
)


@dataclass
class ModelConfig:
    name: str = "resnet20"
    checkpoint: str = ""          # relative paths resolve against the data directory


@dataclass
class DataConfig:
    dir: str = ""                 # "" -> $OLAFHE_DATA, else ../shared/data next to the repository
    calibration_images: int = 5000
    batch_size: int = 500
    seed: int = 0


@dataclass
class CalibrationConfig:
    bins: int = 2048
    out: str = ""                 # default: .cache/<model>-calibration.json


@dataclass
class ApproximationConfig:
    approximator: str = "wls"
    activation: str = "relu"
    degrees: list[int] = field(default_factory=list)       # [] -> the approximator's defaults
    approximator_params: dict = field(default_factory=dict)


POOL_KINDS = ("mixed+cropflip", "mixed", "cropflip")  # tuning pools (olafhe.jobs.workspace.tuning_pool)


@dataclass
class OptimizerConfig:
    name: str = "dp"
    accuracy_drop: float = 0.3    # allowed drop in points on unseen images (10,000 test images)
    # share of accuracy_drop held back for the criterion's own error and the test set's sampling noise: plans
    # are tuned to a predicted drop of accuracy_drop * (1 - accuracy_margin) (docs/architecture.md)
    accuracy_margin: float = 0.5
    eval_images: int = 2000       # held-out training images behind the test-like tuning pool
    # tuning criterion: predicted drop = coefficient * flip_score ** exponent on the tuning pool, the score
    # being the product of the pool's parts' flip rates (%); defaults measured in docs/architecture.md
    tuning_pool: str = "mixed+cropflip"   # one of POOL_KINDS
    criterion_coefficient: float = 0.059
    criterion_exponent: float = 0.57
    best_effort: bool = True      # no plan predicted to meet accuracy_drop: the most accurate one, warned
    leveled: bool = False         # no bootstraps: total depth must fit max_level
    max_level: int = 0            # 0 -> the backend's
    optimizer_params: dict = field(default_factory=dict)

    @property
    def tuning_target(self) -> float:
        """The predicted test-set drop (points) plans are tuned to: the allowed drop less the margin."""
        return self.accuracy_drop * (1.0 - self.accuracy_margin)


@dataclass
class CKKSConfig:
    """The ``[backend.ckks]`` table; jobs run with the CKKSParams that ``planning.ckks.resolve_ckks`` makes of it."""

    ring_dimension: int = 65536
    scale_bits: int = 59
    first_mod_bits: int = 60
    levels: int = 6
    bootstrap: bool = True
    level_budget: list[int] = field(default_factory=lambda: [3, 3])
    secret_key_dist: str = "SPARSE_ENCAPSULATED"
    bootstrap_iterations: int = 1
    slots: int = 0                # slots per image; 0: automatic (see planning.ckks.slot_count)
    batch: int = 0                # images per ciphertext; 0: automatic (see planning.ckks.images_per_ciphertext)
    insecure: bool = False
    threads: int = 0
    noise: bool = True            # simulator: inject CKKS-like noise


@dataclass
class BackendConfig:
    name: str = "simulator"
    cost_backend: str = "openfhe"  # whose cost table drives the optimizer and predictions
    max_rotation_keys: int = 0     # 0: one key per rotation; else power-of-two key chains (memory budget)
    ckks: CKKSConfig = field(default_factory=CKKSConfig)


@dataclass
class SafetyConfig:
    """The ``[safety]`` table: numeric checks before keys (see ``olafhe.core.planning.safety``)."""

    enabled: bool = True                       # evaluate reports, infer refuses, optimize skips
    min_bootstrap_precision_bits: float = 16.0  # measured: 12.58 bits failed to decrypt, 20.48 works
    range_margin: float = 0.1                  # fraction kept below every range limit
    bootstrap_input_range: float = 0.0         # 0: measured per (scale, first modulus), else this |x|
    polynomial_error_factor: float = 2.0       # tolerated error outside an interval, x max_error
    images: int = 4                            # calibration images (the extremes) traced per check
    scan_images: int = 1000                    # calibration images searched for those extremes


@dataclass
class RunConfig:
    infer_images: int = 1
    evaluate_limit: int = 0       # 0 -> all test images
    out: str = "results"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    approximation: ApproximationConfig = field(default_factory=ApproximationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str = field(default="", metadata={"internal": True})

    # ----------------------------------------------------------------- derived
    def data_dir(self) -> Path:
        """The data directory: config value, else ``$OLAFHE_DATA``, else ``../shared/data``."""
        return resolve_data_dir(self.data.dir or None)

    def to_dict(self) -> dict:
        doc = dataclasses.asdict(self)
        doc.pop("source", None)
        return doc


# ------------------------------------------------------------------------------------------------
def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """Return the data directory.

    Order: ``explicit`` (e.g. the config's ``data.dir``), else ``$OLAFHE_DATA``, else
    ``<repo>/../shared/data`` when it exists. A named directory that does not exist is an error rather
    than a silent fall-through, so a typo never picks up other data.
    """
    if explicit:
        return _existing_dir(Path(explicit).expanduser(), "data.dir")
    env = os.environ.get(DATA_ENV, "")
    if env:
        return _existing_dir(Path(env).expanduser(), f"${DATA_ENV}")
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default
    raise DataError(
        f"no data directory: set {DATA_ENV} or data.dir to a folder with {EXPECTED_LAYOUT} "
        f"(the default {default} does not exist)"
    )


def _existing_dir(path: Path, origin: str) -> Path:
    if not path.is_dir():
        raise DataError(
            f"data directory {path} (from {origin}) does not exist: point it at a folder with {EXPECTED_LAYOUT}"
        )
    return path


# ------------------------------------------------------------------------------------------------
def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key!r}: expected nothing, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}; known in this section: {', '.join(fields)}")
        kwargs[key] = _check_type(value, hints[key], dotted)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=VALUE`` into a key path and a TOML-typed value."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set has an empty key in {text!r}")
    try:
        value = tomli.loads(f"v = {raw}")["v"]
    except tomli.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(doc: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = doc
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return doc


class ConfigHooks(Protocol):
    """What plugins add to loading a config: defaults for their own keys, and checks.

    :class:`~olafhe.core.contract.registry.PluginRegistry` implements it through the hooks
    ``olafhe_config_defaults`` and ``olafhe_validate_config``; config only needs these two methods.
    """

    def config_defaults(self, config: Config) -> list[dict]:
        """Partial config documents (same tables as the TOML) to lay under the user's values."""

    def validate_config(self, config: Config) -> None:
        """Raise :class:`ConfigError` with a one-line message when ``config`` is unusable."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                hooks: ConfigHooks | None = None) -> Config:
    """Load a TOML config (or the defaults when ``path`` is None) and apply ``--set`` overrides.

    With ``hooks`` (the CLI passes the plugin registry), plugin defaults go under the file and the
    overrides (whatever the user wrote wins), and plugin checks run after the built-in ones.
    """
    doc = apply_overrides(_read(path), list(overrides or []))
    config = _build(Config, doc)
    if hooks is not None:
        defaults = hooks.config_defaults(config)
        if defaults:
            config = _build(Config, _merge_under(doc, defaults))
    config.source = "" if path is None else str(Path(path))
    _validate(config)
    if hooks is not None:
        hooks.validate_config(config)
    return config


def _read(path: str | Path | None) -> dict:
    """The TOML document at ``path`` (empty when None); a missing or invalid file is a ConfigError."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomli.loads(path.read_text())
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _merge_under(doc: dict, defaults: list[dict]) -> dict:
    """``doc`` laid over the merged ``defaults``; two defaults that disagree on a key are a ConfigError."""
    base: dict = {}
    for layer in defaults:
        _merge_into(base, layer, overwrite=False)
    _merge_into(base, doc, overwrite=True)
    return base


def _merge_into(base: dict, layer: dict, overwrite: bool, prefix: str = "") -> None:
    for key, value in layer.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value, overwrite, dotted)
        elif key not in base or overwrite:
            base[key] = copy.deepcopy(value)
        elif base[key] != value:
            raise ConfigError(f"plugins give config key {dotted!r} two defaults: {base[key]!r} and {value!r}")


def _validate(config: Config) -> None:
    checks = [
        (config.data.calibration_images > 0, "data.calibration_images must be positive"),
        (config.data.batch_size > 0, "data.batch_size must be positive"),
        (config.calibration.bins >= 8, "calibration.bins must be >= 8"),
        (0 <= config.optimizer.accuracy_drop <= 100, "optimizer.accuracy_drop must be in [0, 100] points"),
        (0 <= config.optimizer.accuracy_margin < 1, "optimizer.accuracy_margin must be in [0, 1) (a share of "
                                                     "optimizer.accuracy_drop)"),
        (config.optimizer.eval_images > 0, "optimizer.eval_images must be positive"),
        (config.optimizer.tuning_pool in POOL_KINDS,
         f"optimizer.tuning_pool must be one of {', '.join(POOL_KINDS)}, got {config.optimizer.tuning_pool!r}"),
        (config.backend.ckks.batch >= 0, "backend.ckks.batch must be >= 0 (0: automatic)"),
        (all(d >= 1 for d in config.approximation.degrees), "approximation.degrees must all be >= 1"),
        (len(config.backend.ckks.level_budget) == 2, "backend.ckks.level_budget must have two entries"),
        (config.run.infer_images >= 0, "run.infer_images must be >= 0"),
        (config.safety.range_margin >= 0, "safety.range_margin must be >= 0"),
        (config.safety.range_margin < 1, "safety.range_margin must be < 1 (a fraction of each limit)"),
        (config.safety.bootstrap_input_range >= 0, "safety.bootstrap_input_range must be >= 0 (0: measured)"),
        (config.safety.polynomial_error_factor >= 1, "safety.polynomial_error_factor must be >= 1"),
        (config.safety.images >= 1, "safety.images must be >= 1"),
        (config.safety.scan_images >= 1, "safety.scan_images must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
