"""The tuning criterion: a plan's predicted accuracy drop on unseen images, from its logit perturbations.

An approximated network changes a decision when the perturbation of its logits exceeds the decision's
margin. Training images are classified with large margins, so counting changed decisions on them is blind
to the low-margin images that decide test-set flips. The criterion instead pairs every perturbation seen on
the tuning pool with every margin of the plaintext model on that pool (perturbation and margin are treated
as independent), which gives a smooth flip rate with far less variance than counting flips; the pool is made
test-like (augmented training images: :mod:`olafhe.data.augment`). A pool can have parts made differently
(by default the same training images blended pairwise, and only cropped and flipped): the flip score is the
product of the parts' flip rates, and the predicted drop in points is ``coefficient * score ** exponent``.
Blended images expose low-margin decisions, crop-flipped ones the margins of natural images; each alone
mis-ranks one of the two shipped ResNets, their product carries over between them. The coefficient and
exponent are ``optimizer.criterion_*`` settings; docs/architecture.md ("Tuning criterion") has the
measurement behind their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olafhe.core.errors import ShapeError


def margins(logits: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 logit of every row."""
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def margin_perturbations(reference: np.ndarray, approximated: np.ndarray) -> np.ndarray:
    """How much each image's perturbation moves its decision toward the closest other class.

    ``max_{c != top} (e_c - e_top)`` with ``e = approximated - reference`` and ``top`` the reference class:
    a decision flips when this exceeds the reference margin. Non-finite logits (a polynomial evaluated far
    outside its interval) count as certain flips.
    """
    if reference.shape != approximated.shape or reference.ndim != 2:
        raise ShapeError(f"logits must be two arrays of the same (images, classes) shape, got "
                         f"{reference.shape} and {approximated.shape}")
    e = approximated - reference
    rows = np.arange(len(reference))
    top = reference.argmax(axis=1)
    toward = e - e[rows, top][:, None]
    toward[rows, top] = -np.inf
    out = toward.max(axis=1)
    return np.where(np.isfinite(out), out, np.inf)


def flip_rate(margin: np.ndarray, perturbation: np.ndarray, scale: float = 1.0) -> float:
    """Percent of (margin, perturbation) pairs whose perturbation, times ``scale``, exceeds the margin."""
    d = np.sort(np.asarray(perturbation, dtype=np.float64) * scale)
    above = len(d) - np.searchsorted(d, np.asarray(margin, dtype=np.float64), side="right")
    return 100.0 * float(above.mean()) / max(len(d), 1)


@dataclass(frozen=True)
class FlipCriterion:
    """Predicted test-set drop (points) of a plan from its logits on the tuning pool.

    ``reference`` holds the plaintext model's logits on the pool, ``parts`` the sizes of its consecutive
    parts (empty: one part); :meth:`perturbations` of a plan's logits feed :meth:`predicted_drop`, which can
    rescale them (``scale``) to predict a plan of another budget without simulating it.
    """

    reference: np.ndarray
    coefficient: float
    exponent: float
    parts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.parts and (sum(self.parts) != len(self.reference) or min(self.parts) < 1):
            raise ShapeError(f"pool parts {self.parts} do not split the {len(self.reference)} reference rows")

    @property
    def margins(self) -> np.ndarray:
        return margins(self.reference)

    def _bounds(self) -> list[tuple[int, int]]:
        ends = np.cumsum(self.parts or (len(self.reference),))
        return [(int(e - n), int(e)) for e, n in zip(ends, self.parts or (len(self.reference),), strict=True)]

    def perturbations(self, logits: np.ndarray) -> np.ndarray:
        return margin_perturbations(self.reference, logits)

    def flip_rates(self, perturbation: np.ndarray, scale: float = 1.0) -> list[float]:
        """Flip rate (%) of each part of the pool."""
        m = self.margins
        return [flip_rate(m[a:b], perturbation[a:b], scale) for a, b in self._bounds()]

    def flip_rate(self, perturbation: np.ndarray, scale: float = 1.0) -> float:
        """The flip score: the product of the parts' flip rates (the flip rate of a one-part pool)."""
        return float(np.prod(self.flip_rates(perturbation, scale)))

    def predicted_drop(self, perturbation: np.ndarray, scale: float = 1.0) -> float:
        return self.coefficient * self.flip_rate(perturbation, scale) ** self.exponent
