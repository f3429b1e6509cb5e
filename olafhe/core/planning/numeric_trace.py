"""What a traced simulation of a compiled program saw, per program step: the facts the safety checks judge.

The traced simulator (:mod:`olafhe.backends.sim_trace`) fills one :class:`StepTrace` per step of a
:class:`~olafhe.core.compiler.program.Program` (named after the value it produces: an activation layer, a
linear step, a residual addition); traces of several images merge by taking maxima.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _max_into(target: dict, key: object, value: float) -> None:
    if value > target.get(key, float("-inf")):
        target[key] = value


@dataclass
class StepTrace:
    """Maxima of one program step.

    ``magnitudes[(op, level)]``: the largest ``|value|`` an operation of kind ``op`` produced, at the
    level of its result (a product is recorded at its rescaled level: the same modulus bounds it before
    rescaling). ``bootstrap_input``: the largest ``|value|`` entering a bootstrap. ``poly_input[stage]``:
    the largest ``|Re u|`` of a Chebyshev series' input, by stage of the layer's approximation.
    ``imag``: the largest imaginary part of the step's values (CKKS noise lives in both parts).
    """

    name: str = ""
    magnitudes: dict[tuple[str, int], float] = field(default_factory=dict)
    bootstrap_input: float = 0.0
    bootstraps: int = 0
    poly_input: dict[int, float] = field(default_factory=dict)
    imag: float = 0.0

    def record(self, op: str, level: int, magnitude: float, imag: float) -> None:
        _max_into(self.magnitudes, (op, level), magnitude)
        self.imag = max(self.imag, imag)

    def record_bootstrap(self, magnitude: float) -> None:
        self.bootstrap_input = max(self.bootstrap_input, magnitude)
        self.bootstraps += 1

    def record_poly(self, stage: int, magnitude: float) -> None:
        _max_into(self.poly_input, stage, magnitude)

    def merge(self, other: StepTrace) -> None:
        """Fold ``other`` (the same step, other images) into this one."""
        for key, value in other.magnitudes.items():
            _max_into(self.magnitudes, key, value)
        for stage, value in other.poly_input.items():
            _max_into(self.poly_input, stage, value)
        self.bootstrap_input = max(self.bootstrap_input, other.bootstrap_input)
        self.bootstraps = max(self.bootstraps, other.bootstraps)
        self.imag = max(self.imag, other.imag)

    def to_dict(self) -> dict:
        magnitudes = [{"op": op, "level": lv, "max_abs": v} for (op, lv), v in sorted(self.magnitudes.items())]
        return {"name": self.name, "bootstrap_input": self.bootstrap_input, "bootstraps": self.bootstraps,
                "poly_input": {str(k): v for k, v in sorted(self.poly_input.items())}, "imag": self.imag,
                "magnitudes": magnitudes}


@dataclass
class NumericTrace:
    """Per-step maxima of a traced run over ``images`` inputs, in program order."""

    steps: dict[str, StepTrace] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0
    max_output_imag: float = 0.0

    def add(self, step: StepTrace) -> None:
        """Record a finished step (merged into an earlier record of the same name)."""
        if step.name in self.steps:
            self.steps[step.name].merge(step)
        else:
            self.steps[step.name] = step

    def merge(self, other: NumericTrace) -> NumericTrace:
        """This trace with ``other``'s images folded in (returns self)."""
        for step in other.steps.values():
            self.add(step)
        self.images += other.images
        self.seconds += other.seconds
        self.max_output_imag = max(self.max_output_imag, other.max_output_imag)
        return self
