"""Cost tables per machine: the machine key, ``olafhe costs --quick``, finding this machine's table, and the
warnings when plans are priced (or were priced) with another machine's table.

Measurements run at an insecure N = 2^11 (one bootstrap configuration over 256 slots: a few seconds);
``$OLAFHE_COSTS`` is a fresh temporary directory in every test.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from olafhe.backends.openfhe.common import load_openfhe

load_openfhe()   # before anything starts libgomp: OMP_WAIT_POLICY=PASSIVE (see test_openfhe_backend.py)

from olafhe import cli  # noqa: E402
from olafhe.backends.simulator import SimulatorBackend  # noqa: E402
from olafhe.core.config import load_config  # noqa: E402
from olafhe.core.contract.ckks import CKKSParams  # noqa: E402
from olafhe.core.errors import ConfigError, CostTableWarning  # noqa: E402
from olafhe.core.planning import machine  # noqa: E402
from olafhe.core.planning.costs import CostTable, load_cost_table, machine_cost_table_path  # noqa: E402
from olafhe.core.planning.plan import Plan, PlanCKKS  # noqa: E402
from olafhe.jobs.backend import cost_table  # noqa: E402
from olafhe.jobs.infer import run_infer  # noqa: E402
from olafhe.jobs.latency import predict_plan_seconds  # noqa: E402
from olafhe.jobs.measure_costs import merge_cost_tables  # noqa: E402
from olafhe.jobs.optimize import _plan_ckks_for  # noqa: E402
from olafhe.jobs.quick_costs import bootstrap_configurations, quick_runs, quick_slot_counts  # noqa: E402

XEON = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
XEON_KEY = "intel-xeon-platinum-8375c-t2"
TINY = ["backend.ckks.ring_dimension=2048", "backend.ckks.levels=3", "backend.ckks.level_budget=[1, 1]",
        "backend.ckks.bootstrap=true", "backend.ckks.scale_bits=59", "backend.ckks.threads=2"]


@pytest.fixture(autouse=True)
def costs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$OLAFHE_COSTS`` per test, and this machine pretending to be a 2-thread Xeon 8375C."""
    monkeypatch.setenv(machine.COSTS_ENV, str(tmp_path / "costs"))
    monkeypatch.setattr(machine, "cpu_model", lambda: XEON)
    return tmp_path / "costs"


@pytest.fixture
def tiny_config():  # noqa: ANN201
    return load_config("configs/small_cnn.toml", TINY)


def test_machine_key_is_cpu_model_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    assert machine.cpu_slug(XEON) == "intel-xeon-platinum-8375c"
    assert machine.cpu_slug("AMD EPYC 7R13 Processor") == "amd-epyc-7r13"
    assert machine.cpu_slug("AMD Ryzen 9 5950X 16-Core Processor") == "amd-ryzen-9-5950x"
    assert machine.machine_key(2) == XEON_KEY and machine.machine_key(8) == "intel-xeon-platinum-8375c-t8"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")   # unconfigured: what OpenMP would run
    assert machine.machine_key(None) == "intel-xeon-platinum-8375c-t3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 5)
    assert machine.machine_key(None) == "intel-xeon-platinum-8375c-t5"
    described = machine.machine_description(2)
    assert (described["cpu"], described["key"], described["threads"]) == (XEON, XEON_KEY, 2)
    # tables measured before keys were recorded: the key follows from their CPU and threads
    assert load_cost_table("openfhe", 65536).machine_key == "amd-epyc-t2"


def test_plan_records_the_table_and_machine_that_priced_it() -> None:
    ckks = PlanCKKS(ring_dimension=4096, levels=3, cost_table="openfhe-N4096", cost_machine=XEON_KEY)
    doc = ckks.to_dict()
    assert doc["cost_machine"] == XEON_KEY and PlanCKKS.from_dict(json.loads(json.dumps(doc))) == ckks
    assert "cost_machine" not in replace(ckks, cost_machine=None).to_dict()   # old plans re-save unchanged
    table = load_cost_table("openfhe", 4096)
    backend = SimulatorBackend(CKKSParams(ring_dimension=4096, levels=5, insecure=True))
    recorded = _plan_ckks_for(backend, backend.capabilities(), table, 1)(3)
    assert (recorded.cost_table, recorded.cost_machine) == ("openfhe-N4096", "amd-epyc-t2")


def test_quick_calibration_covers_every_shipped_bootstrap_configuration() -> None:
    """At N = 2^16: levels 3..6 at a 59-bit scale, 8 at 55 bits and 9 at 50 bits, each over 2^14 and 2^15 slots."""
    base = CKKSParams(ring_dimension=65536, levels=6, scale_bits=59, first_mod_bits=60)
    configs = bootstrap_configurations(base, load_cost_table("openfhe", 65536))
    assert [(c.levels, c.scale_bits, c.first_mod_bits) for c in configs] == [
        (3, 59, 60), (4, 59, 60), (5, 59, 60), (6, 59, 60), (8, 55, 60), (9, 50, 58)]
    slots = quick_slot_counts(65536)
    assert slots == [16384, 32768]
    runs = quick_runs(configs, slots, [3, 7, 15, 31, 63], lambda d: (d + 1).bit_length() - 1)
    assert sorted((r.params.levels, r.params.slots) for r in runs) == sorted(
        (c.levels, s) for c in configs for s in slots)
    measured = [lv for r in runs for lv in r.levels]
    assert sorted(measured) == list(range(10))   # every level once, in the smallest context reaching it
    series = {(d, lv) for r in runs for d, lvs in r.chebyshev.items() for lv in lvs}
    assert series == {(d, depth) for d, depth in ((3, 2), (7, 3), (15, 4), (31, 5), (63, 6))} | {
        (d, 9) for d in (3, 7, 15, 31, 63)}
    with pytest.raises(ConfigError, match="powers of two up to N/2 = 32768"):
        quick_slot_counts(65536, [65536])


def test_costs_quick_writes_this_machines_table_and_cost_table_finds_it(
        tiny_config, costs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    path = costs_dir / XEON_KEY / "openfhe-N2048.json"
    older = CostTable("openfhe", 2048, {"rotate": {5: 9.0}}, sparse_bootstrap={256: {3: 99.0}},
                      machine={"cpu": XEON, "key": XEON_KEY, "threads": 2}, created="2026-01-01")
    older.save(path)   # an earlier measurement of this machine: merged into, not lost
    sets = [arg for value in TINY for arg in ("--set", value)]
    assert cli.main(["costs", "configs/small_cnn.toml", *sets, "--quick", "--slots", "256", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"written to {path} (merged" in out and "quick calibration took" in out
    table = CostTable.load(path)
    assert table.machine_key == XEON_KEY and table.machine["threads"] == 2
    assert table.ops["rotate"][5] == 9.0 and sorted(table.ops["multiply"]) == [1, 2, 3]
    assert 0 < table.sparse_bootstrap[256][3] < 99.0   # the new measurement wins
    assert sorted(table.ops["chebyshev_3"]) == [2, 3] and table.params["calibration"]["mode"] == "quick"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CostTableWarning)   # this machine's table: no fallback warning
        found = cost_table(tiny_config, "openfhe", slots=256)
    assert found.bootstrap_cost(3) == table.sparse_bootstrap[256][3] and found.machine_key == XEON_KEY
    assert machine_cost_table_path("openfhe", 2048, XEON_KEY) == path


def test_fallback_to_the_shipped_table_warns_naming_both_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config("configs/small_cnn.toml", ["backend.ckks.threads=2"])   # N = 2^13, shipped
    with pytest.warns(CostTableWarning) as caught:
        table = cost_table(config, "openfhe")
    message = str(caught[0].message)
    for expected in (XEON, XEON_KEY, "AMD EPYC", "amd-epyc-t2", "olafhe costs CONFIG --quick"):
        assert expected in message, expected
    assert table.to_dict() == load_cost_table("openfhe", 8192).to_dict()   # priced exactly as before
    monkeypatch.setattr(machine, "cpu_model", lambda: "AMD EPYC")   # the machine that measured it
    with warnings.catch_warnings():
        warnings.simplefilter("error", CostTableWarning)
        assert cost_table(config, "openfhe").machine_key == "amd-epyc-t2"


def test_plan_priced_on_another_machine_warns_in_infer_and_latency(small_cnn_plan_file: Path) -> None:
    config = load_config("configs/small_cnn.toml", ["data.calibration_images=600", "optimizer.eval_images=300",
                                                    "optimizer.accuracy_drop=18", "backend.ckks.threads=2"])
    plan = Plan.load(small_cnn_plan_file)
    assert plan.ckks.cost_machine == "amd-epyc-t2"   # optimized with the shipped table
    with pytest.warns(CostTableWarning, match=r"priced with cost table openfhe-N8192 of machine amd-epyc-t2.*"
                      + XEON_KEY):
        run_infer(config, plan, 1, "simulator", progress=False)
    here = Plan.from_dict(plan.to_dict() | {"ckks": plan.ckks.to_dict() | {"cost_machine": XEON_KEY}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_plan_seconds(config, here, "openfhe")
    assert not [w for w in caught if "the plan was priced" in str(w.message)]   # priced here: no warning
    with pytest.warns(CostTableWarning, match="the plan was priced"):
        predict_plan_seconds(config, plan, "openfhe")


def test_cli_prints_olafhe_warnings_as_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    from olafhe.cli_common import print_olafhe_warnings

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)   # restored after the test
    print_olafhe_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("priced on amd-epyc-t2", CostTableWarning, stacklevel=1)
    assert capsys.readouterr().err == "olafhe: warning: priced on amd-epyc-t2\n"


def test_merge_into_this_machines_older_table_keeps_the_new_measurements() -> None:
    old = CostTable("openfhe", 4096, {"multiply": {1: 1.0, 2: 2.0}}, {3: 10.0}, machine={"key": "old-t2"},
                    created="2026-01-01")
    new = CostTable("openfhe", 4096, {"multiply": {2: 5.0}}, {3: 7.0, 5: 9.0}, machine={"key": XEON_KEY},
                    created="2026-02-01")
    merged = merge_cost_tables([old, new], prefer="last")
    assert merged.ops == {"multiply": {1: 1.0, 2: 5.0}} and merged.bootstrap == {3: 7.0, 5: 9.0}
    assert merged.machine_key == XEON_KEY and merged.params["merged_from"] == 2
