"""Encrypted end-to-end latency, and the cost model's prediction of it (slow: excluded from CI).

Run: ``.venv/bin/python -m pytest benchmarks/bench_encrypted.py -o addopts="" -m slow -p no:cacheprovider``
(plus ``--benchmark-autosave`` to keep the JSON for ``--benchmark-compare``). Needs a plan from
``olafhe optimize configs/resnet20.toml --out results/r20-wls-dp.json`` for the ResNet-20 case.

* small CNN on OpenFHE (insecure N = 2^13, the config's leveled plan): measured seconds per image vs the
  cost model's prediction (operation counts x ``openfhe-N8192`` table); the goal is within +-25 %.
* ResNet-20 with a dp plan on OpenFHE at N = 2^16, 128-bit, with bootstrapping (~7 minutes, ~18 GB).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from olafhe import pipeline
from olafhe.core.config import load_config
from olafhe.core.engine import compile_program, encrypted_inference
from olafhe.core.plan import Plan

pytestmark = pytest.mark.slow


def _setup(config_path: str, plan: Plan, overrides: list[str] | None = None):  # noqa: ANN202
    config = load_config(config_path, overrides)
    loaded = pipeline.load(config)
    backend = pipeline.make_backend(config, "openfhe", plan)
    program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, backend.capabilities().slots,
                              plan.input_level, max_rotation_keys=config.backend.max_rotation_keys)
    x, _ = pipeline.test_set(loaded.data_dir, 1)
    return config, backend, program, x[0].numpy()


def test_small_cnn_openfhe_predicted_vs_measured(benchmark, tmp_path: Path) -> None:
    config = load_config("configs/small_cnn.toml")
    plan = pipeline.run_optimize(config, progress=False).plan
    config, backend, program, image = _setup("configs/small_cnn.toml", plan)
    client, server = backend.keygen(program.key_request())
    predicted = pipeline.predict_program_seconds(program, pipeline.cost_table(config), backend, image)
    benchmark.pedantic(encrypted_inference, args=(program, client, server, image), rounds=2, iterations=1)
    measured = benchmark.stats.stats.min
    benchmark.extra_info.update(predicted_s=predicted, measured_s=measured)
    assert abs(measured - predicted) <= 0.25 * measured, (predicted, measured)


@pytest.mark.skipif(not Path("results/r20-wls-dp.json").is_file(), reason="needs results/r20-wls-dp.json")
def test_resnet20_dp_plan_openfhe(benchmark) -> None:
    plan = Plan.load("results/r20-wls-dp.json")
    config, backend, program, image = _setup("configs/resnet20.toml", plan)
    client, server = backend.keygen(program.key_request())
    predicted = pipeline.predict_program_seconds(program, pipeline.cost_table(config), backend, image)
    benchmark.pedantic(encrypted_inference, args=(program, client, server, image), rounds=1, iterations=1)
    benchmark.extra_info.update(predicted_s=predicted, planner_predicted_s=plan.predicted["latency_s"],
                                bootstraps=plan.bootstraps)
