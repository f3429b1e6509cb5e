"""Planner: problem building from a compiled program, stage slots for composite ReLUs, budget tuning."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from test_engine import images, tiny_graph

from olafhe.approximators.composite import CompositeMinimaxApproximator
from olafhe.approximators.wls import WLSApproximator
from olafhe.backends.simulator import SimulatorBackend, simulate_logits
from olafhe.core.calibration.stats import ActivationStats
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import InfeasibleError
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.criterion import FlipCriterion
from olafhe.core.planning.plan import PlanCKKS
from olafhe.core.planning.planner import STAGE_SEP, build_problem, make_candidates, solution_to_plan
from olafhe.core.planning.tuning import tune_budget
from olafhe.optimizers.dp import DPOptimizer
from olafhe.optimizers.uniform import UniformOptimizer

COSTS = CostTable("test", 1024, {k: {0: 0.001, 8: 0.01} for k in (
    "add", "add_plain", "add_scalar", "multiply", "multiply_plain", "multiply_scalar", "rotate", "rotate_hoisted")},
    bootstrap={6: 1.0})


def depth_of(degree: int) -> int:
    return max(1, math.ceil(math.log2(degree + 1)))


def layer_stats(graph) -> dict[str, ActivationStats]:
    seen: dict[str, np.ndarray] = {}
    graph.forward(images(16), hook=lambda n, v: seen.__setitem__(n, v.numpy().ravel()))
    return {n: ActivationStats.from_samples(n, v) for n, v in seen.items()}


def compiled(graph, cands):
    return compile_program(graph, None, 512, input_level=6)


def test_problem_structure_follows_the_residual_graph() -> None:
    graph = tiny_graph()
    stats = layer_stats(graph)
    cands = {n: make_candidates(WLSApproximator().candidates(s, [3, 7]), 1.0, depth_of, COSTS, 8)
             for n, s in stats.items()}
    problem = build_problem(compiled(graph, cands), cands, COSTS, 6, {6: 1.0})
    act1, act2 = problem.layers
    assert (act1.linear_depth, act1.skip_from) == (1, None)
    assert (act2.linear_depth, act2.skip_from, act2.skip_depth) == (1, "act1", 0)
    assert problem.tail_depth == 1  # the classifier, global pooling folded into it
    assert all(v > 0 for v in act1.linear_seconds_by_level.values())


def test_composite_bootstraps_between_stages_and_runs() -> None:
    graph = tiny_graph()
    stats = layer_stats(graph)
    composite = CompositeMinimaxApproximator()
    cands = {n: make_candidates([composite.fit(s, 58)], 1.0, depth_of, COSTS, 6) for n, s in stats.items()}
    problem = build_problem(compiled(graph, cands), cands, COSTS, 6, {6: 1.0})
    names = [slot.name for slot in problem.layers]
    assert names[:5] == ["act1", f"act1{STAGE_SEP}1", f"act1{STAGE_SEP}2", f"act1{STAGE_SEP}3", "act2"]
    assert problem.layers[4].skip_from == f"act1{STAGE_SEP}3"  # the skip carries the composite's output
    solution = UniformOptimizer().optimize(problem, math.inf)
    plan = solution_to_plan(solution, problem, "tiny", "composite-minimax", "uniform", PlanCKKS(levels=6))
    layer = plan.layers[0]
    assert len(layer.stage_bootstrap) == len(layer.stage_level_in) == 4
    assert plan.bootstraps == solution.bootstraps >= 4  # depth 14 cannot fit 6 levels without inner bootstraps
    # the compiled plan runs on the simulator with exactly the planned levels and bootstraps
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                                          extra={"noise": False}))
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    client, server = backend.keygen(program.key_request())
    x = images(2)
    slow_bootstrap = server.bootstrap

    def bootstrap(value):  # noqa: ANN001, ANN202 - a bootstrap that takes a measurable 20 ms
        time.sleep(0.02)
        return slow_bootstrap(value)

    server.bootstrap = bootstrap
    logits, report = encrypted_inference(program, client, server, x[0].numpy())
    assert server.counter.total("bootstrap") == plan.bootstraps
    np.testing.assert_allclose(logits, simulate_logits(graph, plan, x)[0], atol=1e-3)
    # the composite's own bootstraps are reported as bootstrap time, not as activation time
    totals = report.totals()
    assert totals["bootstrap"] >= 0.02 * plan.bootstraps
    assert totals["activation"] < 0.02 * plan.bootstraps


def test_tune_budget_finds_the_cheapest_plan_meeting_the_predicted_drop() -> None:
    graph = tiny_graph()
    stats = layer_stats(graph)
    cands = {n: make_candidates(WLSApproximator().candidates(s, [3, 5, 7, 15]), 1.0, depth_of, COSTS, 8)
             for n, s in stats.items()}
    problem = build_problem(compiled(graph, cands), cands, COSTS, 8, {6: 1.0})

    def make_plan(sol):  # noqa: ANN001, ANN202
        return solution_to_plan(sol, problem, "tiny", "wls", "dp", PlanCKKS())

    # logits perturbed in proportion to sqrt(distortion), as the criterion's scaling model assumes
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 3.0, (400, 10))
    shape = rng.normal(0.0, 1.0, (400, 10))
    simulated: list[float] = []

    def logits_of(plan) -> np.ndarray:  # noqa: ANN001
        simulated.append(plan.predicted.distortion)
        return reference + shape * np.sqrt(plan.predicted.distortion)

    crit = FlipCriterion(reference, 0.0019, 2.0)
    lo = sum(min(c.distortion for c in s.candidates) for s in problem.layers)
    drop_at = {}
    for b in np.geomspace(lo * 1.01, lo * 1e4, 60):  # every plan the optimizer can make, and its true drop
        try:
            sol = DPOptimizer().optimize(problem, float(b))
        except InfeasibleError:
            continue
        drop_at[sol.distortion] = (crit.predicted_drop(crit.perturbations(reference + shape * np.sqrt(sol.distortion))),
                                   sol.predicted_seconds)
    max_drop = sorted(d for d, _ in drop_at.values())[len(drop_at) // 2]  # a target some plans meet, some miss
    result = tune_budget(DPOptimizer(), problem, make_plan, logits_of, crit, max_drop)
    assert result.predicted_drop <= max_drop
    best_seconds = min(s for d, s in drop_at.values() if d <= max_drop)
    assert result.solution.predicted_seconds <= best_seconds * 1.05  # (near) the cheapest admissible plan
    assert len(simulated) <= 5  # a few simulations, not a bisection's worth
    with pytest.raises(InfeasibleError):
        tune_budget(DPOptimizer(), problem, make_plan, lambda plan: -reference, crit, max_drop)


def test_cost_table_for_slots_prices_sparse_bootstraps() -> None:
    full = {3: 10.0, 6: 16.0, 9: 19.0}
    table = CostTable("test", 65536, {}, bootstrap=full, sparse_bootstrap={16384: {3: 7.0, 6: 11.0}, 4096: {6: 9.0}})
    assert table.for_slots(None) is table and table.for_slots(32768) is table
    s = table.for_slots(16384)
    ratio = (7.0 / 10.0 + 11.0 / 16.0) / 2  # level 9 was measured only with full packing
    assert s.bootstrap == {3: 7.0, 6: 11.0, 9: pytest.approx(19.0 * ratio)}
    assert s.params["bootstrap_slots"] == 16384 and table.bootstrap == full  # a copy, not a mutation
    assert table.for_slots(4096).bootstrap[6] == 9.0
    assert table.for_slots(8192).bootstrap[6] == 11.0  # nearest measured count above: never cheaper
    bare = CostTable("test", 65536, {}, bootstrap=full)
    assert bare.for_slots(16384).bootstrap == full and bare.for_slots(16384).params["bootstrap_slots"] == 32768
    again = CostTable.from_dict(table.to_dict())
    assert again.sparse_bootstrap == table.sparse_bootstrap
