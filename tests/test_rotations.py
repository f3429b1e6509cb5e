"""Rotations under a key budget: baby-step trees, Horner giant steps, and the planner pricing what runs."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import images, tiny_graph, tiny_plan

from olafhe.backends.simulator import SimulatorBackend
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.program import LinearStep
from olafhe.core.compiler.rotations import RotationChains, _prefix_tree, giant_chain, naf_steps, rotation_tree
from olafhe.core.compiler.runtime import apply_linear, encrypted_inference
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.planner import linear_step_seconds


def _replay(edges: tuple[tuple[int, int, int], ...], slots: int) -> set[int]:
    """Amounts an edge list computes, checking every edge starts from one already computed."""
    done = {0}
    for target, source, step in edges:
        assert source in done and (source + step) % slots == target
        done.add(target)
    return done


@pytest.mark.parametrize("amounts", [range(1, 17), [3, 5, 96, 97, 100, 1000], [7, 57, 58, 121, 126, 4095]])
def test_rotation_tree_reaches_every_amount_with_existing_keys_only(amounts) -> None:
    slots = 4096
    targets = frozenset(a % slots for a in amounts)
    keys = frozenset(s % slots for a in targets for s in naf_steps(a, slots))  # what a program generates
    edges = rotation_tree(targets, slots, keys)
    assert targets <= _replay(edges, slots)
    assert all(step in keys for _, _, step in edges)
    assert len(edges) <= len(_prefix_tree(targets, slots))  # never worse than shared chain prefixes
    assert len(edges) >= len(targets)  # one key switch per amount at least


def test_dense_baby_steps_cost_one_rotation_each() -> None:
    slots = 16384
    babies = frozenset(range(1, 60))
    assert RotationChains(slots).count(babies, shared=True) == 59
    assert len(_prefix_tree(babies, slots)) > 59  # the old chains from 0 needed more


@pytest.mark.parametrize("giants", [[0, 8, 16, 24, 40], [8, 16, 24, 40], [24]])
def test_giant_chain_sums_giants_like_separate_rotations(giants) -> None:
    rng = np.random.default_rng(0)
    slots = 64
    parts = {g: rng.normal(size=slots) for g in giants}
    expected = sum(np.roll(parts[g], -g) for g in giants)  # rot(v, g): left rotation by g
    gaps = giant_chain(giants)
    order = sorted(giants, reverse=True)
    total = parts[order[0]]
    for gap, g in zip(gaps[:-1], order[1:], strict=True):  # rotate the running sum by the gap, add the next
        total = np.roll(total, -gap) + parts[g]
    np.testing.assert_allclose(np.roll(total, -gaps[-1]), expected)
    assert sum(gaps) == max(giants)


def test_regular_giant_steps_cost_one_rotation_per_gap() -> None:
    chains = RotationChains(4096)
    assert giant_chain([0, 128, 256, 384]) == (128, 128, 128, 0)
    assert chains.count_giants([0, 128, 256, 384]) == 3
    assert chains.count([128, 256, 384], shared=False) == 4  # separately: 384 = 512 - 128 needs two


def test_planner_prices_the_rotations_the_runtime_performs() -> None:
    graph, plan = tiny_graph(), tiny_plan()
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.input_level, max_rotation_keys=4)
    chains = program.chains
    assert chains is not None
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True,
                                          extra={"noise": False}))
    client, server = backend.keygen(program.key_request())  # only the power-of-two keys
    zero = {lv: 0.0 for lv in range(13)}
    rotate_only = CostTable("test", 1024, {"rotate": {lv: 1.0 for lv in range(13)}, "multiply_plain": zero,
                                           "add": zero, "add_plain": zero})
    x = client.encrypt(program.encode_input(images(1)[0].numpy()), level=program.input_level)
    for step in (s for s in program.steps if isinstance(s, LinearStep)):
        before = server.counter.total("rotate")
        apply_linear(program, step, server, x)
        performed = server.counter.total("rotate") - before
        assert performed == linear_step_seconds(step, rotate_only, program.input_level, chains)
    full = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    a, _ = encrypted_inference(program, client, server, images(1)[0].numpy())
    b, _ = encrypted_inference(full, *backend.keygen(full.key_request()), images(1)[0].numpy())
    np.testing.assert_allclose(a, b, atol=1e-9)
