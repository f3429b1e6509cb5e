"""The ``published`` optimizer: the prior-work baseline with a consistent modulus, and its bench row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engine import images, tiny_graph
from test_optimizers import resnet_like
from test_planner import COSTS, compiled, depth_of, layer_stats

from olafhe.approximators.composite import CompositeMinimaxApproximator
from olafhe.backends.simulator import SimulatorBackend, simulate_logits
from olafhe.cli import _combo
from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.contract.interfaces import OptimizationProblem, Solution
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError, OlafheError
from olafhe.core.planning.plan import PlanCKKS
from olafhe.core.planning.planner import STAGE_SEP, build_problem, make_candidates, solution_to_plan
from olafhe.optimizers.published import PublishedOptimizer, activation_starts
from olafhe.optimizers.uniform import UniformOptimizer
from olafhe.report.runs import match_measured_run


def composite_problem(configs: dict[int, float]) -> OptimizationProblem:
    """The tiny residual graph with the default composite ReLU (stages 15, 15, 27) in both activations."""
    graph = tiny_graph()
    composite = CompositeMinimaxApproximator()
    top = max(configs)
    cands = {n: make_candidates([composite.fit(s, 58)], 1.0, depth_of, COSTS, top)
             for n, s in layer_stats(graph).items()}
    return build_problem(compiled(graph, cands), cands, COSTS, top, configs)


def arrival_levels(p: OptimizationProblem, sol: Solution) -> list[int]:
    """Per slot, the level its input has after linear work, residual add and any bootstrap (before any
    level reduction): with a consistent modulus every ``level_in`` must equal it."""
    level, out, arrivals = sol.input_level, {}, []
    for layer, ch in zip(p.layers, sol.choices, strict=True):
        level -= layer.linear_depth
        if layer.skip_from is not None:
            level = min(level, out[layer.skip_from] - layer.skip_depth)
        if ch.bootstrap_before:
            level = sol.level_after_bootstrap
        arrivals.append(level)
        level = ch.level_in - layer.candidates[ch.candidate_index].depth
        out[layer.name] = level
    return arrivals


def check_consistent(p: OptimizationProblem, sol: Solution, top: int) -> None:
    assert sol.level_after_bootstrap == top and sol.input_level == p.max_level
    assert [ch.level_in for ch in sol.choices] == arrival_levels(p, sol)  # no level reduction anywhere
    for i in activation_starts(p):
        assert sol.choices[i].bootstrap_before and sol.choices[i].level_in == top
    assert sol.info["placement"]["modulus"] == "consistent"


def test_published_composite_plan_has_a_consistent_modulus_and_runs() -> None:
    p = composite_problem({6: 1.0, 5: 0.4})
    sol = PublishedOptimizer().optimize(p, math.inf)
    check_consistent(p, sol, 6)
    assert len(activation_starts(p)) == 2 and sum(STAGE_SEP not in s.name for s in p.layers) == 2
    assert {p.layers[i].candidates[0].approximation.params["stage_degrees"] == [15, 15, 27]
            for i in activation_starts(p)} == {True}
    uniform = UniformOptimizer().optimize(p, math.inf)
    assert uniform.level_after_bootstrap == 5 or uniform.choices[0].level_in < 6  # ours uses the freedom
    assert sol.predicted_seconds > uniform.predicted_seconds
    plan = solution_to_plan(sol, p, "tiny", "composite-minimax", "published", PlanCKKS(levels=6))
    assert plan.ckks.levels == 6 and len({tuple(ly.approximation.stage_degrees) for ly in plan.layers}) == 1
    assert all(ly.bootstrap_before and ly.level_in == 6 for ly in plan.layers)
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                                          extra={"noise": False}))
    program = compile_program(tiny_graph(), {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    client, server = backend.keygen(program.key_request())
    x = images(2)
    logits, _ = encrypted_inference(program, client, server, x[0].numpy())
    assert server.counter.total("bootstrap") == plan.bootstraps == program.bootstraps
    np.testing.assert_allclose(logits, simulate_logits(tiny_graph(), plan, x)[0], atol=1e-3)
    # a saved `olafhe infer --json` of this plan matches its bench row
    run = {"backend": "openfhe", "model": "tiny", "approximator": "composite-minimax", "optimizer": "published",
           "degrees": plan.degrees, "bootstraps": program.bootstraps, "images": 1, "seconds_per_image": 9.0}
    assert match_measured_run([run], plan, "openfhe") is run
    assert match_measured_run([{**run, "optimizer": "uniform"}], plan, "openfhe") is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_published_is_uniform_degree_and_never_cheaper_than_uniform(seed: int) -> None:
    p = resnet_like(seed)  # max_level 11, bootstrap configs {9, 13}: the consistent modulus is 13
    for degree in (7, 15, 31):
        sol = PublishedOptimizer(degree=degree).optimize(p, 0.0)
        check_consistent(p, sol, 13)
        assert {p.layers[i].candidates[c.candidate_index].approximation.degree
                for i, c in enumerate(sol.choices)} == {degree} == {sol.info["degree"]}
        assert sol.bootstraps == len(p.layers)
        uniform = UniformOptimizer(degree=degree).optimize(p, 0.0)
        assert [c.candidate_index for c in sol.choices] == [c.candidate_index for c in uniform.choices]
        assert sol.predicted_seconds >= uniform.predicted_seconds - 1e-9


def test_published_bootstrap_configs_and_errors() -> None:
    opt = registry().get("optimizers", "published")()
    assert isinstance(opt, PublishedOptimizer) and opt.uses_budget is False
    assert opt.select_bootstrap_configs({5: 0.4, 6: 1.0, 4: 0.2}) == {6: 1.0}
    assert UniformOptimizer().select_bootstrap_configs({5: 0.4, 6: 1.0}) == {5: 0.4, 6: 1.0}
    leveled = OptimizationProblem(resnet_like(0).layers, 11, {})
    with pytest.raises(ConfigError, match="consistent modulus needs bootstrapping"):
        PublishedOptimizer().optimize(leveled, 0.0)
    with pytest.raises(ConfigError, match="published: degree 4 is not among"):
        PublishedOptimizer(degree=4).optimize(resnet_like(0), 0.0)


def test_combo_flag_parses_pairs() -> None:
    assert _combo("composite-minimax/published") == ("composite-minimax", "published")
    assert _combo(" wls / dp ") == ("wls", "dp")
    for bad in ("composite-minimax", "/dp", "wls/"):
        with pytest.raises(OlafheError, match="APPROXIMATOR/OPTIMIZER"):
            _combo(bad)


def test_values_bootstrapped_after_a_composite_stay_in_the_bootstrap_range() -> None:
    """A trailing bootstrap reads the activation's output held divided by its interval's bound (the raw
    output of a ResNet's last ReLU reaches ~9, past the range OpenFHE's bootstrap approximates well)."""
    p = composite_problem({6: 1.0, 5: 0.4})
    sol = PublishedOptimizer().optimize(p, math.inf)
    plan = solution_to_plan(sol, p, "tiny", "composite-minimax", "published", PlanCKKS(levels=6))
    trailing = [ly for ly in plan.layers if any(ly.stage_bootstrap[len(ly.approximation.stages):])]
    assert trailing, "the consistent modulus bootstraps every composite's output before the next linear layer"
    program = compile_program(tiny_graph(), {ly.name: ly for ly in plan.layers}, 512, plan.input_level)
    backend = SimulatorBackend(CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                                          extra={"noise": False}))
    client, server = backend.keygen(program.key_request())
    seen: list[float] = []
    bootstrap_real = server.bootstrap_real
    server.bootstrap_real = lambda ct: seen.append(float(np.abs(ct.values).max())) or bootstrap_real(ct)  # type: ignore[method-assign]
    x = images(4)
    for i in range(len(x)):
        logits, _ = encrypted_inference(program, client, server, x[i].numpy())
        np.testing.assert_allclose(logits, simulate_logits(tiny_graph(), plan, x)[i], atol=1e-3)
    assert len(seen) == 4 * program.bootstraps and max(seen) <= 1.0
