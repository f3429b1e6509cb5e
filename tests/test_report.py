"""Reports: plots, the Pareto front, Markdown/README output, and run_bench's orchestration.

``run_bench`` is tested with the job steps replaced by fakes that return real Plans, so the test
checks what the bench itself decides (files, rows, speedups, the uniform degree search, failures)
in well under a second, without loading a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from olafhe.core.errors import DataError, InfeasibleError, OlafheError, PluginError
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanLayer, PlanPredicted
from olafhe.core.poly.approximation import Approximation
from olafhe.report import bench, markdown, plots
from olafhe.report.runs import load_measured_runs, run_fields

REPO = Path(__file__).resolve().parents[1]
SMALL_CNN = str(REPO / "configs" / "small_cnn.toml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_plan(degrees: list[int], boots: tuple[int, ...] = (), model: str = "m", approximator: str = "wls",
              optimizer: str = "dp", latency: float = 10.0, accuracy: float | None = 90.0,
              target: float | None = 89.0) -> Plan:
    layers = []
    for i, d in enumerate(degrees):
        approx = Approximation("relu", approximator, (-4.0, 4.0), (np.linspace(1.0, 0.1, d + 1),), layer=f"relu{i}")
        layers.append(PlanLayer(f"relu{i}", approx, level_in=approx.depth, bootstrap_before=i in boots,
                                depth=approx.depth))
    predicted = PlanPredicted(latency_s=latency, accuracy=accuracy, target_accuracy=target)
    ckks = PlanCKKS(ring_dimension=65536, security_bits=128)
    return Plan(model, approximator, optimizer, layers, 10, ckks, predicted)


# ------------------------------------------------------------------------------------------------
# plots and the front
# ------------------------------------------------------------------------------------------------


def test_plot_degrees_writes_a_png(tmp_path: Path) -> None:
    plans = {"composite/uniform": make_plan([27] * 5, boots=(2, 4)),
             "wls/dp": make_plan([7, 15, 31, 3, 15], boots=(3,)),
             "wls/greedy": make_plan([15, 15, 15, 7, 7])}
    out = plots.plot_degrees(plans, tmp_path / "sub" / "degrees.png")
    assert out == tmp_path / "sub" / "degrees.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    with pytest.raises(ValueError):
        plots.plot_degrees({}, tmp_path / "empty.png")


def test_pareto_front() -> None:
    pts = [(10.0, 90.0), (5.0, 89.0), (7.0, 88.0), (20.0, 91.5), (5.0, 85.0), (float("nan"), 99.0), (30.0, 91.5)]
    # (5, 89) fastest; (7, 88) is beaten by it; (10, 90) and (20, 91.5) improve; (30, 91.5) does not
    assert plots.pareto_front(pts) == [1, 0, 3]
    assert plots.pareto_front([]) == []


def test_plot_pareto_with_predicted_and_measured(tmp_path: Path) -> None:
    rows = [
        {"label": "a", "accuracy": 91.0, "predicted_latency_s": 100.0, "measured_latency_s": 120.0, "model": "m"},
        {"label": "b", "accuracy": 90.5, "predicted_latency_s": 50.0, "measured_latency_s": None, "model": "m"},
        {"approximator": "wls", "optimizer": "dp", "accuracy": 90.9, "predicted_latency_s": 40.0},
        {"label": "failed", "accuracy": None, "predicted_latency_s": None},
    ]
    out = plots.plot_pareto(rows, tmp_path / "p.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="accuracy"):
        plots.plot_pareto([rows[-1]], tmp_path / "none.png")
    with pytest.raises(ValueError, match="latency"):
        plots.plot_pareto([{"accuracy": 90.0}], tmp_path / "nolat.png")


# ------------------------------------------------------------------------------------------------
# Markdown, speedups, README
# ------------------------------------------------------------------------------------------------


def _row(approx: str, opt: str, model: str = "m", **fields: object) -> dict:
    return bench._complete({"model": model, "approximator": approx, "optimizer": opt, **fields})


def test_speedups_are_relative_to_the_baseline_of_the_same_model() -> None:
    rows = [_row("composite-minimax", "uniform", predicted_latency_s=100.0, measured_latency_s=150.0),
            _row("wls", "dp", predicted_latency_s=25.0, measured_latency_s=50.0),
            _row("wls", "greedy", predicted_latency_s=40.0),
            _row("wls", "dp", model="other", predicted_latency_s=10.0)]
    bench.add_speedups(rows, ("composite-minimax", "uniform"))
    assert rows[0]["speedup_predicted"] == pytest.approx(1.0)
    assert rows[1]["speedup_predicted"] == pytest.approx(4.0)
    assert rows[1]["speedup_measured"] == pytest.approx(3.0)
    assert rows[2]["speedup_predicted"] == pytest.approx(2.5) and rows[2]["speedup_measured"] is None
    assert rows[3]["speedup_predicted"] is None  # no baseline row for model "other"


def test_compact_degrees() -> None:
    assert markdown.compact_degrees([7, 15, 15, 15, 31, 7, 7]) == "7, 15×3, 31, 7×2"
    assert markdown.compact_degrees([]) == ""


def test_results_markdown() -> None:
    rows = [_row("composite-minimax", "uniform", accuracy=91.2, tuning_accuracy=91.0, bootstraps=9, total_depth=90,
                 predicted_latency_s=300.0, speedup_predicted=1.0, security_bits=128, degrees=[27] * 3, images=10000),
            _row("wls", "dp", accuracy=91.0, tuning_accuracy=90.1, meets_target=False, bootstraps=4, total_depth=40,
                 predicted_latency_s=100.0, speedup_predicted=3.0, security_bits=0, degrees=[7, 15, 15],
                 images=10000),
            _row("wls", "greedy", error="no plan | at all")]
    md = markdown.results_markdown(rows, {"cpu": "Test CPU", "cores": 2, "memory_gb": 24.0, "python": "3.10.13"},
                                 "olafhe bench configs/resnet20.toml --out results")
    lines = md.splitlines()
    assert lines[0].startswith("| model | approximator | optimizer | backend | test acc. (sim.)")
    table = [ln for ln in lines if ln.startswith("| ")]
    assert len(table) == 4
    assert all(ln.count(" | ") == table[0].count(" | ") for ln in table[1:3])
    assert "| 91.20% | 91.00% | 9 | 90 | 300.0 | 1.00× | — | — | — | 128 | 27×3 |" in table[1]
    assert "90.10% (below target)" in table[2] and "**0 (INSECURE)**" in table[2] and "7, 15×2" in table[2]
    assert "failed: no plan \\| at all" in table[3]
    assert "simulator over 10000 CIFAR-10 test images" in md
    assert "Machine: Test CPU, 2 cores, 24.0 GB RAM, Python 3.10.13." in md
    assert "```bash\nolafhe bench configs/resnet20.toml --out results\n```" in md


def test_update_readme_replaces_only_the_marked_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\nbefore\n{markdown.README_START}\nold results\n{markdown.README_END}\nafter\n")
    markdown.update_readme(readme, "| new | table |\n")
    text = readme.read_text()
    assert text == f"# t\nbefore\n{markdown.README_START}\n| new | table |\n{markdown.README_END}\nafter\n"
    markdown.update_readme(readme, "| new | table |")
    assert readme.read_text() == text  # idempotent
    readme.write_text("no markers\n")
    with pytest.raises(DataError, match="results:start"):
        markdown.update_readme(readme, "x")
    with pytest.raises(DataError, match="does not exist"):
        markdown.update_readme(tmp_path / "missing.md", "x")


def test_bench_command() -> None:
    cmd = bench.bench_command(["configs/resnet20.toml"], Path("out dir"), ["model.name=resnet20"], True, 500)
    assert cmd == "olafhe bench configs/resnet20.toml --out 'out dir' --set model.name=resnet20 --encrypted --limit 500"
    assert bench.bench_command(["c.toml"], Path("o"), None, False, None, backends=["openfhe", "tenseal"]) == (
        "olafhe bench c.toml --out o --backends openfhe,tenseal")
    custom = bench.bench_command(["c.toml"], Path("o"), None, False, None, combos=[("wls", "dp")])
    assert custom.startswith("python -c ") and "combos=[('wls', 'dp')]" in custom


# ------------------------------------------------------------------------------------------------
# run_bench with fake job steps
# ------------------------------------------------------------------------------------------------


class FakePipeline:
    """Stands in for the job steps run_bench calls, recording the calls."""

    def __init__(self) -> None:
        self.optimize_calls: list[tuple[str, str, int | None, list[int]]] = []
        self.loads = 0

    def load(self, config: Any) -> SimpleNamespace:
        self.loads += 1
        return SimpleNamespace(graph=None, data_dir=None)

    def get_calibration(self, config: Any, loaded: Any, log: Any = None, progress: bool = True) -> str:
        return "calibration"

    def run_optimize(self, config: Any, approximator: str, optimizer: str, log: Any = None, progress: bool = True,
                     loaded: Any = None, calibration: Any = None) -> SimpleNamespace:
        assert calibration == "calibration" and loaded is not None  # shared, not reloaded
        degree = config.optimizer.optimizer_params.get("degree")
        self.optimize_calls.append((approximator, optimizer, degree, list(config.approximation.degrees)))
        if approximator == "wls" and optimizer == "greedy":
            raise InfeasibleError("greedy found nothing")
        if optimizer == "uniform" and approximator == "wls":
            if degree == 3:
                raise OlafheError("degree 3 does not fit")
            accuracy = {5: 80.0, 7: 86.0}.get(degree, 99.0)
            plan = make_plan([degree] * 3, model=config.model.name, approximator=approximator, optimizer=optimizer,
                             latency=20.0, accuracy=accuracy, target=85.0)
        elif approximator == "composite-minimax" and optimizer == "published":  # consistent modulus: slower
            plan = make_plan([27] * 3, boots=(0, 1, 2), model=config.model.name, approximator=approximator,
                             optimizer=optimizer, latency=80.0, accuracy=90.0, target=85.0)
            plan.extra.other["placement"] = {"name": "published", "modulus": "consistent"}
        elif approximator == "composite-minimax":
            plan = make_plan([27] * 3, boots=(1,), model=config.model.name, approximator=approximator,
                             optimizer=optimizer, latency=60.0, accuracy=90.0, target=85.0)
        else:
            plan = make_plan([7, 15, 5], model=config.model.name, approximator=approximator, optimizer=optimizer,
                             latency=15.0, accuracy=88.0, target=85.0)
        return SimpleNamespace(plan=plan)

    def run_evaluate(self, config: Any, plan: Plan, limit: int | None, progress: bool = True,
                     loaded: Any = None) -> dict:
        return {"images": limit or 10000, "correct": 0, "accuracy": 80.0 + plan.degrees[0] / 10}

    def run_infer(self, config: Any, plan: Plan, limit: int, backend_name: str | None = None, progress: bool = True,
                  loaded: Any = None, log: Any = None) -> dict:
        factor = 3.0 if backend_name == "tenseal" else 1.5
        return {"images": 1, "correct": 1, "agree_with_simulator": 1.0,
                "seconds_per_image": plan.predicted.latency_s * factor, "peak_rss_mb": 1234.0,
                "backend": backend_name or config.backend.name}

    def predict_plan_seconds(self, config: Any, plan: Plan, backend_name: str, loaded: Any = None) -> float:
        if backend_name == "tenseal" and plan.bootstraps:
            raise OlafheError("backend 'tenseal' cannot bootstrap")
        return plan.predicted.latency_s * 2.0

    def approximator_for(self, config: Any, name: str | None = None) -> SimpleNamespace:
        return SimpleNamespace(default_degrees=lambda: [15, 3, 7, 5])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    fp = FakePipeline()
    for name in ("load", "get_calibration", "run_optimize", "run_evaluate", "run_infer", "approximator_for",
                 "predict_plan_seconds"):
        monkeypatch.setattr(bench, name, getattr(fp, name))  # where run_bench looks them up
    return fp


def test_run_bench_orchestration(fake: FakePipeline, tmp_path: Path) -> None:
    logs: list[str] = []
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{markdown.README_START}\n{markdown.README_END}\n")
    doc = bench.run_bench([SMALL_CNN], tmp_path / "out", set_overrides=["approximation.degrees=[]"],
                           log=logs.append, encrypted=True, limit=200, readme=readme, progress=False)
    out = tmp_path / "out"
    assert fake.loads == 1
    # uniform search: degrees in increasing order, 3 fails, 5 misses the target, 7 meets it -> stop
    uniform = [(c[2], c[3]) for c in fake.optimize_calls if c[:2] == ("wls", "uniform")]
    assert uniform == [(3, [3]), (5, [5]), (7, [7])]
    rows = {(r["approximator"], r["optimizer"]): r for r in doc["rows"]}
    assert list(rows) == list(bench.DEFAULT_COMBOS)
    assert bench.DEFAULT_COMBOS[:2] == (("composite-minimax", "uniform"), ("composite-minimax", "published"))
    base, pub, uni, greedy, dp = (rows[c] for c in bench.DEFAULT_COMBOS)
    assert base["bootstraps"] == 1 and base["degrees"] == [27, 27, 27] and base["speedup_predicted"] == 1.0
    # the published baseline: its own row, labelled, consistent modulus, slower than our placement of it
    assert pub["label"] == "composite-minimax/published" and pub["modulus"] == "consistent"
    assert base["modulus"] is None and pub["bootstraps"] == 3 and pub["degrees"] == base["degrees"]
    assert pub["speedup_predicted"] == pytest.approx(60.0 / 80.0)
    assert ("composite-minimax", "published", None, []) in fake.optimize_calls  # optimized, not degree-searched
    assert uni["degrees"] == [7, 7, 7] and uni["meets_target"] is True and uni["tuning_accuracy"] == 86.0
    assert [h["degree"] for h in uni["uniform_search"]] == [3, 5, 7] and "error" in uni["uniform_search"][0]
    assert uni["speedup_predicted"] == pytest.approx(3.0)
    assert dp["speedup_predicted"] == pytest.approx(4.0) and dp["speedup_measured"] == pytest.approx(4.0)
    assert dp["measured_latency_s"] == pytest.approx(22.5) and dp["peak_rss_mb"] == 1234.0
    assert dp["accuracy"] == pytest.approx(80.7) and dp["images"] == 200
    assert dp["total_depth"] == sum(a.depth for a in make_plan([7, 15, 5]).approximations().values())
    assert greedy["error"] == "greedy found nothing" and greedy["accuracy"] is None
    assert set(bench.ROW_DEFAULTS) <= set(greedy) and set(bench.ROW_DEFAULTS) <= set(dp)  # one schema
    # files
    for approx, opt in (c for c in bench.DEFAULT_COMBOS if c != ("wls", "greedy")):
        saved = Plan.load(out / f"small_cnn-{approx}-{opt}.json")
        assert saved.degrees == rows[(approx, opt)]["degrees"]
    assert not (out / "small_cnn-wls-greedy.json").exists()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(doc["rows"]))
    assert on_disk["command"].startswith("olafhe bench ") and "--encrypted --limit 200" in on_disk["command"]
    md = (out / "results.md").read_text()
    plans_table, runs_table = md.split("Encrypted runs")
    assert plans_table.count("\n| small_cnn |") == 5 and "failed: greedy found nothing" in plans_table
    assert "| composite-minimax | published |" in plans_table
    assert runs_table.count("\n| small_cnn |") == 4  # one line per encrypted run (greedy failed before it)
    assert (out / "small_cnn-degrees.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "small_cnn-pareto.png").read_bytes().startswith(PNG_MAGIC)
    assert md.strip() in readme.read_text()
    assert any("greedy found nothing" in line for line in logs)


def test_run_bench_fixed_uniform_degree_and_custom_combos(fake: FakePipeline, tmp_path: Path) -> None:
    doc = bench.run_bench([SMALL_CNN], tmp_path, log=lambda _m: None, combos=[("wls", "dp"), ("wls", "uniform")],
                           uniform_degree=15, progress=False)
    assert [c[2] for c in fake.optimize_calls if c[1] == "uniform"] == [15]
    dp, uni = doc["rows"]
    assert dp["speedup_predicted"] == 1.0 and uni["speedup_predicted"] == pytest.approx(15.0 / 20.0)
    assert uni["measured_latency_s"] is None  # not encrypted
    assert doc["command"].startswith("python -c")
    fake.optimize_calls.clear()
    bench.run_bench([SMALL_CNN], tmp_path, set_overrides=["optimizer.optimizer_params={degree = 7}"],
                     log=lambda _m: None, combos=[("wls", "uniform")], progress=False)
    assert [c[2] for c in fake.optimize_calls] == [7]  # a degree the config fixes is used as is


def test_run_bench_backends_side_by_side(fake: FakePipeline, tmp_path: Path) -> None:
    """One plan, one row per backend: that backend's predicted and measured latency, speedups per backend."""
    doc = bench.run_bench([SMALL_CNN], tmp_path, log=lambda _m: None, encrypted=True, progress=False,
                           combos=[("composite-minimax", "uniform"), ("wls", "dp")], backends=["openfhe", "tenseal"])
    assert len(fake.optimize_calls) == 2  # plans are optimized once, priced on every backend
    rows = {(r["approximator"], r["backend"]): r for r in doc["rows"]}
    assert list(rows) == [("composite-minimax", "openfhe"), ("composite-minimax", "tenseal"),
                          ("wls", "openfhe"), ("wls", "tenseal")]
    dp_o, dp_t = rows[("wls", "openfhe")], rows[("wls", "tenseal")]
    assert dp_o["predicted_latency_s"] == 15.0 and dp_t["predicted_latency_s"] == 30.0  # tenseal's own table
    assert dp_o["measured_latency_s"] == pytest.approx(22.5) and dp_t["measured_latency_s"] == pytest.approx(45.0)
    assert dp_o["speedup_predicted"] == pytest.approx(4.0)
    base_t = rows[("composite-minimax", "tenseal")]  # the baseline bootstraps: tenseal refuses it, clearly
    assert "cannot bootstrap" in base_t["error"] and dp_t["speedup_predicted"] is None
    assert dp_t["label"] == "wls/dp@tenseal" and dp_t["accuracy"] == dp_o["accuracy"]
    md = (tmp_path / "results.md").read_text()
    assert "| backend |" in md and "| small_cnn | wls | dp | tenseal |" in md
    assert "backends=['openfhe', 'tenseal']" in doc["command"]
    with pytest.raises(PluginError, match="nope"):
        bench.run_bench([SMALL_CNN], tmp_path, backends=["nope"], progress=False)


def test_run_bench_reuses_saved_plans_and_measured_runs(fake: FakePipeline, tmp_path: Path) -> None:
    """--plans skips optimizing; --measured fills the rows whose plan a saved encrypted run measured exactly."""
    combos = [("composite-minimax", "uniform"), ("wls", "dp")]
    first = bench.run_bench([SMALL_CNN], tmp_path / "a", log=lambda _m: None, combos=combos, progress=False)
    dp_plan = Plan.load(first["rows"][1]["plan"])
    runs = tmp_path / "runs"
    runs.mkdir()
    run = {"images": 10, "correct": 9, "agree_with_simulator": 1.0, "seconds_per_image": 5.0, "peak_rss_mb": 2048.0,
           "backend": "openfhe", "security_bits": 0, "bootstraps": dp_plan.bootstraps, "model": "small_cnn",
           "approximator": "wls", "optimizer": "dp", "degrees": dp_plan.degrees, "max_logit_error": 3e-4,
           "keygen_seconds": 40.0, "breakdown": [{"bootstrap": 3.0, "linear": 1.5}, {"bootstrap": 4.0, "linear": 2.5}]}
    (runs / "dp.json").write_text(json.dumps(run))
    (runs / "other-plan.json").write_text(json.dumps({**run, "degrees": [3, 3, 3], "seconds_per_image": 1.0}))
    legacy = {**run, "model": "other", "bootstraps": 3, "breakdown": [{"bootstrap": 0.0, "activation": 9.0}]}
    legacy_md = markdown._measured_notes([{**bench.ROW_DEFAULTS, "model": "other", "approximator": "a",
                                         "optimizer": "o", **run_fields(legacy)}])
    assert "| in activation | — | 9.0 (incl. bootstraps) |" in "\n".join(legacy_md)
    (runs / "old-format.json").write_text(json.dumps({k: v for k, v in run.items() if k != "degrees"}))
    (runs / "unrelated.json").write_text(json.dumps({"rows": []}))
    fake.optimize_calls.clear()
    doc = bench.run_bench([SMALL_CNN], tmp_path / "b", log=lambda _m: None, combos=combos, progress=False,
                           plans_dir=tmp_path / "a", measured=[runs])
    assert fake.optimize_calls == []  # every plan came from the folder
    base, dp = doc["rows"]
    assert dp["degrees"] == dp_plan.degrees and dp["plan_source"] == str(tmp_path / "a" / "small_cnn-wls-dp.json")
    assert dp["measured_latency_s"] == 5.0 and dp["measured_images"] == 10 and dp["peak_rss_mb"] == 2048.0
    assert dp["measured_from"] == str(runs / "dp.json")
    assert base["measured_latency_s"] is None and dp["speedup_measured"] is None  # the baseline was not measured
    md = (tmp_path / "b" / "results.md").read_text()
    assert dp["measured_breakdown"] == {"bootstrap": 3.5, "linear": 2.0} and dp["max_logit_error"] == 3e-4
    assert "5.0 (10 img)" in md and "2.0 GB" in md and f"`{runs / 'dp.json'}`" in md
    row = f"| small_cnn | wls/dp | openfhe | 10 | 9 | 10/10 | 3.0e-04 | 5.0 | {dp_plan.bootstraps} | 3.5 | 2.0 | — |"
    assert f"{row} 40.0 | 2.0 GB |" in md
    assert f"plans_dir={str(tmp_path / 'a')!r}" in doc["command"] and f"measured=[{str(runs)!r}]" in doc["command"]
    with pytest.raises(DataError, match="does not exist"):
        bench.run_bench([SMALL_CNN], tmp_path / "c", combos=combos, measured=[tmp_path / "nope"], progress=False)
    (runs / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON file"):
        load_measured_runs([runs])
    with pytest.raises(OlafheError, match="no saved plan .*small_cnn-wls-greedy.json"):
        bench.run_bench([SMALL_CNN], tmp_path / "d", log=lambda _m: None, combos=[("wls", "greedy")],
                         progress=False, plans_dir=tmp_path / "a")


def test_run_bench_fails_fast_on_unknown_names_and_when_everything_fails(fake: FakePipeline,
                                                                         tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="unknown optimizer 'nope'"):
        bench.run_bench([SMALL_CNN], tmp_path, combos=[("wls", "nope")], progress=False)
    assert fake.loads == 0
    with pytest.raises(OlafheError, match="every combination failed"):
        bench.run_bench([SMALL_CNN], tmp_path, log=lambda _m: None, combos=[("wls", "greedy")], progress=False)
    assert "greedy found nothing" in (tmp_path / "results.md").read_text()  # the files are still written
