"""Compile a Plan and a model Graph into a :class:`~olafhe.core.compiler.program.Program` of CKKS steps.

1. Chains of linear nodes (conv + BN already folded, pooling, flatten, dense, shortcut subsample and
   channel padding) are fused into one sparse matrix each.
2. Every materialized value gets a slot layout (:mod:`olafhe.core.compiler.layout`); layouts after strided
   layers are chosen among compact, gapped and multiplexed grids to minimize diagonals + rotations.
3. Affine *encodings* are propagated backwards: a ciphertext holds ``alpha * value + beta``. An
   activation needs its input as ``t`` in [-1, 1] (the interval scaling), residual additions need
   equal ``alpha`` on both inputs; linear layers absorb any encoding into their matrix and bias and
   activations absorb it into their output coefficients, so the scaling costs no level.
4. Each linear step gets its diagonal offsets and baby-step/giant-step split; rotation keys are
   generated for exactly the offsets used.

Without layers (``layers=None``) only the linear structure is compiled: what the planner prices before
any approximation is chosen. Its linear steps have the same layouts, diagonals and rotations as with any
plan (encodings scale matrices, never change their sparsity), and the program cannot run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from olafhe.core.compiler.layout import (
    Layout,
    compact_layout,
    diagonals,
    grid_layout,
    inherit_layout,
    plan_bsgs,
    replica_sum_steps,
)
from olafhe.core.compiler.multiplex import choose_rotated_copies
from olafhe.core.compiler.presum import anchor_matrix, pools_into_dense, pools_uniformly, presum_steps
from olafhe.core.compiler.program import ActivationStep, AddStep, Encoding, LinearStep, Program, Step
from olafhe.core.errors import CapabilityError, OlafheError, UnsupportedLayerError
from olafhe.core.graph.ir import Graph, linear_operator

INDEX_OPS = ("subsample", "pad_channels", "flatten")

Chains = dict[str, tuple[str, list[str]]]            # linear value -> (input value, fused node names)
Operators = dict[str, tuple[sp.csr_matrix, np.ndarray]]  # linear value -> (matrix, bias), unencoded


def compile_program(
    graph: Graph,
    layers: Mapping[str, Any] | None,
    slots: int,
    input_level: int,
    cache_diagonals: bool = True,
    layouts: dict[str, Layout] | None = None,
    max_rotation_keys: int = 0,
    multiplex: bool = True,
) -> Program:
    """Compile ``graph`` with per-activation entries ``layers[name]`` (PlanLayer-like objects with
    ``approximation``, ``bootstrap_before``, ``level_in``, ``depth``) for ``slots`` slots.

    ``layers=None`` compiles the linear structure only (activations of depth 0 without bootstraps,
    no interval scaling): the program the planner prices, which :func:`run_program` refuses to run.
    ``multiplex``: hold values between two linear steps in rotated copies where that needs fewer
    products and rotations (:mod:`~olafhe.core.compiler.multiplex`).
    """
    if layers is not None:
        missing = [a.name for a in graph.activations() if a.name not in layers]
        if missing:
            raise OlafheError(f"plan has no entry for activation layer(s): {', '.join(missing)}")
    chains, materialized = _fuse_linear(graph)
    operators = {name: _chain_operator(graph, start, names) for name, (start, names) in chains.items()}
    pooled = {name: graph[start].shape for name, (start, names) in chains.items()
              if len(names) > 1 and pools_into_dense(graph, names[:-1])}
    # layouts are chosen for the matrices that run: a pooled classifier reads channel sums at their anchors
    picking = {n: (anchor_matrix(m, pooled[n]), b) if n in pooled else (m, b) for n, (m, b) in operators.items()}
    order = [n.name for n in graph.nodes if n.name in materialized]
    value_layout = _assign_layouts(graph, chains, picking, order, slots, layouts)
    if multiplex and layouts is None:
        value_layout = choose_rotated_copies(graph, chains, picking, value_layout, slots)
    enc_of = _encodings(graph, layers, materialized, order)
    steps = _steps(graph, order, layers, chains, operators, enc_of, value_layout, pooled)
    return Program(
        graph_name=graph.name, steps=steps, slots=slots, input_name=graph.input.name,
        input_layout=value_layout[graph.input.name], input_encoding=enc_of[graph.input.name],
        output_name=graph.output, output_layout=value_layout[graph.output], input_level=input_level,
        layouts=value_layout, cache_diagonals=cache_diagonals, max_rotation_keys=max_rotation_keys,
        linear_only=layers is None,
    )


# ------------------------------------------------------------------------------------------------
# 1. fusion
# ------------------------------------------------------------------------------------------------


def _fuse_linear(graph: Graph) -> tuple[Chains, set[str]]:
    """Map each materialized linear value to (its input value, fused node names)."""
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph.nodes:
        for i in n.inputs:
            consumers[i].append(n.name)
    chains: Chains = {}
    materialized = {graph.input.name}
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.is_linear:
            src = node.inputs[0]
            # fuse only through pure index maps (subsample, channel padding, flatten): fusing two
            # dense maps (e.g. average pooling into the classifier) multiplies their diagonals
            index_only = src in chains and all(graph[n].op in INDEX_OPS for n in chains[src][1])
            # ... except global pooling into a dense layer: rotate-and-sum pools without a level (presum.py)
            pooled = node.op == "dense" and src in chains and pools_into_dense(graph, chains[src][1])
            fusable = node.op in INDEX_OPS or index_only or pooled
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


# ------------------------------------------------------------------------------------------------
# 2. layouts
# ------------------------------------------------------------------------------------------------


def _assign_layouts(graph: Graph, chains: Chains, operators: Operators, order: list[str], slots: int,
                    given: dict[str, Layout] | None) -> dict[str, Layout]:
    """A slot layout for every materialized value (``given`` ones kept): greedy per distinct
    (shape, gap) class in topological order; adds and activations keep their input's layout."""
    base_hw = tuple(graph.input_shape[1:3]) if len(graph.input_shape) == 3 else (1, 1)
    gaps = _gap_of(graph)

    def shape_key(name: str) -> tuple:
        return (tuple(graph[name].shape), gaps[name])

    chosen: dict[tuple, Layout] = {}
    value_layout: dict[str, Layout] = dict(given or {})
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
                cands = _layout_candidates(graph, name, chains[name][0], value_layout, base_hw, gaps[name], slots)
                peers = [n for n in order if n in chains and shape_key(n) == key]
                chosen[key] = _pick_layout(cands, peers, chains, operators, value_layout, shape_key, key)
            value_layout[name] = chosen[key]
    for name, node in ((n.name, n) for n in graph.nodes if n.op == "add"):
        a, b = (value_layout[i] for i in node.inputs)
        if not a.same_slots(b):
            raise UnsupportedLayerError(f"residual add {name!r} joins tensors in different slot layouts")
    return value_layout


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


def _grid_candidates(shape: tuple[int, ...], base_hw: tuple[int, int], gap: int) -> list[Layout]:
    """Compact, gapped and multiplexed-gapped layouts for one tensor shape (duplicates removed)."""
    out = [compact_layout(int(np.prod(shape)))]
    if len(shape) == 3:
        c = shape[0]
        for g, m in ((gap, 1), (gap, min(gap * gap, c))):
            lay = grid_layout(shape, base_hw, g, m)  # type: ignore[arg-type]
            if lay is not None and all(not np.array_equal(lay.slots, o.slots) for o in out):
                out.append(lay)
    return out


def _layout_candidates(graph: Graph, name: str, start: str, known: dict[str, Layout], base_hw: tuple,
                       gap: int, slots: int) -> list[Layout]:
    """Layouts that fit ``slots`` for linear value ``name`` computed from ``start``: the grid ones, the
    input's layout carried through, and each of them kept at the input's period."""
    shape = graph[name].shape
    cands = _grid_candidates(shape, base_hw, gap)
    inherited = inherit_layout(known[start], graph[start].shape, shape)
    if inherited is not None:
        cands.append(inherited)
    # a layout smaller than its input's period would force computing every replica inside
    # the input period; the same layout kept at the input's period avoids that
    p_in = known[start].period
    cands += [Layout(c.slots, c.kind + "@P", p_in) for c in cands if c.period < p_in]
    cands = [c for c in cands if c.period <= slots]
    if not cands:
        raise CapabilityError(f"tensor {name!r} of shape {shape} does not fit in {slots} slots")
    return cands


def _pick_layout(cands: list[Layout], peers: list[str], chains: Chains, operators: Operators,
                 known: dict[str, Layout], shape_key: Callable[[str], tuple], key: tuple) -> Layout:
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


# ------------------------------------------------------------------------------------------------
# 3. encodings
# ------------------------------------------------------------------------------------------------


def _encodings(graph: Graph, layers: Mapping[str, Any] | None, materialized: set[str],
               order: list[str]) -> dict[str, Encoding]:
    """The encoding every materialized value is held in, propagated backwards from the activations'
    intervals (none without layers) through residual additions; an activation bootstrapped right after
    (a composite's trailing bootstrap) that no addition constrains is held divided by its interval's bound."""
    req: dict[str, Encoding] = {}
    for node in reversed(graph.nodes):
        if node.name not in materialized and node.op != "input":
            continue
        if node.op == "activation" and layers is not None:
            layer = layers[node.name]
            a, b = layer.approximation.interval
            _demand(req, node.inputs[0], Encoding(2.0 / (b - a), -(a + b) / (b - a)), node.name)
            after = tuple(getattr(layer, "stage_bootstrap", ()))[len(layer.approximation.stages):]
            if node.name not in req and any(after):  # bootstrapped right away: keep it in the bootstrap's range
                req[node.name] = Encoding(1.0 / max(abs(a), abs(b)), 0.0)
        elif node.op == "add":
            enc = req.get(node.name, Encoding())
            _demand(req, node.inputs[0], Encoding(enc.alpha, enc.beta), node.name)
            _demand(req, node.inputs[1], Encoding(enc.alpha, 0.0), node.name)
    return {name: req.get(name, Encoding()) for name in order}


def _demand(req: dict[str, Encoding], value: str, enc: Encoding, by: str) -> None:
    """Record that ``by`` needs ``value`` in encoding ``enc``; refuse two different ones."""
    old = req.get(value)
    if old is not None and (abs(old.alpha - enc.alpha) > 1e-12 * abs(enc.alpha)
                            or abs(old.beta - enc.beta) > 1e-12 * max(1.0, abs(enc.beta))):
        raise UnsupportedLayerError(
            f"value {value!r} is needed with two different scalings (by {by!r} and another "
            "consumer); olafhe folds interval scaling into producers and cannot serve both"
        )
    req[value] = enc


# ------------------------------------------------------------------------------------------------
# 4. steps
# ------------------------------------------------------------------------------------------------


def _steps(graph: Graph, order: list[str], layers: Mapping[str, Any] | None, chains: Chains,
           operators: Operators, enc_of: dict[str, Encoding], value_layout: dict[str, Layout],
           pooled: dict[str, tuple[int, ...]]) -> list[Step]:
    steps: list[Step] = []
    for name in order:
        node = graph[name]
        if node.op == "input":
            continue
        if node.op == "add":
            steps.append(AddStep(name, node.inputs[0], node.inputs[1]))
        elif node.op == "activation":
            layer = None if layers is None else layers[name]
            steps.append(_activation_step(name, node.inputs[0], layer, enc_of[name]))
        else:
            steps.append(_linear_step(name, chains[name], operators[name], enc_of, value_layout, pooled.get(name)))
    return steps


def _linear_step(name: str, chain: tuple[str, list[str]], operator: tuple[sp.csr_matrix, np.ndarray],
                 enc_of: dict[str, Encoding], value_layout: dict[str, Layout],
                 pooled: tuple[int, ...] | None = None) -> LinearStep:
    """The fused operator with its input's and output's encodings absorbed, and its BSGS plan; a global
    pooling into a dense layer (``pooled``: the pooled tensor's shape) reads channel sums made by
    rotate-and-add where the input layout allows (:mod:`~olafhe.core.compiler.presum`)."""
    start, names = chain
    m, bias = operator
    e_in, e_out = enc_of[start], enc_of[name]
    scale = e_out.alpha / e_in.alpha
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    matrix = (m * scale).tocsr()
    bias_enc = e_out.alpha * (bias - row_sums * e_in.beta / e_in.alpha) + e_out.beta
    lay_in, lay_out = value_layout[start], value_layout[name]
    presum = None
    if pooled is not None and len(pooled) == 3 and pools_uniformly(matrix, pooled):  # type: ignore[arg-type]
        presum = presum_steps(lay_in, pooled)  # type: ignore[arg-type]
    if presum is not None:
        matrix = anchor_matrix(matrix, pooled)  # type: ignore[arg-type]
    offs = diagonals(matrix, lay_in, lay_out, with_values=False).offsets
    return LinearStep(name, start, tuple(names), matrix, bias_enc, lay_in, lay_out, offs,
                      plan_bsgs(offs, lay_in.period), presum=presum or (),
                      postsum=replica_sum_steps(lay_in, lay_out))


def _activation_step(name: str, src: str, layer: Any, enc: Encoding) -> ActivationStep:
    """The plan's approximation with the output encoding folded into its (last) stage; without a
    layer, a depth-0 placeholder that only marks where the activation sits."""
    if layer is None:
        return ActivationStep(name, src, None, (), 0.0, False, 0, 0)
    approx = layer.approximation
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
