"""Numeric safety: the traced simulator, each check's failure on small programs (naming its layer), the
planner's precision floor, and the regression plan that failed to decrypt."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_engine import images, relu_fit, tiny_graph, tiny_plan

from olafhe.backends.sim_trace import trace_program
from olafhe.backends.simulator import SimulatorBackend, simulate_logits
from olafhe.core.compiler.compile import compile_program
from olafhe.core.config import SafetyConfig, load_config
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import ConfigError, UnsafePlanError
from olafhe.core.planning.costs import CostTable, load_cost_table
from olafhe.core.planning.plan import Plan
from olafhe.core.planning.safety import SafetyLimits, SafetyReport, bootstrap_input_range
from olafhe.core.poly.approximation import Approximation
from olafhe.core.poly.excursion import reference_error, stage_tolerance
from olafhe.jobs.safety import safe_bootstrap_configs, safety_limits

FIXTURES = Path(__file__).parent / "fixtures"
BOOTSTRAPPING = CKKSParams(ring_dimension=1024, levels=6, bootstrap=True, insecure=True,
                           extra={"bootstrap_precision_bits": 20.48})


def judge(plan: Plan, params: CKKSParams = BOOTSTRAPPING, reserve: int = 1,
          settings: SafetyConfig | None = None) -> SafetyReport:
    """Trace the tiny graph under ``plan`` on two images and judge it."""
    caps = SimulatorBackend(params).capabilities()
    program = compile_program(tiny_graph(), {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level)
    trace = trace_program(program, caps, images(2).numpy())
    return SafetyReport.judge(plan, trace, SafetyLimits.for_plan(plan, params, reserve, settings))


def booting_plan() -> Plan:
    return tiny_plan(degree=7, boot=(False, True), levels=(4, 6))


def narrowed(plan: Plan, layer: str, factor: float) -> Plan:
    """``plan`` with ``layer`` fitted on an interval ``factor`` times narrower (its inputs leave it)."""
    old = plan.layer(layer).approximation
    a, b = (v / factor for v in old.interval)
    fit = relu_fit(a, b, old.degree, layer)
    layers = [replace(ly, approximation=fit) if ly.name == layer else ly for ly in plan.layers]
    return replace(plan, layers=layers)


def failing(report: SafetyReport, kind: str) -> list:
    return [c for c in report.failures if c.kind == kind]


def test_traced_simulation_matches_the_fast_path_and_passes() -> None:
    plan = booting_plan()
    report = judge(plan)
    assert report.ok, report.failures
    margins = report.margins()
    assert set(margins) == {"bootstrap_range", "polynomial_excursion", "headroom", "bootstrap_precision"}
    assert margins["bootstrap_range"]["layer"] == "act2" and 0 < margins["bootstrap_range"]["margin"] < 1
    assert margins["bootstrap_precision"]["margin"] == pytest.approx(20.48 - 16.0)
    assert "act2" in report.summary() and json.dumps(report.to_dict())
    # the traced values are the op-by-op simulator's: decrypting them gives the fast path's logits
    caps = SimulatorBackend(BOOTSTRAPPING).capabilities()
    program = compile_program(tiny_graph(), {ly.name: ly for ly in plan.layers}, caps.slots, plan.input_level)
    trace = trace_program(program, caps, images(2).numpy(), noise=False)
    assert trace.images == 2 and trace.max_output_imag == 0.0
    assert list(trace.steps) == [s.out for s in program.steps]
    logits = simulate_logits(tiny_graph(), plan, images(2))
    logit_peak = [v for (op, _), v in trace.steps["fc"].magnitudes.items() if op == "add_plain"]
    assert logit_peak == [pytest.approx(np.abs(logits).max(), rel=1e-5)]


def test_bootstrap_input_beyond_the_modular_reduction_range_names_the_layer() -> None:
    report = judge(narrowed(booting_plan(), "act2", 40.0))   # |t| at act2's bootstrap reaches ~10 > 8 / 1.1
    (fail,) = failing(report, "bootstrap_range")
    assert fail.layer == "act2" and fail.value > fail.limit == pytest.approx(8.0 / 1.1)
    assert "'act2'" in fail.message and "safety.bootstrap_input_range" in fail.message
    assert "\n" not in fail.message
    with pytest.raises(UnsafePlanError, match="act2"):
        report.raise_if_unsafe()
    wider = judge(narrowed(booting_plan(), "act2", 40.0), settings=SafetyConfig(bootstrap_input_range=1e6))
    assert not failing(wider, "bootstrap_range")
    assert bootstrap_input_range(59, 60) == 8.0 and bootstrap_input_range(50, 58) == 32.0
    assert bootstrap_input_range(40, 60) == 1.0   # unmeasured: conservative


def test_polynomial_input_outside_its_interval_names_the_layer() -> None:
    report = judge(narrowed(booting_plan(), "act1", 3.0))   # act1 does not bootstrap: (b) fails there first
    fails = report.failures
    assert (fails[0].kind, fails[0].layer) == ("polynomial_excursion", "act1")
    assert {c.kind for c in fails} == {"polynomial_excursion"}   # act1's wrong outputs push act2 out too
    assert "'act1'" in fails[0].message and "stage 0" in fails[0].message
    assert "safety.polynomial_error_factor" in fails[0].message


def test_excursion_tolerance_bounds_the_error_outside_the_interval() -> None:
    fit = relu_fit(-3.0, 5.0, 15, "x")
    delta = stage_tolerance(fit, 0, factor=2.0)
    assert 0 < delta < 1
    limit = 2.0 * reference_error(fit)
    inside = 1.0 + np.linspace(0, delta, 50)
    beyond = 1.0 + np.linspace(delta, 4 * delta, 200)[1:]
    target = lambda t: np.maximum(fit.interval[0] + (t + 1) * 4.0, 0)  # noqa: E731 - x(t) on [-3, 5]
    assert np.max(np.abs(fit.evaluate_unit(inside) - target(inside))) <= limit
    assert np.max(np.abs(fit.evaluate_unit(beyond) - target(beyond))) > limit
    assert stage_tolerance(fit, 0, factor=4.0) > delta
    # a composite's later stage: judged on the sign estimate at the interval's edge
    sign = Approximation("relu", "test", (-2.0, 2.0), (np.array([0.0, 1.5, 0.0, -0.5]),) * 2, form="relu-sign",
                         max_error=0.1)
    assert stage_tolerance(sign, 1) > 0


def test_values_beyond_the_modulus_headroom_name_the_layer() -> None:
    leveled = CKKSParams(ring_dimension=1024, levels=12, bootstrap=False, insecure=True, scale_bits=50,
                         first_mod_bits=50)
    plan = tiny_plan(levels=(9, 4))   # the logits end at level 0, where 50 - 50 - 1 bits hold |x| < 0.5 / 1.1
    report = judge(plan, leveled, reserve=0)
    (fail,) = failing(report, "headroom")
    assert fail.layer == "fc" and "level 0" in fail.quantity
    assert "'fc'" in fail.message and "ckks.first_mod_bits" in fail.message
    assert judge(plan, leveled, reserve=1).ok   # a reserved limb below level 0 (OpenFHE bootstrapping) holds it


def test_bootstrap_precision_below_the_floor_names_the_layer() -> None:
    low = replace(BOOTSTRAPPING, extra={"bootstrap_precision_bits": 12.58})
    report = judge(booting_plan(), low)
    (fail,) = report.failures
    assert (fail.kind, fail.layer, fail.value) == ("bootstrap_precision", "act2", 12.58)
    assert "safety.min_bootstrap_precision_bits" in fail.message
    assert judge(booting_plan(), low, settings=SafetyConfig(min_bootstrap_precision_bits=12.0)).ok
    assert judge(tiny_plan(), low).worst("bootstrap_precision") is None   # leveled: no bootstrap to judge


def fixture_plan() -> Plan:
    with gzip.open(FIXTURES / "resnet32-composite-minimax-uniform.json.gz", "rt") as f:
        return Plan.from_dict(json.load(f), origin="fixture")


def test_regression_failed_resnet32_composite_is_flagged() -> None:
    """The ResNet-32 composite plan that failed to decrypt on OpenFHE (docs/results/failed/) is refused."""
    plan = fixture_plan()
    config = load_config("configs/resnet32.toml")
    limits = safety_limits(config, plan)
    assert (limits.scale_bits, limits.first_mod_bits, limits.reserve_limbs) == (50, 58, 1)
    report = SafetyReport.judge(plan, None, limits)
    (fail,) = report.failures
    assert fail.kind == "bootstrap_precision" and fail.value == pytest.approx(12.58)
    assert fail.layer == plan.layers[0].name and "12.58 bits" in fail.message
    with pytest.raises(UnsafePlanError, match="min_bootstrap_precision_bits"):
        report.raise_if_unsafe()


@pytest.mark.parametrize("name", ["resnet20-wls-dp", "resnet32-wls-dp"])
def test_shipped_dp_plans_pass_the_configuration_checks(name: str) -> None:
    plan = Plan.load(f"docs/results/{name}.json")
    limits = safety_limits(load_config(f"configs/{name.split('-')[0]}.toml"), plan)
    assert (limits.bootstrap_input_range, limits.reserve_limbs, limits.precision_bits) == (8.0, 1, 20.48)
    assert SafetyReport.judge(plan, None, limits).ok


def test_planner_skips_configurations_below_the_precision_floor() -> None:
    config = load_config("configs/resnet20.toml")
    costs = load_cost_table("openfhe", 65536).for_slots(16384)
    configs = dict(costs.bootstrap)
    logged: list[str] = []
    kept = safe_bootstrap_configs(config, costs, configs, logged.append)
    assert 9 in configs and 9 not in kept and set(kept) == set(configs) - {9}
    assert len(logged) == 1 and "9 levels" in logged[0] and "safety.min_bootstrap_precision_bits" in logged[0]
    off = load_config("configs/resnet20.toml", ["safety.enabled=false"])
    assert safe_bootstrap_configs(off, costs, configs) == configs
    strict = load_config("configs/resnet20.toml", ["safety.min_bootstrap_precision_bits=30"])
    with pytest.raises(ConfigError, match="min_bootstrap_precision_bits"):
        safe_bootstrap_configs(strict, costs, configs)
    unmeasured = CostTable("test", 1024, {}, bootstrap={6: 1.0})
    assert safe_bootstrap_configs(config, unmeasured, {6: 1.0}) == {6: 1.0}


def test_safety_config_is_validated() -> None:
    assert load_config(None).safety == SafetyConfig()
    for bad in ("safety.range_margin=1.5", "safety.polynomial_error_factor=0.5", "safety.images=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])


def resnet(config_name: str):  # noqa: ANN201 - (config, Loaded)
    from olafhe.core.errors import DataError
    from olafhe.jobs.workspace import load

    config = load_config(f"configs/{config_name}.toml")
    try:
        return config, load(config)
    except DataError as exc:
        pytest.skip(f"needs the {config_name} checkpoint and CIFAR-10: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20-wls-dp", "resnet32-wls-dp"])
def test_shipped_dp_plans_pass_every_check_on_the_extreme_images(name: str) -> None:
    """Traced on the 4 most extreme calibration images (ResNet-20: ~40 s, ResNet-32: ~70 s on 2 cores)."""
    from olafhe.jobs.safety import check_plan_safety

    config, loaded = resnet(name.split("-")[0])
    report = check_plan_safety(config, Plan.load(f"docs/results/{name}.json"), loaded)
    assert report.ok, [c.message for c in report.failures]
    margins = report.margins()
    assert margins["bootstrap_range"]["margin"] > 0.5          # |x| <= 0.9 against 8 / 1.1
    assert margins["polynomial_excursion"]["margin"] > 0.05    # every |t| inside its interval
    assert margins["headroom"]["margin"] > 40                  # bits
    assert margins["bootstrap_precision"]["margin"] == pytest.approx(20.48 - 16.0)


@pytest.mark.slow
def test_failed_composite_is_flagged_on_the_traced_run() -> None:
    """The failed ResNet-32 composite: the precision floor. Its bootstrap inputs and headroom are fine, and
    since bootstraps drop their imaginary noise (``bootstrap_real``) its sign stages stay within tolerance."""
    from olafhe.jobs.safety import check_plan_safety

    config, loaded = resnet("resnet32")
    report = check_plan_safety(config, fixture_plan(), loaded)
    assert {c.kind for c in report.failures} == {"bootstrap_precision"}


@pytest.fixture(scope="module")
def small():  # noqa: ANN201 - (config, Loaded, a safe leveled plan for the small CNN)
    from olafhe.core.errors import DataError
    from olafhe.core.planning.plan import PlanCKKS, PlanLayer
    from olafhe.jobs.workspace import calibration_split, load

    config = load_config("configs/small_cnn.toml", ["data.calibration_images=600", "optimizer.eval_images=300",
                                                     "safety.scan_images=300"])
    try:
        loaded = load(config)
    except DataError as exc:
        pytest.skip(f"needs CIFAR-10: {exc}")
    seen: dict[str, tuple[float, float]] = {}
    loaded.graph.forward(calibration_split(config, loaded.data_dir)[0][:300],
                         hook=lambda n, v: seen.__setitem__(n, (float(v.min()), float(v.max()))))
    layers, level = [], 12
    for name, (lo, hi) in seen.items():   # leveled: one level per linear step before each activation
        fit = relu_fit(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), 7, name)
        layers.append(PlanLayer(name, fit, level - 1, False, fit.depth))
        level -= 1 + fit.depth
    ckks = PlanCKKS(scale_bits=40, first_mod_bits=60, levels=12, bootstrap=False, cost_table="openfhe-N8192")
    return config, loaded, Plan("small_cnn", "test", "test", layers, input_level=12, ckks=ckks)


def test_evaluate_reports_the_margins(small) -> None:
    from olafhe.jobs.evaluate import run_evaluate

    config, loaded, plan = small
    safety = run_evaluate(config, plan, 20, progress=False, loaded=loaded)["safety"]
    assert safety["ok"] and safety["images"] == 4 and "calibration" in safety["source"]
    assert safety["margins"]["headroom"]["margin"] > 0 and safety["margins"]["bootstrap_range"] is None
    assert safety["limits"]["reserve_limbs"] == 0   # OpenFHE leveled keeps no limb below level 0
    too_low = replace(plan, layers=[replace(plan.layers[0], level_in=1), *plan.layers[1:]])
    result = run_evaluate(config, too_low, 20, progress=False, loaded=loaded)   # accuracy, and why it cannot run
    assert result["images"] == 20 and not result["safety"]["ok"] and "needs 3 level" in result["safety"]["failures"][0]


def test_infer_refuses_unsafe_inputs_before_key_generation(small, monkeypatch) -> None:
    from olafhe.jobs.infer import run_infer

    config, loaded, plan = small
    first = plan.layers[0].name
    keygens: list[int] = []
    real_keygen = SimulatorBackend.keygen
    monkeypatch.setattr(SimulatorBackend, "keygen", lambda self, req: keygens.append(1) or real_keygen(self, req))
    with pytest.raises(UnsafePlanError, match=rf"layer '{first}'.*before key generation"):
        run_infer(config, narrowed(plan, first, 4.0), 2, "simulator", progress=False, loaded=loaded)
    assert keygens == []
    result = run_infer(config, plan, 2, "simulator", progress=False, loaded=loaded)
    # keys now (and a key-free simulator run that counts operations for the predicted seconds)
    assert result["safety"]["ok"] and result["safety"]["source"] == "the inputs to encrypt" and keygens
    off = load_config("configs/small_cnn.toml", ["data.calibration_images=600", "safety.enabled=false"])
    assert run_infer(off, narrowed(plan, first, 4.0), 1, "simulator", progress=False, loaded=loaded)["safety"] is None
