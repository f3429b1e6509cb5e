"""Measure one OpenFHE bootstrapping configuration at N = 2^16 in its own process (for its peak RSS).

Usage: .venv/bin/python scripts/bootstrap_config.py NAME LEVEL_BUDGET SCALE_BITS FIRST_MOD_BITS LEVELS SLOTS [DIGITS
       [SECRET]]   (DIGITS 0: OpenFHE's choice; SECRET: SPARSE_ENCAPSULATED (default), UNIFORM_TERNARY, ...)
e.g.   .venv/bin/python scripts/bootstrap_config.py b33-59-6 3 59 60 6 16384
Writes docs/results/bootstrap/NAME.json (a bootstrap-only cost table: seconds of ``bootstrap_real``, max and
rms precision, keygen seconds, the context's digits and modulus, the process's peak RSS) and prints a summary.
Merge a configuration worth planning with into the shipped table with ``merge_cost_tables``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.core.contract.ckks import CKKSParams
from olafhe.jobs.measure_costs import measure_cost_table


def main(argv: list[str]) -> None:
    name, budget, scale, first, levels, slots = argv[0], *map(int, argv[1:6])
    digits = int(argv[6]) if len(argv) > 6 else 0
    secret = argv[7] if len(argv) > 7 else "SPARSE_ENCAPSULATED"
    params = CKKSParams(ring_dimension=65536, scale_bits=scale, first_mod_bits=first, levels=levels, bootstrap=True,
                        level_budget=(budget, budget), slots=slots, secret_key_dist=secret, threads=2,
                        extra={"num_large_digits": digits} if digits else {})
    table = measure_cost_table(OpenFHEBackend(params), levels=[], repeats=2, chebyshev_levels={})
    out = Path(__file__).resolve().parents[1] / "docs" / "results" / "bootstrap" / f"{name}.json"
    table.save(out)
    doc = table.to_dict()
    print(json.dumps({"name": name, "seconds": doc["sparse_bootstrap"] or doc["bootstrap"],
                      "rms_bits": doc["params"].get("bootstrap_rms_precision_bits"),
                      "keygen_s": doc["params"]["keygen_seconds"], "context": doc["params"].get("context"),
                      "peak_rss_mb": doc["machine"]["peak_rss_mb"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
