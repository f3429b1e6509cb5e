"""End to end on the small CNN: optimize -> simulate -> encrypted inference on every backend.

Uses the small ring dimension of configs/small_cnn.toml (explicitly insecure) so it runs in CI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from olafhe import cli
from olafhe.core.config import load_config
from olafhe.core.errors import OlafheError
from olafhe.core.planning.ckks import resolve_ckks, slot_count
from olafhe.core.planning.plan import Plan
from olafhe.jobs import workspace
from olafhe.jobs.backend import make_backend
from olafhe.jobs.evaluate import run_evaluate
from olafhe.jobs.infer import run_infer
from olafhe.jobs.latency import predict_plan_seconds
from olafhe.jobs.optimize import run_optimize

OVERRIDES = ["data.calibration_images=600", "optimizer.eval_images=300", "optimizer.accuracy_drop=12"]


@pytest.fixture(scope="module")
def config():
    return load_config("configs/small_cnn.toml", OVERRIDES)


@pytest.fixture(scope="module")
def loaded(config):
    return workspace.load(config)


@pytest.fixture(scope="module")
def plan(config, loaded, tmp_path_factory) -> Plan:
    result = run_optimize(config, loaded=loaded, progress=False)
    path = result.plan.save(tmp_path_factory.mktemp("plan") / "small.json")
    return Plan.load(path)


def test_plan_is_consistent(plan: Plan, loaded) -> None:
    names = [a.name for a in loaded.graph.activations()]
    assert [ly.name for ly in plan.layers] == names
    assert plan.bootstraps == 0 and plan.ckks.bootstrap is False  # leveled config
    level = plan.input_level
    for ly in plan.layers:  # replay: one linear level before each activation, then its depth
        assert ly.level_in <= level - 1
        assert ly.level_in >= ly.depth
        level = ly.level_in - ly.depth
    assert level >= 2  # pooling + classifier
    assert plan.predicted.latency_s > 0
    assert plan.predicted.meets_target is True
    assert plan.predicted.test_drop <= plan.predicted.max_test_drop


def test_simulator_accuracy_matches_direct_fast_path(config, loaded, plan: Plan) -> None:
    result = run_evaluate(config, plan, 200, progress=False, loaded=loaded)
    x, y = workspace.test_set(loaded.data_dir, 200)
    from olafhe.backends.simulator import simulate_logits

    noise = make_backend(config, "simulator", plan).capabilities().precision_bits
    direct = simulate_logits(loaded.graph, plan, x, noise_bits=noise)
    assert result["images"] == 200
    assert result["correct"] == int(np.sum(direct.argmax(1) == y))


@pytest.mark.parametrize("backend", ["simulator", "openfhe", "tenseal"])
def test_encrypted_inference_matches_simulator(config, loaded, plan: Plan, backend: str) -> None:
    result = run_infer(config, plan, 3, backend, progress=False, loaded=loaded)
    assert result["backend"] == backend
    assert result["images"] == 3
    assert result["agree_with_simulator"] == 1.0
    assert result["max_logit_error"] < 1e-3
    assert result["security_bits"] == 0  # small_cnn.toml opts out explicitly
    assert result["bootstraps"] == 0
    assert all(set(b) >= {"linear", "activation"} for b in result["breakdown"])


def test_backends_agree_on_classes(config, loaded, plan: Plan) -> None:
    from olafhe.core.compiler.compile import compile_program
    from olafhe.core.compiler.runtime import encrypted_inference

    x, _ = workspace.test_set(loaded.data_dir, 4)
    classes = {}
    for name in ("simulator", "openfhe", "tenseal"):
        backend = make_backend(config, name, plan)
        program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers},
                                  backend.capabilities().slots, plan.input_level)
        client, server = backend.keygen(program.key_request())
        classes[name] = [int(encrypted_inference(program, client, server, x[i].numpy())[0].argmax())
                         for i in range(len(x))]
    assert classes["openfhe"] == classes["simulator"] == classes["tenseal"]


def test_plan_priced_on_each_backends_cost_table(config, loaded, plan: Plan) -> None:
    """The same plan priced with OpenFHE's and TenSEAL's measured tables (what `bench --backends` shows)."""
    openfhe = predict_plan_seconds(config, plan, "openfhe", loaded)
    tenseal = predict_plan_seconds(config, plan, "tenseal", loaded)
    assert openfhe == pytest.approx(plan.predicted.latency_s, rel=0.05)  # the optimizer priced it on openfhe
    assert tenseal > 0 and tenseal != pytest.approx(openfhe, rel=1e-3)  # a different library, its own table
    doc = plan.to_dict()
    doc["layers"][1]["bootstrap_before"] = True
    doc["bootstraps"] = 1
    with pytest.raises(OlafheError, match="cannot bootstrap"):
        predict_plan_seconds(config, Plan.from_dict(doc), "tenseal", loaded)


def test_leveled_backend_refuses_bootstrapping_plan_before_work(config, loaded, plan: Plan) -> None:
    doc = plan.to_dict()
    doc["layers"][1]["bootstrap_before"] = True
    doc["bootstraps"] = 1
    booted = Plan.from_dict(doc)
    with pytest.raises(OlafheError, match=r"cannot bootstrap.*1 bootstraps.*max level"):
        run_infer(config, booted, 1, "tenseal", progress=False, loaded=loaded)


def test_too_deep_plan_is_refused(loaded, plan: Plan) -> None:
    shallow = load_config("configs/small_cnn.toml", [*OVERRIDES, "backend.ckks.levels=4"])
    with pytest.raises(OlafheError, match=r"input level .* at most 4"):
        run_infer(shallow, plan, 1, "tenseal", progress=False, loaded=loaded)


def test_cli_evaluate_and_infer_json(plan: Plan, tmp_path, capsys) -> None:
    path = plan.save(tmp_path / "p.json")
    args = ["configs/small_cnn.toml", *sum((["--set", o] for o in OVERRIDES), []), "--no-progress"]
    assert cli.main(["evaluate", *args, "--limit", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"images", "correct", "accuracy", "backend", "plan"} and out["images"] == 50
    assert out["backend"] == "plaintext" and out["plan"] is None
    assert cli.main(["infer", *args, "--plan", str(path), "--backend", "simulator", "--limit", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"images", "correct", "agree_with_simulator", "seconds_per_image", "peak_rss_mb",
                        "backend", "security_bits", "bootstraps"}
    assert cli.main(["infer", *args, "--plan", str(tmp_path / "missing.json"), "--json"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_automatic_slots_are_sparse_only_when_bootstrapping(resnet20_graph) -> None:
    cfg = load_config("configs/resnet20.toml")
    assert slot_count(cfg, resnet20_graph) == 16384  # the 16x32x32 stage is the largest tensor
    assert slot_count(cfg) is None  # no graph: full packing
    assert slot_count(load_config("configs/resnet20.toml", ["backend.ckks.slots=32768"]),
                      resnet20_graph) == 32768
    assert slot_count(load_config("configs/resnet20.toml", ["backend.ckks.bootstrap=false"]),
                      resnet20_graph) is None
    old = Plan.from_dict({"model": "resnet20", "approximator": "wls", "optimizer": "dp", "layers": [],
                          "bootstraps": 0, "predicted": {}, "ckks": {"slots": 32768, "bootstrap": True}})
    assert slot_count(cfg, resnet20_graph, old) == 32768  # a plan keeps the packing it was priced for
    with pytest.raises(Exception, match="power of two"):
        resolve_ckks(load_config("configs/resnet20.toml", ["backend.ckks.slots=12000"]))


def test_resnet20_compiles_at_its_automatic_slots_with_no_more_diagonals(resnet20_graph) -> None:
    from olafhe.core.compiler.compile import compile_program

    plan = Plan.load("docs/results/resnet20-wls-dp.json")
    layers = {ly.name: ly for ly in plan.layers}
    slots = slot_count(load_config("configs/resnet20.toml"), resnet20_graph)
    sparse = compile_program(resnet20_graph, layers, slots, plan.input_level, max_rotation_keys=32)
    full = compile_program(resnet20_graph, layers, 32768, plan.input_level, max_rotation_keys=32)
    assert max(lay.period for lay in sparse.layouts.values()) == slots
    assert all(0 < r < slots for r in sparse.rotations)
    # a period-16384 stage 2 forces multiplexed layouts there (392 instead of 288 diagonals per conv) but
    # spares the stage-3 transition (648 instead of 2048): 8,552 diagonals in all instead of 9,513
    count = [sum(r["diagonals"] for r in p.linear_report()) for p in (sparse, full)]
    assert count[0] < count[1]
