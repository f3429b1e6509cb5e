"""Running a compiled :class:`~olafhe.core.compiler.program.Program` on any
:class:`~olafhe.core.contract.backend.Evaluator`.

The client encrypts the encoded image at ``program.input_level``; the server (evaluator only) executes
the steps, bootstrapping where the plan says and reducing each activation's input to its ``level_in``
(layerwise moduli chain); the client decrypts the logits. Each linear step is evaluated by the
diagonal method with baby-step/giant-step and hoisted baby rotations.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from olafhe.core.compiler.layout import tile
from olafhe.core.compiler.packing import PackedEvaluator, Packing
from olafhe.core.compiler.program import ActivationStep, AddStep, LinearStep, Program, Step
from olafhe.core.compiler.rotations import RotationChains
from olafhe.core.contract.backend import Client, Evaluator
from olafhe.core.errors import CapabilityError, OlafheError, ShapeError

_LINEAR_ONLY = "the program was compiled without layers (linear structure only); compile it with the plan's layers"


@dataclass
class RunReport:
    """Per-step timing breakdown of one encrypted inference."""

    steps: list[dict] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for s in self.steps:
            out[s["kind"]] += s["seconds"]
            out["bootstrap"] += s.get("bootstrap_seconds", 0.0)
        return dict(out)


def run_program(program: Program, evaluator: Evaluator, ciphertext: Any,
                progress: Callable[[str], None] | None = None) -> tuple[Any, RunReport]:
    """Execute ``program`` on the server side; returns the output ciphertext and the timing report."""
    if program.linear_only:
        raise OlafheError(_LINEAR_ONLY)
    caps = evaluator.capabilities
    if caps.slots != program.slots:
        raise ShapeError(f"the program was compiled for {program.slots} slots but the evaluator has {caps.slots} "
                         "(several images per ciphertext run through a PackedEvaluator)")
    if program.bootstraps and not caps.bootstrapping:
        raise CapabilityError(
            f"backend {caps.backend!r} cannot bootstrap but the plan needs {program.bootstraps} bootstraps"
        )
    remaining = defaultdict(int)
    for s in program.steps:
        for i in _inputs(s):
            remaining[i] += 1
    values: dict[str, Any] = {program.input_name: ciphertext}
    report = RunReport()
    for step in program.steps:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"name": step.out, "kind": step.kind}
        if isinstance(step, LinearStep):
            entry["level_in"] = evaluator.level(values[step.input])
            values[step.out] = apply_linear(program, step, evaluator, values[step.input])
            entry["diagonals"] = step.diagonal_count
        elif isinstance(step, AddStep):
            values[step.out] = evaluator.add(values[step.a], values[step.b])
        else:
            x = values[step.input]
            if step.bootstrap_before:  # twice the value, imaginary noise removed (Evaluator.bootstrap_real)
                tb = time.perf_counter()
                x = evaluator.bootstrap_real(x)
                entry["bootstrap_seconds"] = time.perf_counter() - tb
            level = evaluator.level(x)
            if level < step.level_in:
                raise OlafheError(
                    f"activation {step.out!r}: the plan expects its input at level {step.level_in} but the "
                    f"ciphertext has {level}; the plan does not match this backend's depth accounting"
                )
            if level > step.level_in:
                x = evaluator.level_reduce(x, step.level_in)
            entry["level_in"] = step.level_in
            inner: dict[str, float] = {}
            values[step.out] = apply_activation(step, evaluator, x, inner, doubled=step.bootstrap_before)
            if inner.get("bootstrap"):  # a composite's own bootstraps count as bootstrap time, not activation
                entry["bootstrap_seconds"] = entry.get("bootstrap_seconds", 0.0) + inner["bootstrap"]
        entry["level_out"] = evaluator.level(values[step.out])
        entry["seconds"] = time.perf_counter() - t0 - entry.get("bootstrap_seconds", 0.0)
        report.steps.append(entry)
        for i in _inputs(step):
            remaining[i] -= 1
            if remaining[i] == 0 and i != program.output_name:
                values.pop(i, None)
        if progress is not None:
            progress(step.out)
    return values[program.output_name], report


def _inputs(step: Step) -> tuple[str, ...]:
    if isinstance(step, AddStep):
        return (step.a, step.b)
    return (step.input,)


def apply_linear(program: Program, step: LinearStep, ev: Evaluator, x: Any) -> Any:
    """Diagonal method with baby-step/giant-step: y = sum_g rot(sum_b rot(D_{g+b}, -g) * rot(x, b), g);
    partial sums over rotated copies are then added up (``step.postsum``)."""
    diag = step.diagonals(program.cache_diagonals)
    index = {int(k): i for i, k in enumerate(diag.offsets)}
    chains = program.chains
    for s in step.presum:  # channel sums into their anchors (pooling): rotations and additions, no level
        x = ev.add(x, ev.rotate(x, s) if chains is None else chains.rotate(ev, x, s))
    x = ev.settle(x)  # one pending rescale now, not one per rotated copy and product
    if chains is None:
        rotated = ev.rotate_hoisted(x, list(step.bsgs.babies))
    else:
        rotated = chains.rotate_many(ev, x, step.bsgs.babies)
    total = _giant_sums(program, step, ev, rotated, diag, index, chains)
    if total is None:  # an all-zero matrix: still consume the level the plan accounts for
        total = ev.multiply_scalar(x, 0.0)
    for s in step.postsum:  # partial sums left in rotated copies: add them up (no level)
        total = ev.add(total, ev.rotate(total, s) if chains is None else chains.rotate(ev, total, s))
    if np.any(step.bias):
        total = ev.add_plain(total, tile(step.layout_out.scatter(step.bias), program.slots))
    return total


def _giant_sums(program: Program, step: LinearStep, ev: Evaluator, rotated: dict[int, Any], diag: Any,
                index: dict[int, int], chains: RotationChains | None) -> Any:
    """``sum_g rot(sum_b D_{g+b} * rot(x, b), g)``. With power-of-two key chains the giants are summed
    Horner-style (:func:`~olafhe.core.compiler.rotations.giant_chain`): one chain per gap between giants."""
    total, last = None, 0
    for g in sorted(step.bsgs.giants, reverse=chains is not None):
        cts, vecs = [], []
        for b in step.bsgs.babies:
            i = index.get(g + b)
            if i is not None:
                cts.append(rotated[b])
                vecs.append(tile(np.roll(diag.values[i], g), program.slots))
        if not cts:
            continue
        inner = ev.multiply_plain_sum(cts, vecs)
        if chains is not None:  # running sum holds giants above g, still to be rotated by (giant - g)
            total = inner if total is None else ev.add(chains.rotate(ev, total, last - g), inner)
            last = g
            continue
        if g:
            inner = ev.rotate(inner, g)
        total = inner if total is None else ev.add(total, inner)
    if chains is not None and total is not None and last:
        total = chains.rotate(ev, total, last)
    return total


def apply_activation(step: ActivationStep, ev: Evaluator, t: Any, timings: dict[str, float] | None = None,
                     doubled: bool = False) -> Any:
    """One activation: a Chebyshev series, or a composite's stages with the bootstraps the plan puts
    between and after them (their seconds are added to ``timings["bootstrap"]`` when given).

    ``doubled``: ``t`` holds twice the input (:meth:`Evaluator.bootstrap_real`). The composite's own
    bootstraps are ``bootstrap_real`` too: a stage after one reads its input doubled, and the value before
    the trailing bootstrap is halved through the last stage's coefficients, at no level.
    """
    if step.approximation is None:
        raise OlafheError(_LINEAR_ONLY)
    if step.approximation.form == "plain":
        return ev.chebyshev(t, step.stages[0], doubled)

    def bootstrap(value: Any) -> Any:
        t0 = time.perf_counter()
        value = ev.bootstrap_real(value)
        if timings is not None:
            timings["bootstrap"] = timings.get("bootstrap", 0.0) + time.perf_counter() - t0
        return value

    k = len(step.stages)
    after = len(step.stage_bootstrap) > k and step.stage_bootstrap[k]
    s, s_doubled = t, doubled
    for j, coeffs in enumerate(step.stages):
        if j and step.stage_bootstrap and step.stage_bootstrap[j]:
            s, s_doubled = bootstrap(s), True
        if j and step.stage_level_in and ev.level(s) > step.stage_level_in[j]:
            s = ev.level_reduce(s, step.stage_level_in[j])
        if j == k - 1:  # out = t * s: halve s for a doubled t and before a doubling trailing bootstrap
            coeffs = coeffs * (0.5 if doubled else 1.0) * (0.5 if after else 1.0)
        s = ev.chebyshev(s, coeffs, s_doubled)
    out = ev.multiply(t, s)
    if step.output_beta:
        out = ev.add_scalar(out, step.output_beta * (0.5 if after else 1.0))
    if after:
        out = bootstrap(out)
    if len(step.stage_level_in) > k and ev.level(out) > step.stage_level_in[k]:
        out = ev.level_reduce(out, step.stage_level_in[k])
    return out


def encrypted_inference(program: Program, client: Client, evaluator: Evaluator, image: np.ndarray,
                        progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, RunReport]:
    """Encrypt one image on the client, run the program on the server, decrypt the logits."""
    logits, report = encrypted_batch_inference(program, client, evaluator, [image], progress)
    return logits[0], report


def encrypted_batch_inference(program: Program, client: Client, evaluator: Evaluator, images: Sequence[np.ndarray],
                              progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, RunReport]:
    """Up to ``batch`` images in one ciphertext (the packing of ``evaluator``, see :func:`packing_of`):
    encrypted on the client, run once on the server, decrypted into one row of logits per image."""
    packing = packing_of(evaluator, program)
    ct = client.encrypt(packing.interleave([program.encode_input(im) for im in images]), level=program.input_level)
    out, report = run_program(program, evaluator, ct, progress)
    rows = packing.split(client.decrypt(out), len(images))
    return np.stack([program.decode_output(r) for r in rows]), report


def packing_of(evaluator: Evaluator, program: Program) -> Packing:
    """How ``evaluator`` packs images for ``program``: its :class:`PackedEvaluator` packing, else one image."""
    return evaluator.packing if isinstance(evaluator, PackedEvaluator) else Packing(1, program.slots)
