"""``olafhe costs --quick``: measure exactly what the planner reads, in minutes at N = 2^16.

What plans are priced with (``planner``, ``CostTable.predict``, ``jobs/latency``): the elementary kinds
at every level up to the highest level after bootstrapping (interpolated linearly between levels), one
Chebyshev series per candidate degree, and one bootstrap per bootstrapping configuration and slot count
the optimizer chooses among. The quick calibration measures those and nothing else:

* configurations: the distinct bootstrapping configurations of the shipped table at this ring dimension
  (``params["configs"]``; OpenFHE at N = 2^16: 3..6 levels at 59 bits, 8 at 55 and 9 at 50 bits), else
  the config's own; slot counts: :data:`SPARSE_SLOTS` (automatic packing of the CIFAR models) and full
  packing (N/2; two images per ciphertext);
* per configuration, one run with full packing measures its keys and bootstrap, the elementary kinds
  at the levels no smaller configuration has (each level is priced in the smallest context that reaches
  it, as in the shipped tables) and the Chebyshev series at their lowest level when it is first reached;
  the largest configuration also measures every series at its top level; every other slot count is a
  bootstrap-only run;
* repeats: :data:`QUICK_REPEATS` per elementary operation, one timed run of each bootstrap (after an
  untimed one: the first pays OpenFHE's one-time setup) and series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from olafhe.core.config import Config
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.contract.registry import registry
from olafhe.core.errors import ConfigError
from olafhe.core.planning.ckks import resolve_ckks
from olafhe.core.planning.costs import CostTable, load_cost_table, machine_cost_table_path
from olafhe.jobs.backend import approximator_for, make_backend
from olafhe.jobs.measure_costs import measure_cost_table, merge_cost_tables
from olafhe.jobs.workspace import Log, quiet

SPARSE_SLOTS = 2**14   # automatic packing of the CIFAR ResNets (16 x 32 x 32 values), see planning.ckks.slot_count
QUICK_REPEATS = 2
# what makes two shipped runs the same bootstrapping configuration (the slot count is measured separately)
_CONFIG_KEYS = ("levels", "scale_bits", "first_mod_bits", "level_budget", "secret_key_dist")


@dataclass(frozen=True)
class QuickRun:
    """One measurement: a backend configuration, the elementary levels and the Chebyshev series it times."""

    params: CKKSParams
    levels: tuple[int, ...] = ()
    chebyshev: dict[int, tuple[int, ...]] = field(default_factory=dict)


def bootstrap_configurations(base: CKKSParams, shipped: CostTable | None) -> list[CKKSParams]:
    """``base`` with each distinct bootstrapping configuration ``shipped`` measured, fewest levels first;
    ``[base]`` when it does not bootstrap or nothing bootstrapping was shipped."""
    if not base.bootstrap:
        return [base]
    runs = (shipped.params.get("configs") or [{"params": shipped.params}]) if shipped is not None else []
    found: dict[tuple, CKKSParams] = {}
    for run in runs:
        ckks = run.get("params", {}).get("ckks", {})
        if not ckks.get("bootstrap") or any(ckks.get(k) is None for k in _CONFIG_KEYS):
            continue
        key = tuple(tuple(v) if isinstance(v, list) else v for v in (ckks[k] for k in _CONFIG_KEYS))
        found.setdefault(key, base.with_(**dict(zip(_CONFIG_KEYS, key, strict=True))))
    return sorted(found.values(), key=lambda p: (p.levels, p.scale_bits)) or [base]


def quick_slot_counts(ring_dimension: int, slots: Sequence[int] | None = None) -> list[int]:
    """The slot counts to bootstrap over: ``slots``, else :data:`SPARSE_SLOTS` and N/2 (each at most N/2)."""
    full = ring_dimension // 2
    chosen = sorted(set(slots or (min(SPARSE_SLOTS, full), full)))
    bad = [s for s in chosen if s < 1 or s > full or s & (s - 1)]
    if bad:
        raise ConfigError(f"--slots must be powers of two up to N/2 = {full}, got {', '.join(map(str, bad))}")
    return chosen


def quick_runs(configs: Sequence[CKKSParams], slots: Sequence[int], degrees: Sequence[int],
               depth_of: Callable[[int], int]) -> list[QuickRun]:
    """The runs of a quick calibration (see the module docstring), in the order they are measured."""
    runs: list[QuickRun] = []
    done = -1   # highest level measured so far
    full = max(slots)
    for i, params in enumerate(configs):
        top, last = params.levels, i == len(configs) - 1
        cheb = {d: tuple(sorted({depth_of(d)} & set(range(done + 1, top + 1)) | ({top} if last else set())))
                for d in degrees if depth_of(d) <= top}
        runs.append(QuickRun(params.with_(slots=full), tuple(range(done + 1, top + 1)),
                             {d: lv for d, lv in cheb.items() if lv}))
        runs += [QuickRun(params.with_(slots=s)) for s in slots if s != full and params.bootstrap]
        done = max(done, top)
    return runs


def measure_quick(backend_name: str, runs: Sequence[QuickRun], log: Log = quiet,
                  progress: bool = False) -> CostTable:
    """Measure ``runs`` on ``backend_name`` and merge them into one table; ``params["calibration"]``
    records the mode, the runs and the wall time."""
    cls = registry().get("backends", backend_name)
    t0 = time.perf_counter()
    tables = []
    for i, run in enumerate(runs, 1):
        p = run.params
        log(f"quick calibration {i}/{len(runs)}: {p.levels} levels after bootstrap, {p.scale_bits}-bit scale, "
            f"{p.slots} slots ({time.perf_counter() - t0:.0f} s so far)")
        tables.append(measure_cost_table(cls(p), list(run.levels), QUICK_REPEATS, progress=progress,
                                         chebyshev_levels=run.chebyshev, long_repeats=1))
    table = merge_cost_tables(tables)
    seconds = round(time.perf_counter() - t0, 1)
    table.params["calibration"] = {"mode": "quick", "runs": len(runs), "seconds": seconds}
    log(f"quick calibration: {len(runs)} runs in {seconds:.0f} s")
    return table


def quick_table(config: Config, backend_name: str, slots: Sequence[int] | None = None, log: Log = quiet,
                progress: bool = False) -> CostTable:
    """The quick calibration of ``backend_name`` with the config's CKKS settings (see the module docstring)."""
    base = resolve_ckks(config)
    backend = registry().get("backends", backend_name)(base)
    configs = bootstrap_configurations(base, load_cost_table(backend_name, base.ring_dimension, missing_ok=True))
    degrees = config.approximation.degrees or approximator_for(config).default_degrees()
    runs = quick_runs(configs, quick_slot_counts(base.ring_dimension, slots), degrees, backend.chebyshev_depth)
    return measure_quick(backend_name, runs, log, progress)


def run_costs(config: Config, backend_name: str | None = None, quick: bool = False,
              levels: list[int] | None = None, slots: Sequence[int] | None = None, out: str | Path | None = None,
              log: Log = quiet, progress: bool = True) -> tuple[CostTable, Path, bool]:
    """Measure a cost table (``quick``, or every level and kind) and save it to ``out``, else as this
    machine's table; a table already there is merged into, the new measurements winning.

    Returns (the saved table, its path, whether an existing table was merged into).
    """
    if quick and levels:
        raise ConfigError("--levels is for a full calibration; --quick measures the levels plans use")
    if slots and not quick:
        raise ConfigError("--slots is for --quick; a full calibration uses the config's backend.ckks.slots")
    name = backend_name or config.backend.name
    if quick:
        table = quick_table(config, name, slots, log, progress)
    else:
        backend = make_backend(config, name)
        table = measure_cost_table(backend, levels, bootstrap=backend.capabilities().bootstrapping, progress=progress)
    path = Path(out) if out else machine_cost_table_path(table.backend, table.ring_dimension, table.machine_key)
    merged = path.is_file()
    if merged:
        calibration = table.params.get("calibration")
        table = merge_cost_tables([CostTable.load(path), table], prefer="last")
        if calibration:
            table.params["calibration"] = calibration
    table.save(path)
    return table, path, merged
