"""Interfaces for the two plugin kinds that are not backends: approximators and degree optimizers.

Both follow scikit-learn's habit: hyper-parameters go to ``__init__`` (from the config), the work is
one method (``fit`` / ``optimize``) that returns a plain value object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.poly.approximation import Approximation


class Approximator(ABC):
    """Fits polynomial approximations of an activation to one layer's input distribution."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, activation: str = "relu", **params: Any) -> None:
        self.activation = activation
        self.params = params

    @abstractmethod
    def fit(self, stats: ActivationStats, degree: int) -> Approximation:
        """Best approximation of ``degree`` for the layer described by ``stats``."""

    def candidates(self, stats: ActivationStats, degrees: Sequence[int]) -> list[Approximation]:
        """All candidates for one layer (default: one per degree). May return several per degree
        (e.g. interval variants); the optimizer picks among them."""
        return [self.fit(stats, d) for d in degrees]

    def default_degrees(self) -> list[int]:
        """Degrees to try when the config does not list them."""
        return [2**k - 1 for k in range(1, 8)]


# ------------------------------------------------------------------------------------------------
# The optimization problem handed to degree optimizers.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One choice for one activation layer, with everything the optimizer weighs."""

    approximation: Approximation
    depth: int                 # levels the activation consumes on the target backend
    distortion: float          # sensitivity(layer) * weighted MSE: predicted output distortion
    seconds_by_level: dict[int, float] = field(default_factory=dict)  # activation cost at each input level
    # multi-stage approximations: depth and cost per stage (the planner may bootstrap between stages)
    stage_depths: tuple[int, ...] = ()
    stage_seconds: tuple[dict[int, float], ...] = ()


@dataclass(frozen=True)
class LayerSlot:
    """One activation layer in evaluation order and the linear work that feeds it.

    ``linear_depth`` levels are consumed between the previous activation's output and this
    activation's input; ``linear_seconds_by_level`` gives the cost of that linear work as a function of
    the level it starts at. ``skip_from`` names an earlier activation whose output is added (residual)
    just before this activation, with ``skip_depth`` levels consumed on the skip path (0 for identity);
    the addition runs at the lower of the two levels.
    """

    name: str
    candidates: tuple[Candidate, ...]
    linear_depth: int = 1
    linear_seconds_by_level: dict[int, float] = field(default_factory=dict)
    skip_from: str | None = None
    skip_depth: int = 0


@dataclass(frozen=True)
class OptimizationProblem:
    """Layers in order, the level/bootstrap model, and the cost of what follows the last activation.

    ``max_level``: the level a fresh encryption may have. ``bootstrap_configs`` maps a level-after-
    bootstrap to the seconds one bootstrap costs in that configuration (empty: leveled only).
    ``tail_depth`` / ``tail_seconds_by_level``: the linear work after the last activation.
    """

    layers: tuple[LayerSlot, ...]
    max_level: int
    bootstrap_configs: dict[int, float]
    tail_depth: int = 1
    tail_seconds_by_level: dict[int, float] = field(default_factory=dict)
    max_bootstraps: int | None = None


@dataclass(frozen=True)
class LayerChoice:
    name: str
    candidate_index: int
    bootstrap_before: bool
    level_in: int              # level of the activation's input ciphertext (after any bootstrap/reduce)


@dataclass(frozen=True)
class Solution:
    """What an optimizer returns; the planner turns it into a :class:`~olafhe.core.planning.plan.Plan`."""

    choices: tuple[LayerChoice, ...]
    input_level: int
    level_after_bootstrap: int | None
    bootstraps: int
    predicted_seconds: float
    distortion: float
    info: dict = field(default_factory=dict)


class DegreeOptimizer(ABC):
    """Chooses one candidate per layer and where to bootstrap, under a distortion budget."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def optimize(self, problem: OptimizationProblem, budget: float) -> Solution:
        """Minimize predicted latency subject to total distortion <= ``budget``.

        Raises :class:`~olafhe.core.errors.InfeasibleError` when no choice meets the budget and the
        level constraints.
        """

    @property
    def uses_budget(self) -> bool:
        """False for optimizers (like ``uniform``) whose answer does not depend on the budget."""
        return True

    def select_bootstrap_configs(self, configs: dict[int, float]) -> dict[int, float]:
        """The bootstrapping configurations (level after bootstrap -> seconds per bootstrap) to plan with,
        out of the safe ones the cost table offers; the optimize job tries each. Default: all of them."""
        return configs
