"""Encrypted end-to-end latency, and the cost model's prediction of it (slow: excluded from CI).

Run: ``.venv/bin/python -m pytest benchmarks/bench_encrypted.py -o addopts="" -m slow -p no:cacheprovider``
(plus ``--benchmark-autosave`` to keep the JSON for ``--benchmark-compare``). The ResNet-20 case runs
the shipped plan ``docs/results/resnet20-wls-dp.json`` (or ``$OLAFHE_BENCH_PLAN``).

* small CNN on OpenFHE (insecure N = 2^13, the config's leveled plan): measured seconds per image vs the
  cost model's prediction (operation counts x ``openfhe-N8192`` table); the goal is within +-25 %.
* ResNet-20 with a dp plan on OpenFHE at N = 2^16, 128-bit, with bootstrapping (~6 minutes, ~18 GB).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.config import load_config
from olafhe.core.planning.plan import Plan
from olafhe.jobs import workspace
from olafhe.jobs.backend import cost_table, make_backend
from olafhe.jobs.latency import predict_program_seconds
from olafhe.jobs.optimize import run_optimize

pytestmark = pytest.mark.slow
RESNET20_PLAN = Path(os.environ.get("OLAFHE_BENCH_PLAN", "docs/results/resnet20-wls-dp.json"))


def _setup(config_path: str, plan: Plan, overrides: list[str] | None = None):  # noqa: ANN202
    config = load_config(config_path, overrides)
    loaded = workspace.load(config)
    backend = make_backend(config, "openfhe", plan, loaded.graph)
    program = compile_program(loaded.graph, {ly.name: ly for ly in plan.layers}, backend.capabilities().slots,
                              plan.input_level, max_rotation_keys=config.backend.max_rotation_keys)
    x, _ = workspace.test_set(loaded.data_dir, 1)
    return config, backend, program, x[0].numpy()


def test_small_cnn_openfhe_predicted_vs_measured(benchmark, tmp_path: Path) -> None:
    config = load_config("configs/small_cnn.toml")
    plan = run_optimize(config, progress=False).plan
    config, backend, program, image = _setup("configs/small_cnn.toml", plan)
    client, server = backend.keygen(program.key_request())
    costs = cost_table(config, slots=backend.capabilities().slots)
    predicted = predict_program_seconds(program, costs, backend, image)
    benchmark.pedantic(encrypted_inference, args=(program, client, server, image), rounds=2, iterations=1)
    measured = benchmark.stats.stats.min
    benchmark.extra_info.update(predicted_s=predicted, measured_s=measured)
    assert abs(measured - predicted) <= 0.25 * measured, (predicted, measured)


@pytest.mark.skipif(not RESNET20_PLAN.is_file(), reason=f"needs {RESNET20_PLAN}")
def test_resnet20_dp_plan_openfhe(benchmark) -> None:
    plan = Plan.load(RESNET20_PLAN)
    config, backend, program, image = _setup("configs/resnet20.toml", plan)
    client, server = backend.keygen(program.key_request())
    costs = cost_table(config, slots=backend.capabilities().slots)
    predicted = predict_program_seconds(program, costs, backend, image)
    benchmark.pedantic(encrypted_inference, args=(program, client, server, image), rounds=1, iterations=1)
    benchmark.extra_info.update(predicted_s=predicted, planner_predicted_s=plan.predicted.latency_s,
                                bootstraps=plan.bootstraps)
