"""Global average pooling folded into the classifier by rotate-and-sum (one level instead of two)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.layout import grid_layout
from olafhe.core.compiler.presum import anchor_matrix, pools_uniformly, presum_steps
from olafhe.core.compiler.program import LinearStep

SHAPE = (16, 8, 8)


def _pool_then_dense(rng: np.random.Generator) -> sp.csr_matrix:
    """10 x (16*8*8): the classifier after a global average pooling, as one matrix."""
    c, h, w = SHAPE
    weights = rng.normal(size=(10, c))
    return sp.csr_matrix(np.repeat(weights / (h * w), h * w, axis=1))


def test_rotate_and_add_leaves_each_channels_sum_at_its_anchor() -> None:
    layout = grid_layout(SHAPE, (32, 32), 2, 4)
    assert layout is not None
    steps = presum_steps(layout, SHAPE)
    assert steps is not None and len(steps) == 6          # log2(8) + log2(8)
    rng = np.random.default_rng(1)
    x = rng.normal(size=SHAPE)
    period = layout.period
    v = np.zeros(period)
    v[layout.slots] = x.ravel()
    v = np.tile(v, 4)                                    # replicated, as ciphertexts hold data
    for s in steps:
        v = v + np.roll(v, -s)                            # rotate left by s, add
    anchors = layout.slots.reshape(SHAPE)[:, 0, 0]
    np.testing.assert_allclose(v[anchors], x.sum(axis=(1, 2)), rtol=1e-12)
    m = _pool_then_dense(rng)
    reduced = anchor_matrix(m, SHAPE)
    at_anchors = np.zeros(x.size)
    at_anchors[::64] = x.sum(axis=(1, 2))
    np.testing.assert_allclose(reduced @ at_anchors, m @ x.ravel(), rtol=1e-12)
    assert reduced.nnz == 10 * 16


def test_presum_refuses_what_it_cannot_sum() -> None:
    rng = np.random.default_rng(2)
    m = _pool_then_dense(rng)
    assert pools_uniformly(m, SHAPE)
    skewed = m.toarray()
    skewed[0, 1] *= 2
    assert not pools_uniformly(sp.csr_matrix(skewed), SHAPE)
    layout = grid_layout(SHAPE, (32, 32), 2, 4)
    shuffled = type(layout)(rng.permutation(layout.slots), "shuffled")
    assert presum_steps(shuffled, SHAPE) is None          # channels not placed alike: no rotate-and-add


def test_resnet_pooling_and_classifier_take_one_level(resnet20_graph) -> None:  # noqa: ANN001
    program = compile_program(resnet20_graph, None, 16384, input_level=6)
    last = program.steps[-1]
    assert isinstance(last, LinearStep)
    assert last.nodes == ("avgpool2d", "flatten", "linear") and len(last.presum) == 6
    assert last.diagonal_count <= 64 * 10                 # anchors only, not every position
    assert set(last.presum) <= program.rotations
    # nothing but the classifier step after the last activation: the activation may use every other level
    tail = program.steps[[s.kind for s in program.steps].index("activation", len(program.steps) - 3):]
    assert [s.kind for s in tail] == ["activation", "linear"]
