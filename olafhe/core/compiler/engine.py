"""The inference engine: compile a Plan and a model Graph into a program of CKKS operations and run
it on any :class:`~olafhe.core.contract.backend.Evaluator`.

Compilation
  1. Chains of linear nodes (conv + BN already folded, pooling, flatten, dense, shortcut subsample and
     channel padding) are fused into one sparse matrix each.
  2. Every materialized value gets a slot layout (:mod:`olafhe.core.compiler.layout`); layouts after strided
     layers are chosen among compact, gapped and multiplexed grids to minimize diagonals + rotations.
  3. Affine *encodings* are propagated backwards: a ciphertext holds ``alpha * value + beta``. An
     activation needs its input as ``t`` in [-1, 1] (the interval scaling), residual additions need
     equal ``alpha`` on both inputs; linear layers absorb any encoding into their matrix and bias and
     activations absorb it into their output coefficients, so the scaling costs no level.
  4. Each linear step is evaluated by the diagonal method with baby-step/giant-step and hoisted
     baby rotations; rotation keys are generated for exactly the offsets used.

Running: the client encrypts the encoded image at ``plan.input_level``; the server (evaluator only)
executes the steps, bootstrapping where the plan says and reducing each activation's input to its
``level_in`` (layerwise moduli chain); the client decrypts the logits.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from olafhe.core.compiler.layout import (
    BSGS,
    Diagonals,
    Layout,
    compact_layout,
    diagonals,
    grid_layout,
    inherit_layout,
    plan_bsgs,
    tile,
)
from olafhe.core.compiler.rotations import RotationChains, power_of_two_keys
from olafhe.core.contract.backend import Client, Evaluator, KeyRequest
from olafhe.core.errors import CapabilityError, OlafheError, ShapeError, UnsupportedLayerError
from olafhe.core.graph.ir import Graph, linear_operator
from olafhe.core.poly.approximation import Approximation

INDEX_OPS = ("subsample", "pad_channels", "flatten")


@dataclass(frozen=True)
class Encoding:
    alpha: float = 1.0
    beta: float = 0.0


@dataclass
class LinearStep:
    out: str
    input: str
    nodes: tuple[str, ...]
    matrix: sp.csr_matrix          # encodings already absorbed
    bias: np.ndarray               # in tensor-index space, encodings absorbed
    layout_in: Layout
    layout_out: Layout
    offsets: np.ndarray
    bsgs: BSGS
    _diag_cache: Diagonals | None = field(default=None, repr=False)

    kind = "linear"

    @property
    def diagonal_count(self) -> int:
        return int(self.offsets.size)

    def diagonals(self, cache: bool) -> Diagonals:
        if self._diag_cache is not None:
            return self._diag_cache
        diag = diagonals(self.matrix, self.layout_in, self.layout_out)
        if cache:
            self._diag_cache = diag
        return diag


@dataclass
class AddStep:
    out: str
    a: str
    b: str
    kind = "add"


@dataclass
class ActivationStep:
    out: str
    input: str
    approximation: Approximation
    stages: tuple[np.ndarray, ...]   # output encoding folded into the (last) stage
    output_beta: float               # relu-sign only: added after the final product
    bootstrap_before: bool
    level_in: int
    depth: int
    stage_bootstrap: tuple[bool, ...] = ()
    stage_level_in: tuple[int, ...] = ()
    kind = "activation"


Step = LinearStep | AddStep | ActivationStep


@dataclass
class Program:
    """A compiled plan: steps over named ciphertext values, layouts, and the keys they need."""

    graph_name: str
    steps: list[Step]
    slots: int
    input_name: str
    input_layout: Layout
    input_encoding: Encoding
    output_name: str
    output_layout: Layout
    input_level: int
    layouts: dict[str, Layout]
    cache_diagonals: bool = True
    max_rotation_keys: int = 0   # 0: a key per rotation amount; else power-of-two chains if more are needed

    @property
    def used_rotations(self) -> frozenset[int]:
        out: set[int] = set()
        for step in self.steps:
            if isinstance(step, LinearStep):
                out |= {r % self.slots for r in step.bsgs.rotations if r % self.slots}
        return frozenset(out)

    @property
    def chains(self) -> RotationChains | None:
        """Power-of-two rotation chains when a key per amount would exceed ``max_rotation_keys``."""
        if self.max_rotation_keys and len(self.used_rotations) > self.max_rotation_keys:
            return RotationChains(self.slots)
        return None

    @property
    def rotations(self) -> frozenset[int]:
        """Rotation keys to generate."""
        used = self.used_rotations
        return power_of_two_keys(used, self.slots) if self.chains else used

    @property
    def bootstraps(self) -> int:
        return sum(int(s.bootstrap_before) + sum(1 for b in s.stage_bootstrap[1:] if b)
                   for s in self.steps if isinstance(s, ActivationStep))

    def key_request(self) -> KeyRequest:
        return KeyRequest(rotations=self.rotations, bootstrap=self.bootstraps > 0)

    def linear_report(self) -> list[dict]:
        """Per linear step: fused nodes, layouts, diagonals and rotations (they drive the cost)."""
        rows = []
        for s in self.steps:
            if isinstance(s, LinearStep):
                rows.append({
                    "name": s.out, "nodes": list(s.nodes), "layout_in": s.layout_in.kind,
                    "layout_out": s.layout_out.kind, "diagonals": s.diagonal_count,
                    "baby_rotations": sum(1 for b in s.bsgs.babies if b),
                    "giant_rotations": sum(1 for g in s.bsgs.giants if g), "baby_step": s.bsgs.baby_step,
                })
        return rows

    # ----------------------------------------------------------------- client-side encoding
    def encode_input(self, image: np.ndarray) -> np.ndarray:
        """Slot vector the client encrypts for one image (C, H, W), encoding and replication applied."""
        x = np.asarray(image, dtype=np.float64).ravel()
        if x.size != len(self.input_layout):
            raise ShapeError(f"model input has {len(self.input_layout)} values, got an image with {x.size}")
        vec = np.zeros(self.input_layout.period)
        vec[self.input_layout.slots] = self.input_encoding.alpha * x + self.input_encoding.beta
        return tile(vec, self.slots)

    def decode_output(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(slots, dtype=np.float64)[self.output_layout.slots]


# ------------------------------------------------------------------------------------------------
# Compilation
# ------------------------------------------------------------------------------------------------


def _fuse_linear(graph: Graph) -> tuple[dict[str, tuple[str, list[str]]], set[str]]:
    """Map each materialized linear value to (its input value, fused node names)."""
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph.nodes:
        for i in n.inputs:
            consumers[i].append(n.name)
    chains: dict[str, tuple[str, list[str]]] = {}
    materialized = {graph.input.name}
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.is_linear:
            src = node.inputs[0]
            # fuse only through pure index maps (subsample, channel padding, flatten): fusing two
            # dense maps (e.g. average pooling into the classifier) multiplies their diagonals
            index_only = src in chains and all(graph[n].op in INDEX_OPS for n in chains[src][1])
            fusable = node.op in INDEX_OPS or index_only
            if fusable and src in chains and len(consumers[src]) == 1 and src != graph.output:
                start, names = chains.pop(src)
                materialized.discard(src)
                chains[node.name] = (start, names + [node.name])
            else:
                chains[node.name] = (src, [node.name])
        materialized.add(node.name)
    return chains, materialized


def _chain_operator(graph: Graph, start: str, names: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    shape = graph[start].shape
    matrix: sp.csr_matrix | None = None
    bias: np.ndarray | None = None
    for name in names:
        m, b = linear_operator(graph[name], shape)
        matrix = m if matrix is None else (m @ matrix).tocsr()
        bias = b if bias is None else m @ bias + b
        shape = graph[name].shape
    assert matrix is not None and bias is not None
    return matrix, bias


def _layout_candidates(shape: tuple[int, ...], base_hw: tuple[int, int], gap: int) -> list[Layout]:
    """Compact, gapped and multiplexed-gapped layouts for one tensor shape (duplicates removed)."""
    out = [compact_layout(int(np.prod(shape)))]
    if len(shape) == 3:
        c = shape[0]
        for g, m in ((gap, 1), (gap, min(gap * gap, c))):
            lay = grid_layout(shape, base_hw, g, m)  # type: ignore[arg-type]
            if lay is not None and all(not np.array_equal(lay.slots, o.slots) for o in out):
                out.append(lay)
    return out


def _gap_of(graph: Graph) -> dict[str, int]:
    """Cumulative spatial stride (gap on the input grid) of every node."""
    gaps: dict[str, int] = {}
    h0 = graph.input_shape[1] if len(graph.input_shape) == 3 else 1
    for node in graph.nodes:
        if len(node.shape) == 3 and node.shape[1] > 0:
            gaps[node.name] = max(1, h0 // node.shape[1])
        else:
            gaps[node.name] = 1
    return gaps


def compile_program(
    graph: Graph,
    layers: dict[str, Any],
    slots: int,
    input_level: int,
    cache_diagonals: bool = True,
    layouts: dict[str, Layout] | None = None,
    max_rotation_keys: int = 0,
) -> Program:
    """Compile ``graph`` with per-activation entries ``layers[name]`` (PlanLayer-like objects with
    ``approximation``, ``bootstrap_before``, ``level_in``, ``depth``) for ``slots`` slots."""
    acts = graph.activations()
    missing = [a.name for a in acts if a.name not in layers]
    if missing:
        raise OlafheError(f"plan has no entry for activation layer(s): {', '.join(missing)}")
    chains, materialized = _fuse_linear(graph)
    base_hw = tuple(graph.input_shape[1:3]) if len(graph.input_shape) == 3 else (1, 1)
    gaps = _gap_of(graph)
    operators = {name: _chain_operator(graph, start, names) for name, (start, names) in chains.items()}

    # value -> source value for layout inheritance (add / activation keep their input's layout)
    def src_of(name: str) -> str:
        node = graph[name]
        return node.inputs[0]

    # ---- layouts: greedy per distinct (shape, gap) class, in topological order
    chosen: dict[tuple, Layout] = {}
    value_layout: dict[str, Layout] = dict(layouts or {})
    order = [n.name for n in graph.nodes if n.name in materialized]

    def shape_key(name: str) -> tuple:
        return (tuple(graph[name].shape), gaps[name])

    for name in order:
        node = graph[name]
        if name in value_layout:
            continue
        if node.op == "input":
            value_layout[name] = grid_layout(node.shape, base_hw, 1, 1) if len(node.shape) == 3 \
                else compact_layout(int(np.prod(node.shape)))  # type: ignore[arg-type]
        elif node.op in ("activation", "add"):
            value_layout[name] = value_layout[node.inputs[0]]
        else:
            key = shape_key(name)
            if key not in chosen:
                start = chains[name][0]
                cands = _layout_candidates(node.shape, base_hw, gaps[name])
                inherited = inherit_layout(value_layout[start], graph[start].shape, node.shape)
                if inherited is not None:
                    cands.append(inherited)
                # a layout smaller than its input's period would force computing every replica inside
                # the input period; the same layout kept at the input's period avoids that
                p_in = value_layout[start].period
                cands += [Layout(c.slots, c.kind + "@P", p_in) for c in cands if c.period < p_in]
                cands = [c for c in cands if c.period <= slots]
                if not cands:
                    raise CapabilityError(f"tensor {name!r} of shape {node.shape} does not fit in {slots} slots")
                peers = [n for n in order if n in chains and shape_key(n) == key]
                chosen[key] = _pick_layout(cands, peers, chains, operators, value_layout, graph, shape_key, key)
            value_layout[name] = chosen[key]
    for name, node in ((n.name, n) for n in graph.nodes if n.op == "add"):
        a, b = (value_layout[i] for i in node.inputs)
        if not np.array_equal(a.slots, b.slots):
            raise UnsupportedLayerError(f"residual add {name!r} joins tensors in different slot layouts")

    # ---- encodings, backwards
    req: dict[str, Encoding] = {}

    def demand(value: str, enc: Encoding, by: str) -> None:
        old = req.get(value)
        if old is not None and (abs(old.alpha - enc.alpha) > 1e-12 * abs(enc.alpha)
                                or abs(old.beta - enc.beta) > 1e-12 * max(1.0, abs(enc.beta))):
            raise UnsupportedLayerError(
                f"value {value!r} is needed with two different scalings (by {by!r} and another "
                "consumer); olafhe folds interval scaling into producers and cannot serve both"
            )
        req[value] = enc

    for node in reversed(graph.nodes):
        if node.name not in materialized and node.op != "input":
            continue
        if node.op == "activation":
            a, b = layers[node.name].approximation.interval
            demand(node.inputs[0], Encoding(2.0 / (b - a), -(a + b) / (b - a)), node.name)
        elif node.op == "add":
            enc = req.get(node.name, Encoding())
            demand(node.inputs[0], Encoding(enc.alpha, enc.beta), node.name)
            demand(node.inputs[1], Encoding(enc.alpha, 0.0), node.name)
    enc_of = {name: req.get(name, Encoding()) for name in order}

    # ---- steps
    steps: list[Step] = []
    for name in order:
        node = graph[name]
        if node.op == "input":
            continue
        if node.op == "add":
            steps.append(AddStep(name, node.inputs[0], node.inputs[1]))
        elif node.op == "activation":
            steps.append(_activation_step(name, node.inputs[0], layers[name], enc_of[name]))
        else:
            start, names = chains[name]
            m, bias = operators[name]
            e_in, e_out = enc_of[start], enc_of[name]
            scale = e_out.alpha / e_in.alpha
            row_sums = np.asarray(m.sum(axis=1)).ravel()
            matrix = (m * scale).tocsr()
            bias_enc = e_out.alpha * (bias - row_sums * e_in.beta / e_in.alpha) + e_out.beta
            lay_in, lay_out = value_layout[start], value_layout[name]
            offs = diagonals(matrix, lay_in, lay_out, with_values=False).offsets
            steps.append(LinearStep(name, start, tuple(names), matrix, bias_enc, lay_in, lay_out, offs,
                                    plan_bsgs(offs, lay_in.period)))
    return Program(
        graph_name=graph.name, steps=steps, slots=slots, input_name=graph.input.name,
        input_layout=value_layout[graph.input.name], input_encoding=enc_of[graph.input.name],
        output_name=graph.output, output_layout=value_layout[graph.output], input_level=input_level,
        layouts=value_layout, cache_diagonals=cache_diagonals, max_rotation_keys=max_rotation_keys,
    )


def _pick_layout(cands: list[Layout], peers: list[str], chains: dict, operators: dict, known: dict[str, Layout],
                 graph: Graph, shape_key: Callable[[str], tuple], key: tuple) -> Layout:
    """Choose the candidate minimizing diagonals + rotations over every linear step producing this
    shape class (the strided step that enters it and the stride-1 steps inside it)."""
    if len(cands) == 1:
        return cands[0]
    best, best_cost = cands[0], float("inf")
    for cand in cands:
        cost = 0.0
        for peer in peers:
            start = chains[peer][0]
            lay_in = cand if shape_key(start) == key else known.get(start)
            if lay_in is None:
                continue
            offs = diagonals(operators[peer][0], lay_in, cand, with_values=False).offsets
            cost += offs.size + plan_bsgs(offs, lay_in.period).rotation_count
        if cost < best_cost:
            best, best_cost = cand, cost
    return best


def _activation_step(name: str, src: str, layer: Any, enc: Encoding) -> ActivationStep:
    approx: Approximation = layer.approximation
    stages = [np.array(s, dtype=np.float64) for s in approx.stages]
    beta_after = 0.0
    if approx.form == "plain":
        stages[0] = stages[0] * enc.alpha
        stages[0][0] += enc.beta
    else:
        kappa = enc.alpha * approx.interval[1] / 2.0
        stages[-1] = stages[-1] * kappa
        stages[-1][0] += kappa
        beta_after = enc.beta
    return ActivationStep(name, src, approx, tuple(stages), beta_after, bool(layer.bootstrap_before),
                          int(layer.level_in), int(layer.depth), tuple(getattr(layer, "stage_bootstrap", ())),
                          tuple(getattr(layer, "stage_level_in", ())))


# ------------------------------------------------------------------------------------------------
# Execution
# ------------------------------------------------------------------------------------------------


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
    caps = evaluator.capabilities
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
            if step.bootstrap_before:
                tb = time.perf_counter()
                x = evaluator.bootstrap(x)
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
            values[step.out] = apply_activation(step, evaluator, x, inner)
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
    """Diagonal method with baby-step/giant-step: y = sum_g rot(sum_b rot(D_{g+b}, -g) * rot(x, b), g)."""
    diag = step.diagonals(program.cache_diagonals)
    index = {int(k): i for i, k in enumerate(diag.offsets)}
    chains = program.chains
    x = ev.settle(x)  # one pending rescale now, not one per rotated copy and product
    if chains is None:
        rotated = ev.rotate_hoisted(x, list(step.bsgs.babies))
    else:
        rotated = chains.rotate_many(ev, x, step.bsgs.babies)
    total = None
    for g in step.bsgs.giants:
        cts, vecs = [], []
        for b in step.bsgs.babies:
            i = index.get(g + b)
            if i is not None:
                cts.append(rotated[b])
                vecs.append(tile(np.roll(diag.values[i], g), program.slots))
        if not cts:
            continue
        inner = ev.multiply_plain_sum(cts, vecs)
        if g:
            inner = ev.rotate(inner, g) if chains is None else chains.rotate(ev, inner, g)
        total = inner if total is None else ev.add(total, inner)
    if total is None:  # an all-zero matrix: still consume the level the plan accounts for
        total = ev.multiply_scalar(x, 0.0)
    bias = np.zeros(step.layout_out.period)
    bias[step.layout_out.slots] = step.bias
    if np.any(bias):
        total = ev.add_plain(total, tile(bias, program.slots))
    return total


def apply_activation(step: ActivationStep, ev: Evaluator, t: Any, timings: dict[str, float] | None = None) -> Any:
    """One activation: a Chebyshev series, or a composite's stages with the bootstraps the plan puts
    between and after them (their seconds are added to ``timings["bootstrap"]`` when given)."""
    if step.approximation.form == "plain":
        return ev.chebyshev(t, step.stages[0])

    def bootstrap(value: Any) -> Any:
        t0 = time.perf_counter()
        value = ev.bootstrap(value)
        if timings is not None:
            timings["bootstrap"] = timings.get("bootstrap", 0.0) + time.perf_counter() - t0
        return value

    s = t
    for j, coeffs in enumerate(step.stages):
        if j and step.stage_bootstrap and step.stage_bootstrap[j]:
            s = bootstrap(s)
        if j and step.stage_level_in and ev.level(s) > step.stage_level_in[j]:
            s = ev.level_reduce(s, step.stage_level_in[j])
        s = ev.chebyshev(s, coeffs)
    out = ev.multiply(t, s)
    if step.output_beta:
        out = ev.add_scalar(out, step.output_beta)
    k = len(step.stages)
    if len(step.stage_bootstrap) > k and step.stage_bootstrap[k]:
        out = bootstrap(out)
    if len(step.stage_level_in) > k and ev.level(out) > step.stage_level_in[k]:
        out = ev.level_reduce(out, step.stage_level_in[k])
    return out


def encrypted_inference(program: Program, client: Client, evaluator: Evaluator, image: np.ndarray,
                        progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, RunReport]:
    """Encrypt one image on the client, run the program on the server, decrypt the logits."""
    ct = client.encrypt(program.encode_input(image), level=program.input_level)
    out, report = run_program(program, evaluator, ct, progress)
    return program.decode_output(client.decrypt(out)), report
