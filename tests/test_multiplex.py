"""Rotated copies (multiplexed convolutions): same results as replicated layouts, fewer products."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.polynomial import chebyshev as C

from olafhe.backends.simulator import SimulatorBackend
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.layout import Layout, diagonals, grid_layout, replica_sum_steps, tile
from olafhe.core.compiler.multiplex import rotated_copies
from olafhe.core.compiler.program import LinearStep, Program
from olafhe.core.compiler.runtime import encrypted_inference, run_program
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.graph.ir import Graph, Node
from olafhe.core.planning.costs import load_cost_table
from olafhe.core.planning.plan import PlanLayer
from olafhe.core.planning.planner import linear_step_seconds
from olafhe.core.poly.approximation import Approximation

SHAPE = (64, 8, 8)   # ResNet stage 3: 64 channels of 8 x 8 at gap 4 on a 32 x 32 grid, 16 per 1024-slot block
SLOTS = 16384


def _conv_matrix(rng: np.random.Generator, channels: int, hw: int) -> sp.csr_matrix:
    """A 3 x 3, stride-1, zero-padded convolution as a sparse matrix (channels x hw x hw on both sides)."""
    w = rng.normal(size=(channels, channels, 3, 3))
    total = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shift = sp.kron(sp.eye(hw, k=dy), sp.eye(hw, k=dx))  # reads (y + dy, x + dx), zero outside
            term = sp.kron(sp.csr_matrix(w[:, :, dy + 1, dx + 1]), shift)
            total = term if total is None else total + term
    return sp.csr_matrix(total)


def _diagonal_method(matrix: sp.csr_matrix, lay_in: Layout, lay_out: Layout, x_slots: np.ndarray) -> np.ndarray:
    """``sum_k D_k * rot(x, k)`` then the replica sum, in numpy (rotation = np.roll to the left)."""
    diag = diagonals(matrix, lay_in, lay_out)
    y = np.zeros(x_slots.size)
    for k, d in zip(diag.offsets, diag.values, strict=True):
        y += tile(d, x_slots.size) * np.roll(x_slots, -int(k))
    for s in replica_sum_steps(lay_in, lay_out):
        y = y + np.roll(y, -s)
    return y


def test_rotated_copies_hold_the_data_rotated_by_a_block_each() -> None:
    base = grid_layout(SHAPE, (32, 32), 4, 16)
    mux = rotated_copies(base, SLOTS)
    assert (mux.copies, mux.base_period, mux.period, mux.shift) == (4, 4096, 16384, 1024)
    x = np.random.default_rng(0).normal(size=len(base))
    vec, copy0 = mux.scatter(x), base.scatter(x)
    for j in range(4):
        np.testing.assert_array_equal(vec[j * 4096:(j + 1) * 4096], np.roll(copy0, -j * 1024))
    assert rotated_copies(mux, SLOTS) is None and rotated_copies(base, 4096) is None
    assert not mux.same_slots(base) and mux.same_slots(rotated_copies(base, SLOTS))


def test_both_directions_compute_the_matrix_with_a_quarter_of_the_products_reading_copies() -> None:
    rng = np.random.default_rng(1)
    m = _conv_matrix(rng, 64, 8)
    rep = grid_layout(SHAPE, (32, 32), 4, 16)
    mux = rotated_copies(rep, SLOTS)
    x = rng.normal(size=m.shape[1])
    y = m @ x
    # replicated in, rotated copies out: every copy computed, as many diagonals as replicated -> replicated
    np.testing.assert_allclose(_diagonal_method(m, rep, mux, tile(rep.scatter(x), SLOTS)), mux.scatter(y),
                               atol=1e-10)
    # rotated copies in, replicated out: partial sums per copy, then log2(4) rotate-and-adds
    np.testing.assert_allclose(_diagonal_method(m, mux, rep, mux.scatter(x)), tile(rep.scatter(y), SLOTS),
                               atol=1e-10)
    plain = len(diagonals(m, rep, rep, with_values=False))
    assert len(diagonals(m, rep, mux, with_values=False)) == plain
    assert len(diagonals(m, mux, rep, with_values=False)) * 4 <= plain + 4
    assert replica_sum_steps(mux, rep) == (4096, 8192) and replica_sum_steps(rep, mux) == ()
    with pytest.raises(ValueError, match="both read and write"):
        diagonals(m, mux, mux, with_values=False)
    with pytest.raises(ValueError, match="output period of 4096"):
        diagonals(m, mux, Layout(rep.slots, "wider", 8192), with_values=False)


def test_resnet20_stages_two_and_three_read_rotated_copies(resnet20_graph: Graph) -> None:
    plain = compile_program(resnet20_graph, None, 16384, input_level=6, multiplex=False)
    mux = compile_program(resnet20_graph, None, 16384, input_level=6)
    steps = {s.out: s for s in mux.steps if isinstance(s, LinearStep)}
    before = {s.out: s for s in plain.steps if isinstance(s, LinearStep)}
    for name, copies in (("layer2.1.conv2", 2), ("layer3.1.conv2", 4)):
        s = steps[name]
        assert s.layout_in.copies == copies and s.layout_out.copies == 1 and len(s.postsum) == copies.bit_length() - 1
        assert s.diagonal_count * copies == before[name].diagonal_count
        conv1 = steps[name.replace("conv2", "conv1")]
        assert conv1.layout_out.copies == copies and conv1.diagonal_count == before[conv1.out].diagonal_count
    assert steps["layer1.1.conv2"].layout_in.copies == 1                       # full tensors: nothing idle
    total = sum(s.diagonal_count for s in steps.values())
    assert total < 0.7 * sum(s.diagonal_count for s in before.values())
    assert {1 << 12, 1 << 13} <= mux.used_rotations
    costs = load_cost_table("openfhe", 65536)
    assert sum(linear_step_seconds(s, costs, 5) for s in steps.values()) \
        < 0.8 * sum(linear_step_seconds(s, costs, 5) for s in before.values())


# ------------------------------------------------------------------------------------------------ a residual block
def _block_graph(seed: int = 0) -> Graph:
    """input (8, 4, 4) -> conv -> act -> conv + input -> act -> pool -> dense: one residual block."""
    rng = np.random.default_rng(seed)
    conv = dict(stride=(1, 1), padding=(1, 1))
    nodes = [
        Node("x", "input", (), (8, 4, 4)),
        Node("c1", "conv2d", ("x",), (8, 4, 4), dict(weight=rng.normal(0, 0.25, (8, 8, 3, 3)),
             bias=rng.normal(0, 0.1, 8), **conv)),
        Node("a1", "activation", ("c1",), (8, 4, 4), dict(kind="relu")),
        Node("c2", "conv2d", ("a1",), (8, 4, 4), dict(weight=rng.normal(0, 0.25, (8, 8, 3, 3)),
             bias=rng.normal(0, 0.1, 8), **conv)),
        Node("add", "add", ("c2", "x"), (8, 4, 4)),
        Node("a2", "activation", ("add",), (8, 4, 4), dict(kind="relu")),
        Node("pool", "avgpool2d", ("a2",), (8, 1, 1), dict(kernel=(4, 4), stride=(4, 4))),
        Node("flat", "flatten", ("pool",), (8,)),
        Node("fc", "dense", ("flat",), (3,), dict(weight=rng.normal(0, 1, (3, 8)), bias=rng.normal(0, 0.1, 3))),
    ]
    return Graph("block", nodes, "fc")


def _block_layers(graph: Graph) -> dict[str, PlanLayer]:
    """Degree-3 ReLU fits on the activations' observed ranges (a leveled run from level 8)."""
    import torch

    seen: dict[str, tuple[float, float]] = {}
    graph.forward(torch.from_numpy(_images(8)).float(),
                  hook=lambda n, v: seen.__setitem__(n, (float(v.min()), float(v.max()))))
    layers = {}
    for name, level in (("a1", 7), ("a2", 4)):
        lo, hi = seen[name]
        a, b = lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo)
        t = np.linspace(-1, 1, 801)
        x = (t * (b - a) + a + b) / 2
        approx = Approximation("relu", "test", (a, b), (C.chebfit(t, np.maximum(x, 0), 3),), layer=name)
        layers[name] = PlanLayer(name, approx, level, False, approx.depth)
    return layers


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(3).normal(0, 1, (n, 8, 4, 4))


def _programs(slots: int) -> tuple[Program, Program]:
    graph = _block_graph()
    layers = _block_layers(graph)
    return (compile_program(graph, layers, slots, 8, multiplex=False), compile_program(graph, layers, slots, 8))


def _final_slots(program: Program, client, server, image: np.ndarray) -> np.ndarray:  # noqa: ANN001
    ct = client.encrypt(program.encode_input(image), level=program.input_level)
    out, _ = run_program(program, server, ct)
    return client.decrypt(out)


def test_block_reads_rotated_copies_and_matches_slot_by_slot_on_the_simulator() -> None:
    sim = SimulatorBackend(CKKSParams(ring_dimension=2048, levels=8, bootstrap=False, insecure=True,
                                      extra={"noise": False}))
    plain, mux = _programs(sim.capabilities().slots)
    c1 = next(s for s in mux.steps if s.out == "c1")
    c2 = next(s for s in mux.steps if s.out == "c2")
    assert c1.layout_out.copies == 8 and c2.layout_in.copies == 8 and c2.postsum == (128, 256, 512)
    assert c2.diagonal_count < next(s for s in plain.steps if s.out == "c2").diagonal_count
    client, server = sim.keygen(mux.key_request())
    client_p, server_p = sim.keygen(plain.key_request())
    for image in _images(3):
        np.testing.assert_allclose(_final_slots(mux, client, server, image),
                                   _final_slots(plain, client_p, server_p, image), atol=1e-12)


@pytest.mark.openfhe
def test_block_reading_rotated_copies_matches_the_replicated_layouts_on_openfhe() -> None:
    from olafhe.backends.openfhe.backend import OpenFHEBackend

    backend = OpenFHEBackend(CKKSParams(ring_dimension=4096, scale_bits=40, first_mod_bits=60, levels=8,
                                        bootstrap=False, insecure=True))
    plain, mux = _programs(backend.capabilities().slots)
    assert next(s for s in mux.steps if s.out == "c2").layout_in.copies == 16
    sim = SimulatorBackend(CKKSParams(ring_dimension=4096, levels=8, bootstrap=False, insecure=True,
                                      extra={"noise": False}))
    sim_client, sim_server = sim.keygen(plain.key_request())
    client, server = backend.keygen(mux.key_request())
    for image in _images(2):
        expected = _final_slots(plain, sim_client, sim_server, image)
        np.testing.assert_allclose(_final_slots(mux, client, server, image), expected, atol=1e-4)
        logits, _ = encrypted_inference(mux, client, server, image)
        np.testing.assert_allclose(logits, plain.decode_output(expected), atol=1e-4)
