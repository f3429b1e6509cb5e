"""The tuning criterion: a plan's predicted accuracy drop on unseen images, from its logit perturbations.

An approximated network changes a decision when the perturbation of its logits exceeds the decision's
margin. Training images are classified with large margins, so counting changed decisions on them is blind
to the low-margin images that decide test-set flips. The criterion instead pairs every perturbation seen on
the tuning pool with every margin of the plaintext model on that pool (perturbation and margin are treated
as independent), which gives a smooth flip rate with far less variance than counting flips; the pool is made
test-like (mixed, augmented training images: :mod:`olafhe.data.augment`). The predicted drop in points is
``coefficient * flip_rate ** exponent``: larger perturbations flip ever more confident, correct decisions, so
the drop grows faster than the flip rate. The coefficient and exponent are ``optimizer.criterion_*`` settings;
docs/architecture.md ("Tuning criterion") has the measurement behind their defaults.
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

    ``reference`` holds the plaintext model's logits on the pool; :meth:`perturbations` of a plan's logits
    feed :meth:`predicted_drop`, which can rescale them (``scale``) to predict a plan of another budget
    without simulating it.
    """

    reference: np.ndarray
    coefficient: float
    exponent: float

    @property
    def margins(self) -> np.ndarray:
        return margins(self.reference)

    def perturbations(self, logits: np.ndarray) -> np.ndarray:
        return margin_perturbations(self.reference, logits)

    def flip_rate(self, perturbation: np.ndarray, scale: float = 1.0) -> float:
        return flip_rate(self.margins, perturbation, scale)

    def predicted_drop(self, perturbation: np.ndarray, scale: float = 1.0) -> float:
        return self.coefficient * self.flip_rate(perturbation, scale) ** self.exponent
