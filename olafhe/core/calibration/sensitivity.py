"""Layer sensitivities: how strongly an error in one activation's output moves the logits.

Error model. Replacing activation ``i`` by a polynomial adds an error ``e_i`` to its output. For small
errors the logits move by ``J_i e_i`` (``J_i``: the Jacobian of the logits with respect to that output).
If ``e_i`` behaves like white noise of per-element variance ``v``, ``E ||J_i e_i||^2 = v ||J_i||_F^2``.
We measure ``s_i = mean over images of ||Δlogits||^2 / σ^2`` with i.i.d. Gaussian noise of standard
deviation ``σ`` added to layer ``i``'s output alone, which estimates ``||J_i||_F^2``; the predicted
distortion of a plan is then ``Σ_i s_i · wmse_i`` (``wmse_i``: the per-element mean squared
approximation error), assuming errors of different layers add up without cancelling.

``σ`` is chosen per layer as ``noise_std`` times the RMS of that layer's exact output over the images
(``relative=True``), small enough that the network stays in its linear regime (a test checks that
``s_i`` does not depend on ``σ``) yet far above float rounding. Noise is seeded, so results are
reproducible; ``measured_distortion`` gives the ground truth the prediction is checked against.

Limitation of white noise, measured: approximation errors are not white. They follow the input, which
is spatially correlated, and have per-channel biases, and convolutions and the final average pool pass
such errors on much more than white noise. On ResNet-20 (200 test images, one layer replaced at a
time by least-squares fits of degree 3..31) ``s_i · wmse_i`` over measured was 0.13..2.8 with white
noise and 0.5..2.6 with ``reference`` (each layer's own degree-7 fit error as the perturbation shape);
on the tiny test network white noise underestimates by 3-12x and the error-shaped version is within 2x.
Passing ``reference`` (e.g. one mid-degree candidate per layer) is therefore recommended.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from olafhe.core.errors import ApproximationError, DataError
from olafhe.core.graph.ir import _EXACT as EXACT_ACTIVATIONS
from olafhe.core.graph.ir import Graph
from olafhe.core.poly.approximation import Approximation

TorchFn = Callable[[torch.Tensor], torch.Tensor]


def _batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


def _activation_names(graph: Graph, layers: Sequence[str] | None) -> list[str]:
    known = [n.name for n in graph.activations()]
    if layers is None:
        return known
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise DataError(f"graph {graph.name!r} has no activation layers {unknown}; known: {known}")
    return list(layers)


def _exact(graph: Graph, name: str) -> TorchFn:
    return EXACT_ACTIVATIONS[graph[name].params.get("kind", "relu")]


def output_rms(graph: Graph, images: torch.Tensor, layers: Sequence[str] | None = None,
               batch_size: int = 250) -> dict[str, float]:
    """Root mean square of every activation's exact output over ``images`` (the noise scale)."""
    names = set(_activation_names(graph, layers))
    sums = dict.fromkeys(names, 0.0)
    counts = dict.fromkeys(names, 0)

    def hook(name: str, x: torch.Tensor) -> None:
        if name in names:
            y = _exact(graph, name)(x).double()
            sums[name] += float((y * y).sum())
            counts[name] += y.numel()

    with torch.no_grad():
        for batch in _batches(images, batch_size):
            graph.forward(batch, hook=hook)
    return {name: math.sqrt(sums[name] / max(counts[name], 1)) for name in names}


def measure_sensitivity(graph: Graph, images: torch.Tensor, layers: list[str] | None = None,
                        noise_std: float = 0.01, batch_size: int = 250, seed: int = 0,
                        relative: bool = True,
                        reference: Mapping[str, Approximation] | None = None) -> dict[str, float]:
    """Per activation layer ``s_i = mean ||Δlogits||^2 / σ_i^2`` under a perturbation of its output.

    ``images``: normalized NCHW batch. ``noise_std``: ``σ`` as a fraction of the layer's output RMS
    (``relative=True``, the default) or in absolute units. Runs one perturbed forward pass per layer
    and batch (the computation follows ``images``' dtype and device).

    The perturbation is i.i.d. Gaussian noise of standard deviation ``σ_i`` (the white-error model).
    With ``reference`` (an approximation per layer) it is instead that approximation's own error
    ``ref(x) - f(x)``, rescaled to per-element RMS ``σ_i``: this keeps the spatial and per-channel
    correlation of real approximation errors, which the network's averaging layers pass on far more
    than white noise (see the module doc and ``measured_distortion`` to compare the two).
    """
    names = _activation_names(graph, layers)
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std}")
    if reference is not None:
        missing = [name for name in names if name not in reference]
        if missing:
            raise DataError(f"no reference approximation for layers {missing}")
        error_rms = {name: math.sqrt(v) for name, v in empirical_wmse(graph, images, reference, batch_size).items()}
    scale = output_rms(graph, images, names, batch_size) if relative else dict.fromkeys(names, 1.0)
    sigma = {name: noise_std * (scale[name] if scale[name] > 0 else 1.0) for name in names}
    generators = {name: torch.Generator().manual_seed(seed) for name in names}
    total = dict.fromkeys(names, 0.0)

    def noisy(name: str) -> TorchFn:
        exact, gen, s = _exact(graph, name), generators[name], sigma[name]
        if reference is not None:
            poly, gain = polynomial_fn(reference[name]), s / max(error_rms[name], 1e-300)
            return lambda x: exact(x) + gain * (poly(x) - exact(x))

        def fn(x: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            return exact(x) + s * noise

        return fn

    with torch.no_grad():
        for batch in _batches(images, batch_size):
            clean = graph.forward(batch).double()
            for name in names:
                logits = graph.forward(batch, activations={name: noisy(name)}).double()
                total[name] += float(((logits - clean) ** 2).sum())
    n = images.shape[0]
    return {name: total[name] / (n * sigma[name] ** 2) for name in names}


def polynomial_fn(approx: Approximation) -> TorchFn:
    """The approximation as a torch function, evaluated exactly in float64 (the simulator's numerics)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = approx(x.detach().cpu().numpy().astype(np.float64))
        return torch.from_numpy(np.asarray(y)).to(dtype=x.dtype, device=x.device)

    return fn


def predicted_distortion(sensitivities: Mapping[str, float], approximations: Mapping[str, Approximation]) -> float:
    """``Σ s_i · wmse_i`` over the approximated layers (layers not listed stay exact)."""
    missing = [name for name in approximations if name not in sensitivities]
    if missing:
        raise DataError(f"no sensitivity measured for layers {missing}")
    total = 0.0
    for name, approx in approximations.items():
        if not math.isfinite(approx.weighted_mse):
            raise ApproximationError(f"layer {name!r}: the approximation has no weighted MSE")
        total += float(sensitivities[name]) * approx.weighted_mse
    return total


def measured_distortion(graph: Graph, images: torch.Tensor, approximations: Mapping[str, Approximation],
                        batch_size: int = 250) -> float:
    """Mean over images of ``||logits(polynomials) - logits(exact)||^2`` with every listed layer
    replaced by its polynomial (float64 evaluation)."""
    _activation_names(graph, list(approximations))
    replace = {name: polynomial_fn(a) for name, a in approximations.items()}
    total = 0.0
    with torch.no_grad():
        for batch in _batches(images, batch_size):
            diff = graph.forward(batch, activations=replace).double() - graph.forward(batch).double()
            total += float((diff ** 2).sum())
    return total / images.shape[0]


def empirical_wmse(graph: Graph, images: torch.Tensor, approximations: Mapping[str, Approximation],
                   batch_size: int = 250) -> dict[str, float]:
    """Per-element mean squared error of each approximation on that layer's exact-network inputs."""
    _activation_names(graph, list(approximations))
    sums = dict.fromkeys(approximations, 0.0)
    counts = dict.fromkeys(approximations, 0)

    def hook(name: str, x: torch.Tensor) -> None:
        if name in approximations:
            x64 = x.detach().cpu().numpy().astype(np.float64)
            exact = _exact(graph, name)(torch.from_numpy(x64)).numpy()
            sums[name] += float(((approximations[name](x64) - exact) ** 2).sum())
            counts[name] += x64.size

    with torch.no_grad():
        for batch in _batches(images, batch_size):
            graph.forward(batch, hook=hook)
    return {name: sums[name] / max(counts[name], 1) for name in approximations}
