"""Numeric safety rules: does a plan keep every value where CKKS evaluates it correctly?

Four checks, judged on a :class:`~olafhe.core.planning.numeric_trace.NumericTrace` against
:class:`SafetyLimits` (pure functions; the jobs layer traces and calls them before any key exists):

(a) ``bootstrap_range``: a bootstrap's input beyond ``bootstrap_input_range / (1 + range_margin)``. The
    modular reduction (EvalMod's scaled sine) is accurate on a bounded input range, measured per
    (scale, first modulus) on OpenFHE 1.6.1 (N = 4096, [3, 3], SPARSE_ENCAPSULATED): scale 59 / first
    modulus 60 gives 26.7 bits RMS for |x| <= 2, 24.6 at 4, 21.8 at 8, 18.6 at 16, 15.5 at 32 (the sine
    error grows ~cubically); scale 50 / first modulus 58 is flat at ~15 bits up to 32. Against the
    N = 2^16 floors (20.48 and 12.58 bits) that is <= 1 bit lost up to |x| = 8 and >= 32 respectively.
(b) ``polynomial_excursion``: a Chebyshev input beyond ``1 + delta * (1 - range_margin)``, ``delta`` the
    excursion the layer's polynomial tolerates (:mod:`olafhe.core.poly.excursion`).
(c) ``headroom``: a value beyond the modulus at its level, ``2^(first_mod + (level + reserve - 1) * scale - 1)``
    divided by ``1 + range_margin`` (``reserve``: limbs the backend keeps below level 0, 1 for OpenFHE
    with bootstrapping).
(d) ``bootstrap_precision``: the bootstrapping configuration's measured precision below
    ``min_bootstrap_precision_bits`` (default 16: every 50-bit-scale plan at 12.58 bits lost accuracy or,
    for ResNet-32's composite, failed to decrypt; every 59-bit plan at 20.48 bits decrypted correctly).

Every failure is a one-line message naming the layer, the quantity, the limit and the config knob.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from olafhe.core.config import SafetyConfig
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import UnsafePlanError
from olafhe.core.planning.numeric_trace import NumericTrace
from olafhe.core.planning.plan import Plan
from olafhe.core.poly.excursion import excursion_tolerances

MEASURED_BOOTSTRAP_INPUT_RANGE: dict[tuple[int, int], float] = {(59, 60): 8.0, (55, 60): 8.0, (50, 58): 32.0}
"""|x| the modular reduction handles with <= 1 bit lost, keyed by (scale_bits, first_mod_bits)."""
UNKNOWN_BOOTSTRAP_INPUT_RANGE = 1.0  # unmeasured configurations: the range bootstrapping is designed for
KINDS = ("bootstrap_range", "polynomial_excursion", "headroom", "bootstrap_precision")


def bootstrap_input_range(scale_bits: int, first_mod_bits: int) -> float:
    """Measured accurate input range of the bootstrap's modular reduction (conservative 1.0 when unknown)."""
    return MEASURED_BOOTSTRAP_INPUT_RANGE.get((int(scale_bits), int(first_mod_bits)), UNKNOWN_BOOTSTRAP_INPUT_RANGE)


@dataclass(frozen=True)
class SafetyLimits:
    """What the checks compare a trace against: the user's settings and the configuration's facts."""

    min_bootstrap_precision_bits: float = 16.0
    range_margin: float = 0.1
    bootstrap_input_range: float = UNKNOWN_BOOTSTRAP_INPUT_RANGE
    polynomial_error_factor: float = 2.0
    polynomial_excursion: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # layer -> per stage
    precision_bits: float | None = None   # the bootstrapping configuration's measured precision
    scale_bits: int = 59
    first_mod_bits: int = 60
    reserve_limbs: int = 0

    def headroom_bits(self, level: int) -> float:
        """log2 of the largest |value| the modulus holds at ``level`` (before the margin)."""
        return self.first_mod_bits + (level + self.reserve_limbs - 1) * self.scale_bits - 1.0

    @property
    def configuration(self) -> str:
        return f"scale {self.scale_bits} / first modulus {self.first_mod_bits}"

    @classmethod
    def for_plan(cls, plan: Plan, params: CKKSParams, reserve_limbs: int,
                 settings: SafetyConfig | None = None) -> SafetyLimits:
        """Limits for ``plan`` run with ``params`` (its resolved CKKS parameters) on a backend keeping
        ``reserve_limbs`` below level 0; ``settings`` (the ``[safety]`` table) default to the defaults."""
        s = settings or SafetyConfig()
        precision = plan.ckks.precision_bits
        if precision is None and "bootstrap_precision_bits" in params.extra:
            precision = float(params.extra["bootstrap_precision_bits"])
        measured = bootstrap_input_range(params.scale_bits, params.first_mod_bits)
        return cls(
            min_bootstrap_precision_bits=s.min_bootstrap_precision_bits, range_margin=s.range_margin,
            bootstrap_input_range=s.bootstrap_input_range or measured,
            polynomial_error_factor=s.polynomial_error_factor,
            polynomial_excursion={ly.name: excursion_tolerances(ly.approximation, s.polynomial_error_factor)
                                  for ly in plan.layers},
            precision_bits=precision, scale_bits=params.scale_bits, first_mod_bits=params.first_mod_bits,
            reserve_limbs=reserve_limbs,
        )

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["polynomial_excursion"] = {k: list(v) for k, v in self.polynomial_excursion.items()}
        return doc


@dataclass(frozen=True)
class SafetyCheck:
    """One judged quantity: ``value`` against ``limit`` (the margin already applied), in ``unit``.

    ``margin``: how much of the limit is left, as a fraction of it (``|x|``, ``|u|``) or in bits.
    """

    kind: str
    layer: str
    quantity: str
    value: float
    limit: float
    unit: str
    ok: bool
    margin: float
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_bootstrap_precision(plan: Plan, limits: SafetyLimits) -> SafetyCheck | None:
    """(d): the configuration's measured precision against the minimum (None: the plan never bootstraps)."""
    booting = [ly.name for ly in plan.layers if ly.bootstraps]
    if not booting:
        return None
    bits = limits.precision_bits
    floor = limits.min_bootstrap_precision_bits
    if bits is None:
        return SafetyCheck("bootstrap_precision", booting[0], "bootstrap precision (unmeasured)", math.nan,
                           floor, "bits", True, math.nan)
    ok = bits >= floor
    more = f" (and {len(booting) - 1} more bootstrapping layers)" if len(booting) > 1 else ""
    message = "" if ok else (
        f"layer {booting[0]!r}{more}: bootstraps at {bits:.2f} bits of precision, below "
        f"safety.min_bootstrap_precision_bits = {floor:g} ({limits.configuration}; measured: 12.58 bits failed to "
        "decrypt, 20.48 bits work); choose another bootstrapping configuration or "
        "--set safety.min_bootstrap_precision_bits=..."
    )
    return SafetyCheck("bootstrap_precision", booting[0], "bootstrap precision", bits, floor, "bits", ok,
                       bits - floor, message)


def check_trace(trace: NumericTrace, limits: SafetyLimits) -> list[SafetyCheck]:
    """(a), (b) and (c) for every step of ``trace``: one check per step and kind that applies."""
    out: list[SafetyCheck] = []
    for step in trace.steps.values():
        if step.bootstraps:
            out.append(_bootstrap_range(step.name, step.bootstrap_input, limits))
        tolerances = limits.polynomial_excursion.get(step.name, ())
        for stage, magnitude in sorted(step.poly_input.items()):
            if stage < len(tolerances):
                out.append(_excursion(step.name, stage, magnitude, tolerances[stage], limits))
        if step.magnitudes:
            out.append(_headroom(step.name, step.magnitudes, limits))
    return out


def _bootstrap_range(layer: str, magnitude: float, limits: SafetyLimits) -> SafetyCheck:
    r, m = limits.bootstrap_input_range, limits.range_margin
    limit = r / (1.0 + m)
    ok = magnitude <= limit
    message = "" if ok else (
        f"layer {layer!r}: bootstrap input reaches |x| = {magnitude:.4g}, beyond {limit:.4g} (the modular "
        f"reduction's accurate range {r:g} for {limits.configuration}, less range_margin {m:g}); keep the "
        "values smaller or accept with --set safety.bootstrap_input_range=... / safety.range_margin=..."
    )
    return SafetyCheck("bootstrap_range", layer, "bootstrap input |x|", magnitude, limit, "|x|", ok,
                       1.0 - magnitude / limit, message)


def _excursion(layer: str, stage: int, magnitude: float, delta: float, limits: SafetyLimits) -> SafetyCheck:
    m, f = limits.range_margin, limits.polynomial_error_factor
    limit = 1.0 + delta * (1.0 - m)
    ok = magnitude <= limit
    message = "" if ok else (
        f"layer {layer!r}: stage {stage} polynomial input reaches |u| = 1 + {magnitude - 1.0:.3g}, beyond the "
        f"tolerated 1 + {limit - 1.0:.3g} (error <= {f:g} x max_error up to 1 + {delta:.3g}, less range_margin "
        f"{m:g}); widen the layer's interval or accept with --set safety.polynomial_error_factor=... / "
        "safety.range_margin=..."
    )
    return SafetyCheck("polynomial_excursion", layer, f"stage {stage} polynomial input |u|", magnitude, limit,
                       "|u|", ok, 1.0 - magnitude / limit, message)


def _headroom(layer: str, magnitudes: Mapping[tuple[str, int], float], limits: SafetyLimits) -> SafetyCheck:
    """The step's operation result with the fewest bits left below its level's modulus."""
    slack = math.log2(1.0 + limits.range_margin)

    def bits_left(item: tuple[tuple[str, int], float]) -> float:
        (_, level), value = item
        return limits.headroom_bits(level) - slack - math.log2(max(value, 1e-300))

    (op, level), value = min(magnitudes.items(), key=bits_left)
    left = bits_left(((op, level), value))
    limit = limits.headroom_bits(level) - slack
    ok = left >= 0
    message = "" if ok else (
        f"layer {layer!r}: {op} result reaches |x| = {value:.4g} (2^{math.log2(max(value, 1e-300)):.1f}) at level "
        f"{level}, beyond the modulus headroom 2^{limit:.1f} ({limits.configuration}, {limits.reserve_limbs} "
        f"reserve limbs, less range_margin {limits.range_margin:g}); raise ckks.first_mod_bits, keep more "
        "levels at the output, or accept with --set safety.range_margin=..."
    )
    return SafetyCheck("headroom", layer, f"log2 |{op} result| at level {level}",
                       math.log2(max(value, 1e-300)), limit, "bits", ok, left, message)


@dataclass
class SafetyReport:
    """Every check of one plan on some traced inputs, with the limits they were judged against."""

    checks: list[SafetyCheck]
    limits: SafetyLimits
    images: int = 0
    source: str = ""
    seconds: float = 0.0

    @classmethod
    def judge(cls, plan: Plan, trace: NumericTrace | None, limits: SafetyLimits, source: str = "") -> SafetyReport:
        """(a)-(c) on ``trace`` (none: configuration checks only) and (d) on ``plan``'s configuration."""
        checks = check_trace(trace, limits) if trace is not None else []
        precision = check_bootstrap_precision(plan, limits)
        if precision is not None:
            checks.append(precision)
        images, seconds = (trace.images, trace.seconds) if trace is not None else (0, 0.0)
        return cls(checks, limits, images, source, seconds)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[SafetyCheck]:
        return [c for c in self.checks if not c.ok]

    def worst(self, kind: str) -> SafetyCheck | None:
        """The check of ``kind`` with the least margin left (None when none applies)."""
        judged = [c for c in self.checks if c.kind == kind and not math.isnan(c.margin)]
        return min(judged, key=lambda c: c.margin) if judged else None

    def margins(self) -> dict[str, dict | None]:
        """Per kind, the worst check (layer, value, limit, margin) or None when the kind does not apply."""
        out: dict[str, dict | None] = {}
        for kind in KINDS:
            w = self.worst(kind)
            out[kind] = None if w is None else {k: getattr(w, k) for k in ("layer", "quantity", "value", "limit",
                                                                            "unit", "margin", "ok")}
        return out

    def summary(self) -> str:
        """One line: the margin left per check kind."""
        parts = []
        for kind, w in self.margins().items():
            if w is not None:
                unit = " bits" if w["unit"] == "bits" else ""
                left = f"{w['margin']:.2f}{unit}" if unit else f"{100 * w['margin']:.1f}%"
                parts.append(f"{kind} {left} left at {w['layer']!r}{'' if w['ok'] else ' (FAILS)'}")
        where = f" on {self.images} image(s) ({self.source})" if self.images else ""
        return f"numeric safety{where}: " + ("; ".join(parts) or "nothing to check")

    def raise_if_unsafe(self, what: str = "") -> None:
        """Raise :class:`UnsafePlanError` with the first failure's message (and how many more), then ``what``."""
        failures = self.failures
        if failures:
            more = f" [{len(failures) - 1} more failing check(s)]" if len(failures) > 1 else ""
            raise UnsafePlanError(failures[0].message + more + (f"; {what}" if what else ""))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "images": self.images, "source": self.source, "seconds": self.seconds,
                "margins": self.margins(), "failures": [c.message for c in self.failures],
                "limits": {k: v for k, v in self.limits.to_dict().items() if k != "polynomial_excursion"}}
