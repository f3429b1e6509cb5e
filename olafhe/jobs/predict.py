"""Logits of a batch of images: the exact model, or a plan's approximations on the fast simulator."""

from __future__ import annotations

import numpy as np
import torch

from olafhe.core.graph.ir import Graph
from olafhe.core.planning.plan import Plan


def predict(graph: Graph, images: torch.Tensor, batch_size: int, plan: Plan | None = None,
            noise_bits: float | None = None, progress: bool = False) -> np.ndarray:
    """Logits of the exact model (no plan) or of the plan's approximations (fast simulator path)."""
    if plan is not None:
        from olafhe.backends.simulator import simulate_logits

        return simulate_logits(graph, plan, images, batch_size, noise_bits=noise_bits, progress=progress)
    return graph.forward_batches(images, batch_size, progress="evaluate" if progress else None)
