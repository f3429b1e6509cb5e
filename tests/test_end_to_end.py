"""End to end on the small CNN: optimize -> simulate -> encrypted inference on every backend.

Uses the small ring dimension of configs/small_cnn.toml (explicitly insecure) so it runs in CI.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from olafhe import cli
from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.backends.simulator import SimulatorBackend
from olafhe.core.config import load_config
from olafhe.core.errors import ConfigError, OlafheError
from olafhe.core.graph.fx_import import import_model
from olafhe.core.planning.ckks import resolve_ckks, slot_count
from olafhe.core.planning.plan import Plan
from olafhe.jobs import evaluate as evaluate_job
from olafhe.jobs import workspace
from olafhe.jobs.backend import make_backend
from olafhe.jobs.evaluate import run_evaluate
from olafhe.jobs.infer import run_infer
from olafhe.jobs.latency import predict_plan_seconds
from olafhe.jobs.optimize import run_optimize

OVERRIDES = ["data.calibration_images=600", "optimizer.eval_images=300", "optimizer.accuracy_drop=18"]


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


def test_calibration_cache_is_keyed_by_the_weights(config, loaded) -> None:
    """A retrained model under the same config never reads the old model's cached statistics."""
    other_model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        other_model.fc.bias += 1e-3
    other = workspace.Loaded(other_model, import_model(other_model, (3, 32, 32), name="small_cnn"), loaded.data_dir)
    same = workspace.Loaded(loaded.model, import_model(loaded.model, (3, 32, 32), name="small_cnn"), loaded.data_dir)
    assert workspace.config_key(config, same) == workspace.config_key(config, loaded)
    assert workspace.config_key(config, other) != workspace.config_key(config, loaded)
    assert workspace.default_calibration_path(config, other) != workspace.default_calibration_path(config, loaded)


def test_plan_is_consistent(plan: Plan, loaded) -> None:
    names = [a.name for a in loaded.graph.activations()]
    assert [ly.name for ly in plan.layers] == names
    assert plan.bootstraps == 0 and plan.ckks.bootstrap is False  # leveled config
    level = plan.input_level
    for ly in plan.layers:  # replay: one linear level before each activation, then its depth
        assert ly.level_in <= level - 1
        assert ly.level_in >= ly.depth
        level = ly.level_in - ly.depth
    assert level >= 1  # the classifier (global pooling folded into it: one level)
    assert plan.predicted.latency_s > 0
    assert plan.predicted.meets_target is True
    assert plan.predicted.test_drop <= plan.predicted.max_test_drop
    # tuned to the allowed drop less its margin (half by default); the plan records the allowed drop
    assert plan.predicted.max_test_drop == 18.0 and plan.extra.tuning["margin"] == 0.5
    assert plan.extra.tuning["target"] == pytest.approx(9.0)
    assert plan.predicted.test_drop <= plan.extra.tuning["target"]


def test_unreachable_target_gives_the_most_accurate_plan_or_an_error(loaded, plan: Plan) -> None:
    tight = load_config("configs/small_cnn.toml", [*OVERRIDES, "optimizer.accuracy_drop=0.0001"])
    best = run_optimize(tight, loaded=loaded, progress=False).plan  # best effort, the default
    assert best.predicted.meets_target is False and best.extra.tuning["met"] is False
    assert best.predicted.test_drop > 0.0001
    assert best.predicted.test_drop <= plan.predicted.test_drop  # the most accurate, not the fastest
    assert plan.extra.tuning["met"] is True
    strict = load_config("configs/small_cnn.toml", [*OVERRIDES, "optimizer.accuracy_drop=0.0001",
                                                    "optimizer.best_effort=false"])
    with pytest.raises(OlafheError, match="accuracy_drop"):
        run_optimize(strict, loaded=loaded, progress=False)


def test_criterion_ranks_small_cnn_plans_like_the_test_set_and_does_not_under_predict(config, loaded,
                                                                                   plan: Plan) -> None:
    from olafhe.jobs.predict import predict

    x, y = workspace.test_set(loaded.data_dir, None)  # all 10,000 test images, to measure only
    plain = 100.0 * float(np.mean(predict(loaded.graph, x, 1000).argmax(1) == y))
    tight = load_config("configs/small_cnn.toml", [*OVERRIDES, "optimizer.accuracy_drop=0.0001"])
    accurate = run_optimize(tight, loaded=loaded, progress=False).plan  # the most accurate plan
    drops = {}
    for name, p in (("accurate", accurate), ("default", plan)):
        acc = 100.0 * float(np.mean(predict(loaded.graph, x, 1000, p).argmax(1) == y))
        drops[name] = (p.predicted.test_drop, plain - acc)
    (pred_a, meas_a), (pred_d, meas_d) = drops["accurate"], drops["default"]
    assert pred_a < pred_d and meas_a < meas_d, drops  # same ranking as on unseen images
    assert meas_a <= pred_a + 0.5 and meas_d <= pred_d + 0.5, drops  # conservative on this model


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


# --------------------------------------------------------------------------- plans bound to their model
@pytest.fixture(scope="module")
def other_checkpoint(loaded, tmp_path_factory):
    """The small CNN's weights, one convolution nudged: the same graph, another checkpoint."""
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    state["conv1.weight"] += 1e-3
    path = tmp_path_factory.mktemp("ckpt") / "other.pt"
    torch.save({"state_dict": state}, path)
    return path


def _no_keys_no_simulation(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("keys were generated or the plan simulated for a mismatched plan")

    for backend in (SimulatorBackend, OpenFHEBackend):
        monkeypatch.setattr(backend, "keygen", refuse)
    monkeypatch.setattr(evaluate_job, "predict", refuse)


def test_plan_records_the_model_it_was_made_for(config, loaded, plan: Plan) -> None:
    assert plan.fingerprint == workspace.fingerprint(config, loaded)
    assert plan.fingerprint.model == "small_cnn" and plan.fingerprint.calibration is not None


def test_plan_for_another_checkpoint_is_refused_before_keygen(plan: Plan, other_checkpoint, monkeypatch) -> None:
    other_config = load_config("configs/small_cnn.toml", [*OVERRIDES, f"model.checkpoint={other_checkpoint}"])
    other = workspace.load(other_config)
    now = workspace.fingerprint(other_config, other)
    assert now.graph == plan.fingerprint.graph and now.checkpoint != plan.fingerprint.checkpoint
    _no_keys_no_simulation(monkeypatch)
    message = (rf"^plan was made for small_cnn \(graph {plan.fingerprint.graph[:8]}, checkpoint "
               rf"{plan.fingerprint.checkpoint[:8]}\) but the config loads small_cnn \(graph {now.graph[:8]}, "
               rf"checkpoint {now.checkpoint[:8]}\); optimize a plan for this model$")
    with pytest.raises(ConfigError, match=message):
        run_infer(other_config, plan, 1, "openfhe", progress=False, loaded=other)
    with pytest.raises(ConfigError, match=message):
        run_evaluate(other_config, plan, 20, progress=False, loaded=other)
    with pytest.raises(ConfigError, match=message):
        predict_plan_seconds(other_config, plan, "openfhe", other)


def test_cli_refuses_a_plan_of_another_model_in_one_line(plan: Plan, other_checkpoint, tmp_path, capsys,
                                                          monkeypatch) -> None:
    path = plan.save(tmp_path / "small.json")
    _no_keys_no_simulation(monkeypatch)
    args = ["configs/small_cnn.toml", *sum((["--set", o] for o in OVERRIDES), []), "--no-progress"]
    other = ["--set", f"model.checkpoint={other_checkpoint}"]
    assert cli.main(["infer", *args, *other, "--plan", str(path), "--backend", "openfhe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olafhe: error: plan was made for small_cnn (graph ")
    assert cli.main(["evaluate", "configs/resnet20.toml", "--plan", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plan was made for small_cnn (graph" in err
    assert "but the config loads resnet20 (graph " in err
    # the case: a ResNet-32 plan (saved before plans had fingerprints) for ResNet-20
    assert cli.main(["infer", "configs/resnet20.toml", "--plan", "docs/results/resnet32-wls-dp.json",
                     "--backend", "openfhe", "--limit", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("olafhe: error: plan was made for resnet32 but the config loads resnet20 (graph ")


def test_plan_without_fingerprint_is_accepted_with_a_warning(config, loaded, plan: Plan, capsys) -> None:
    doc = plan.to_dict()
    del doc["fingerprint"]
    result = run_evaluate(config, Plan.from_dict(doc), 20, progress=False, loaded=loaded)
    assert result["images"] == 20
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olafhe: warning: plan records no model fingerprint")
    run_evaluate(config, plan, 20, progress=False, loaded=loaded)
    assert capsys.readouterr().err == ""  # its own model: silent


def test_other_calibration_settings_are_only_a_warning(loaded, plan: Plan, capsys) -> None:
    recalibrated = load_config("configs/small_cnn.toml", [*OVERRIDES, "data.seed=1"])
    result = run_evaluate(recalibrated, plan, 20, progress=False, loaded=loaded)
    assert result["images"] == 20
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olafhe: warning: plan was calibrated with other settings")
