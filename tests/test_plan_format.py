"""The Plan file format: typed fields that write back exactly the JSON they were read from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olafhe.core.errors import DataError
from olafhe.core.planning.plan import Plan, PlanCKKS, PlanPredicted

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (REPO / "docs" / "results").rglob("*.json")
                 if json.loads(p.read_text()).get("format") == "olafhe-plan")


def test_shipped_plans_are_found() -> None:
    folders = {p.parent.name for p in SHIPPED}
    assert {"results", "small_cnn", "2026-11-25-full-packing"} <= folders


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_plan_saves_byte_identical(path: Path, tmp_path: Path) -> None:
    plan = Plan.load(path)
    assert plan.save(tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_absent_fields_stay_absent() -> None:
    assert PlanCKKS(slots=4096, bootstrap=False).to_dict() == {"slots": 4096, "bootstrap": False}
    assert PlanPredicted(latency_s=1.5).to_dict() == {"latency_s": 1.5, "accuracy": None}


def test_unknown_top_level_fields_are_kept_and_unknown_ckks_fields_refused() -> None:
    doc = {"model": "m", "approximator": "a", "optimizer": "o", "layers": [], "input_level": 3,
           "ckks": {"levels": 6}, "note": {"x": 1}}
    plan = Plan.from_dict(doc)
    assert plan.extra.other == {"note": {"x": 1}} and plan.to_dict()["note"] == {"x": 1}
    with pytest.raises(DataError, match="unknown field"):
        Plan.from_dict({**doc, "ckks": {"levels": 6, "colour": "red"}})
    with pytest.raises(DataError, match="format"):
        Plan.from_dict({**doc, "format": "olafhe-costs"})
