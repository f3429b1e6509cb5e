"""Plans bound to their model: the fingerprint of a graph, its JSON form, and the check jobs run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from olafhe.core.errors import ConfigError, DataError
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.fingerprint import ModelFingerprint, check_plan_fingerprint, graph_fingerprint
from olafhe.core.planning.plan import Plan, PlanCKKS

test_engine = pytest.importorskip("test_engine", reason="reuses the engine tests' tiny model")


def _tiny() -> Graph:
    return test_engine.tiny_graph()


def test_same_graph_same_fingerprint_and_each_part_changes_its_hash() -> None:
    a, b = graph_fingerprint(_tiny(), "tiny"), graph_fingerprint(_tiny(), "tiny")
    assert a == b and len(a.graph) == len(a.checkpoint) == 64 and a.calibration is None
    weights = _tiny()
    weights["conv2"].params["weight"] = weights["conv2"].params["weight"] + 1e-9
    other = graph_fingerprint(weights, "tiny")
    assert other.graph == a.graph and other.checkpoint != a.checkpoint
    strided = _tiny()
    strided["conv2"].params["stride"] = (2, 2)
    assert graph_fingerprint(strided, "tiny").graph != a.graph
    assert graph_fingerprint(test_engine.tiny_graph(seed=1), "tiny").checkpoint != a.checkpoint


def test_plan_writes_and_reads_its_fingerprint_byte_identically(tmp_path) -> None:
    fp = graph_fingerprint(_tiny(), "tiny", calibration="c" * 64)
    plan = Plan("tiny", "wls", "dp", [], input_level=3, ckks=PlanCKKS(levels=6), fingerprint=fp)
    path = plan.save(tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert list(doc)[-1] == "fingerprint" and doc["fingerprint"] == fp.to_dict()
    again = Plan.load(path)
    assert again.fingerprint == fp
    assert again.save(tmp_path / "again.json").read_bytes() == path.read_bytes()
    assert "fingerprint" not in Plan("tiny", "wls", "dp", [], input_level=3).to_dict()


@pytest.mark.parametrize("bad", [[], {"model": "m", "graph": "g"}, {"model": "m", "graph": "g", "checkpoint": "c",
                                                                     "colour": "red"},
                                 {"model": "m", "graph": 1, "checkpoint": "c"}])
def test_corrupt_fingerprint_is_refused(bad) -> None:
    doc = {"model": "m", "approximator": "a", "optimizer": "o", "layers": [], "ckks": {}, "fingerprint": bad}
    with pytest.raises(DataError, match="fingerprint"):
        Plan.from_dict(doc, "p.json")


def test_check_names_both_models_and_warns_only_for_calibration() -> None:
    made = graph_fingerprint(_tiny(), "resnet32", calibration="a" * 64)
    now = graph_fingerprint(test_engine.tiny_graph(seed=1), "resnet20", calibration="a" * 64)
    warnings: list[str] = []
    with pytest.raises(ConfigError) as err:
        check_plan_fingerprint(made, now, "resnet32", warnings.append)
    assert str(err.value) == (f"plan was made for resnet32 (graph {made.graph[:8]}, checkpoint {made.checkpoint[:8]}) "
                              f"but the config loads resnet20 (graph {now.graph[:8]}, checkpoint "
                              f"{now.checkpoint[:8]}); optimize a plan for this model")
    check_plan_fingerprint(made, dataclasses.replace(made), "resnet32", warnings.append)
    assert warnings == []
    recalibrated = ModelFingerprint(made.model, made.graph, made.checkpoint, "b" * 64)
    check_plan_fingerprint(made, recalibrated, "resnet32", warnings.append)
    assert len(warnings) == 1 and "calibrated with other settings (calibration aaaaaaaa, now bbbbbbbb" in warnings[0]
    check_plan_fingerprint(made, ModelFingerprint(made.model, made.graph, made.checkpoint), "resnet32",
                           warnings.append)
    assert len(warnings) == 1  # an unknown calibration is not a mismatch


def test_plan_without_fingerprint_is_accepted_with_a_warning_unless_it_names_another_model(capsys) -> None:
    now = graph_fingerprint(_tiny(), "resnet20")
    check_plan_fingerprint(None, now, "resnet20")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("olafhe: warning: plan records no model fingerprint")
    with pytest.raises(ConfigError, match=r"^plan was made for resnet32 but the config loads resnet20 \(graph "):
        check_plan_fingerprint(None, now, "resnet32")

