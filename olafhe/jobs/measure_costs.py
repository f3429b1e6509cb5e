"""Measure a backend's per-operation cost table (seconds per op kind and level) on this machine.

Generic over the :class:`~olafhe.core.contract.backend.Backend` contract: it only uses ``capabilities``,
``keygen``, the client and the evaluator methods, so any backend (OpenFHE, TenSEAL, a third-party
plugin) can be measured. Conventions, shared with the simulator's operation counter:

* the level of an entry is the level the operation *runs at* (its operands' level);
* operands are shaped like a program's: below ``max_level`` they are products (``multiply_scalar``
  from one level up), so lazily rescaling backends pay their pending rescale where programs do; at
  ``max_level`` they are bootstrap outputs when bootstrapping is measured, else fresh encryptions;
* ``add_plain``/``multiply_plain`` use a pre-encoded plaintext when the evaluator offers
  ``encode(values, level)``; the ``encode`` entry is then the extra cost of encoding on the fly;
* ``rotate_hoisted`` is seconds per rotation of a batch of ``hoist_batch`` (8) rotations after the
  shared precomputation; ``hoist_precompute`` is that precomputation when the backend records it
  separately in its counter, else 0;
* ``chebyshev_<d>`` is one whole series, at the top level and at the lowest level that fits it;
* ``bootstrap`` is keyed by the level after bootstrapping (``params.levels``); with sparse packing
  (``ckks.slots`` < N/2) it goes to ``sparse_bootstrap[slots]`` instead;
* every number is the minimum over ``repeats`` runs (robust to other processes on the machine);
  the 1-minute load average before and after is stored with the table.

``olafhe costs CONFIG [--quick]`` measures this machine's table (see :mod:`olafhe.jobs.quick_costs`); run
as a script to measure one configuration and save (or merge into) a table anywhere::

    python -m olafhe.jobs.measure_costs --backend openfhe --set ckks.levels=5 --merge-into FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np

from olafhe.core.contract.backend import Backend, Capabilities, KeyRequest, normalize_rotations
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import ConfigError, DataError, OlafheError
from olafhe.core.planning.ckks import resolve_ckks
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.machine import machine_description
from olafhe.jobs.memory import peak_rss_mb

CHEBYSHEV_DEGREES = (3, 7, 15, 31, 63)
HOIST_BATCH = 8


def _best(fn: Callable[[], Any], repeats: int) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` calls."""
    best = math.inf
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


class _Log:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[measure {time.perf_counter() - self.t0:7.1f}s] {message}", file=sys.stderr, flush=True)


def measure_cost_table(
    backend: Backend,
    levels: list[int] | None = None,
    repeats: int = 3,
    bootstrap: bool = True,
    progress: bool = True,
    chebyshev_degrees: Sequence[int] = CHEBYSHEV_DEGREES,
    hoist_batch: int = HOIST_BATCH,
    chebyshev_levels: Mapping[int, Sequence[int]] | None = None,
    long_repeats: int | None = None,
) -> CostTable:
    """Time every contract operation of ``backend`` at each of ``levels`` (None: all; []: none, e.g. a
    bootstrap-only run); see the module docstring.

    ``chebyshev_levels`` ({degree: levels}) replaces the default Chebyshev measurements (each of
    ``chebyshev_degrees`` at the top and lowest level that fit); ``long_repeats`` is the number of runs
    of each bootstrap and Chebyshev series (default: ``min(repeats, 2)`` bootstraps, ``repeats`` series).
    """
    log = _Log(progress)
    caps = backend.capabilities()
    top = caps.max_level
    levels = sorted(set(range(top + 1) if levels is None else levels))
    if levels and (levels[0] < 0 or levels[-1] > top):
        raise ConfigError(f"levels to measure must lie in 0..{top} (the backend's max_level), got {levels}")
    do_boot = bool(bootstrap and caps.bootstrapping)
    load_before = os.getloadavg()[0]
    steps = list(range(1, hoist_batch + 1))
    request = KeyRequest(rotations=normalize_rotations(steps if levels else [], caps.slots), bootstrap=do_boot)
    log(f"{caps.describe()}: key generation (bootstrap keys: {do_boot})")
    t = time.perf_counter()
    client, ev = backend.keygen(request)
    keygen_s = time.perf_counter() - t
    log(f"keygen {keygen_s:.1f} s")

    rng = np.random.default_rng(0)
    x, y, w = (rng.uniform(-0.5, 0.5, caps.slots) for _ in range(3))
    boot_runs = long_repeats or min(repeats, 2)
    boot, extra, refreshed = _measure_bootstrap(client, ev, caps, x, boot_runs, log) if do_boot else ({}, {}, None)
    operands = partial(_operands, client, ev, top, refreshed, x, y)
    ops = _measure_levels(ev, levels, operands, w, steps, repeats, log)
    if chebyshev_levels is None:
        chebyshev_levels = {d: sorted({top, ev.chebyshev_depth(d)}) for d in chebyshev_degrees
                            if ev.chebyshev_depth(d) <= top}
    ops.update(_measure_chebyshev(ev, chebyshev_levels, operands, rng, long_repeats or repeats, log))

    params: dict[str, Any] = {"ckks": _jsonable(backend.params), "keygen_seconds": round(keygen_s, 2),
                              "repeats": repeats, "statistic": "min", **extra}
    info = getattr(backend, "context_info", None)
    if callable(info):
        params["context"] = _jsonable(info())
    sparse = caps.slots < caps.ring_dimension // 2
    return CostTable(
        backend=backend.name, ring_dimension=caps.ring_dimension, ops=ops, bootstrap={} if sparse else boot,
        machine=_machine(backend, load_before), params=params,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sparse_bootstrap={caps.slots: boot} if sparse and boot else {},
    )


def _machine(backend: Backend, load_before: float) -> dict:
    """The machine a measurement ran on (its key and threads included) and how busy it was."""
    return machine_description(backend.params.threads) | {
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _measure_bootstrap(client: Any, ev: Any, caps: Capabilities, x: np.ndarray, repeats: int,
                       log: _Log) -> tuple[dict[int, float], dict[str, Any], Any]:
    """(seconds by level after bootstrap, precision records for the params, a refreshed ciphertext)."""
    top = caps.max_level
    after = int(caps.level_after_bootstrap if caps.level_after_bootstrap is not None else top)
    ct = ev.multiply_scalar(client.encrypt(x, 1), 1.0) if top >= 1 else client.encrypt(x, 0)
    seconds, worst, sq = math.inf, 0.0, 0.0
    refreshed = ev.bootstrap_real(ct)  # untimed: OpenFHE's first bootstrap pays one-time setup (37 s vs 21 s)
    runs = max(1, repeats)
    for _ in range(runs):  # the runtime's bootstrap: twice the real part (Evaluator.bootstrap_real)
        t = time.perf_counter()
        refreshed = ev.bootstrap_real(ct)
        seconds = min(seconds, time.perf_counter() - t)
        err = 0.5 * client.decrypt(refreshed, caps.slots) - x
        worst, sq = max(worst, float(np.max(np.abs(err)))), sq + float(np.mean(err**2)) / runs
    bits = round(-math.log2(max(worst, 2.0**-60)), 2)
    extra = {"bootstrap_precision_bits": {str(after): bits},
             "bootstrap_rms_precision_bits": {str(after): round(-0.5 * math.log2(max(sq, 2.0**-120)), 2)}}
    log(f"bootstrap to level {after}: {seconds:.2f} s, precision {bits} bits (max error), "
        f"{extra['bootstrap_rms_precision_bits'][str(after)]} bits (rms)")
    return {after: seconds}, extra, refreshed


def _operands(client: Any, ev: Any, top: int, refreshed: Any, x: np.ndarray, y: np.ndarray,
              level: int) -> tuple[Any, Any]:
    """Two ciphertexts at ``level`` shaped like a program's: products, or bootstrap outputs at the top."""
    if level == top and refreshed is not None and ev.level(refreshed) == top:
        return refreshed, ev.add_scalar(refreshed, 0.125)
    if level < top:
        return tuple(ev.multiply_scalar(client.encrypt(v, level + 1), 1.0) for v in (x, y))  # type: ignore[return-value]
    return client.encrypt(x, level), client.encrypt(y, level)


def _measure_levels(ev: Any, levels: list[int], operands: Callable[[int], tuple[Any, Any]], w: np.ndarray,
                    steps: list[int], repeats: int, log: _Log) -> dict[str, dict[int, float]]:
    """Seconds of every elementary operation kind at each of ``levels``."""
    encode = getattr(ev, "encode", None)
    ops: dict[str, dict[int, float]] = {}

    def put(kind: str, level: int, seconds: float) -> None:
        ops.setdefault(kind, {})[level] = seconds

    for lv in levels:
        a, b = operands(lv)
        plain: Any = encode(w, lv) if callable(encode) else w
        put("add", lv, _best(partial(ev.add, a, b), repeats))
        put("add_plain", lv, _best(partial(ev.add_plain, a, plain), repeats))
        put("add_scalar", lv, _best(partial(ev.add_scalar, a, 0.25), repeats))
        if callable(encode):
            put("encode", lv, _best(partial(encode, w, lv), repeats))
        if lv >= 1:
            put("multiply", lv, _best(partial(ev.multiply, a, b), repeats))
            put("multiply_plain", lv, _best(partial(ev.multiply_plain, a, plain), repeats))
            put("multiply_scalar", lv, _best(partial(ev.multiply_scalar, a, 0.5), repeats))
            put("level_reduce", lv, _best(partial(ev.level_reduce, a, lv - 1), repeats))
        put("rotate", lv, _best(partial(ev.rotate, a, 1), repeats))
        pre_s, per_s = _measure_hoisted(ev, a, steps, repeats)
        put("hoist_precompute", lv, pre_s)
        put("rotate_hoisted", lv, per_s)
        log(f"level {lv}: multiply {ops.get('multiply', {}).get(lv, float('nan')):.4f} s, "
            f"rotate {ops['rotate'][lv]:.4f} s, hoisted {per_s:.4f} s/rotation")
    return ops


def _measure_chebyshev(ev: Any, levels_of: Mapping[int, Sequence[int]], operands: Callable[[int], tuple[Any, Any]],
                       rng: np.random.Generator, repeats: int, log: _Log) -> dict[str, dict[int, float]]:
    """Seconds of one whole Chebyshev series of each degree at each of its levels (``levels_of``)."""
    ops: dict[str, dict[int, float]] = {}
    for d, levels in sorted(levels_of.items()):
        coeffs = rng.uniform(-1.0, 1.0, d + 1) / np.arange(1, d + 2) ** 2
        for lv in sorted(levels):
            a = operands(lv)[0]
            ops.setdefault(f"chebyshev_{d}", {})[lv] = _best(partial(ev.chebyshev, a, coeffs), repeats)
            log(f"chebyshev degree {d} (depth {ev.chebyshev_depth(d)}) at level {lv}: "
                f"{ops[f'chebyshev_{d}'][lv]:.3f} s")
    return ops


def _measure_hoisted(ev: Any, a: Any, steps: list[int], repeats: int) -> tuple[float, float]:
    """(precompute seconds, seconds per rotation) of one hoisted batch, minimum over repeats."""
    pre_best, per_best = math.inf, math.inf
    for _ in range(max(1, repeats)):
        before = sum(s for (k, _), s in ev.counter.seconds.items() if k == "hoist_precompute")
        t = time.perf_counter()
        ev.rotate_hoisted(a, steps)
        wall = time.perf_counter() - t
        pre = sum(s for (k, _), s in ev.counter.seconds.items() if k == "hoist_precompute") - before
        pre_best = min(pre_best, pre)
        per_best = min(per_best, (wall - pre) / len(steps))
    return pre_best, per_best


def _pick(prefer: str, old: float | None, new: float) -> float:
    """The entry a merge keeps when ``old`` (None: absent) meets ``new`` (see :func:`merge_cost_tables`)."""
    if old is None or prefer == "last":
        return new
    return min(old, new) if prefer == "min" else old


def merge_cost_tables(tables: Iterable[CostTable], prefer: str = "first") -> CostTable:
    """One table from several runs of the same backend and ring dimension.

    ``prefer="first"`` (runs of different configurations): per (kind, level) the first table wins and
    later tables fill what it lacks; ``bootstrap`` (and ``sparse_bootstrap`` per slot count) is the
    union keyed by level after bootstrapping (later tables win). ``prefer="last"`` (a new measurement
    into an older table of the same machine): later tables win everywhere, and the table takes the last
    one's machine. ``prefer="min"`` (repeated runs of one configuration on a shared machine): the minimum
    of every entry, the least disturbed measurement. ``params["configs"]`` keeps every run's parameters
    and machine so nothing measured is lost.
    """
    if prefer not in ("first", "last", "min"):
        raise DataError(f"merge_cost_tables: prefer must be 'first', 'last' or 'min', got {prefer!r}")
    tables = list(tables)
    if not tables:
        raise DataError("merge_cost_tables needs at least one table")
    first = tables[0]
    for t in tables[1:]:
        if (t.backend, t.ring_dimension) != (first.backend, first.ring_dimension):
            raise DataError(f"cannot merge cost tables of {t.name} into {first.name}")
    ops: dict[str, dict[int, float]] = {}
    boot: dict[int, float] = {}
    sparse: dict[int, dict[int, float]] = {}
    configs: list[dict] = []
    boot_rule = "min" if prefer == "min" else "last"
    for t in tables:
        for kind, table in t.ops.items():
            dst = ops.setdefault(kind, {})
            for lv, v in table.items():
                dst[lv] = _pick(prefer, dst.get(lv), v)
        for lv, v in t.bootstrap.items():
            boot[lv] = _pick(boot_rule, boot.get(lv), v)
        for n, table in t.sparse_bootstrap.items():
            dst = sparse.setdefault(n, {})
            for lv, v in table.items():
                dst[lv] = _pick(boot_rule, dst.get(lv), v)
        runs = t.params.get("configs") or [{"params": t.params, "machine": t.machine, "created": t.created}]
        configs.extend(runs)
    params = {"merged_from": len(configs), "configs": configs}
    return CostTable(backend=first.backend, ring_dimension=first.ring_dimension, ops=ops, bootstrap=boot,
                     machine=(tables[-1] if prefer == "last" else first).machine, params=params,
                     created=max(t.created for t in tables), sparse_bootstrap=sparse)


# ------------------------------------------------------------------------------------------------ CLI
def _params_from_overrides(overrides: list[str]) -> CKKSParams:
    """CKKS parameters from ``[ckks.]KEY=VALUE`` overrides of the config's ``backend.ckks`` keys (resolved as
    for every job); ``[ckks.]extra.KEY=VALUE`` sets a backend option, and only those make up ``extra``."""
    from olafhe.core.config import load_config, parse_override

    settings: list[str] = []
    extra: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "ckks":
            path = path[1:]
        if len(path) == 2 and path[0] == "extra":
            extra[path[1]] = value
        else:
            settings.append(f"backend.ckks.{'.'.join(path)}={text.split('=', 1)[1]}")
    return resolve_ckks(load_config(None, settings)).with_(extra=extra)


def main(argv: list[str] | None = None) -> int:
    """Measure one configuration and save it (optionally merged into an existing table)."""
    ap = argparse.ArgumentParser(prog="python -m olafhe.jobs.measure_costs", description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="openfhe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="ckks.KEY=VALUE")
    ap.add_argument("--levels", default="", help="comma-separated levels (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-bootstrap", action="store_true")
    ap.add_argument("--chebyshev", default=",".join(map(str, CHEBYSHEV_DEGREES)), help="degrees ('' for none)")
    ap.add_argument("--out", default="", help="write the table here")
    ap.add_argument("--merge-into", default="", help="merge into this table (the new run fills gaps)")
    ap.add_argument("--prefer", choices=("first", "last", "min"), default="first",
                    help="merge rule: existing entries win (first), the new run wins (last) or the minimum (min)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        from olafhe.core.contract.registry import registry

        backend = registry().get("backend", args.backend)(_params_from_overrides(args.overrides))
        levels = [int(v) for v in args.levels.split(",") if v.strip()] or None
        degrees = [int(v) for v in args.chebyshev.split(",") if v.strip()]
        table = measure_cost_table(backend, levels, args.repeats, not args.no_bootstrap, not args.quiet, degrees)
        if args.merge_into and os.path.exists(args.merge_into):
            table = merge_cost_tables([CostTable.load(args.merge_into), table], prefer=args.prefer)
        out = args.out or args.merge_into
        if out:
            table.save(out)
        print(json.dumps({"ops": {k: {str(lv): round(v, 5) for lv, v in t.items()} for k, t in table.ops.items()},
                          "bootstrap": {str(k): round(v, 3) for k, v in table.bootstrap.items()}, "saved": out}))
    except OlafheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
