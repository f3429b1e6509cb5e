"""Per-operation cost tables and the latency cost model.

A cost table gives seconds per operation kind at each level for one backend configuration, measured on
a machine by ``olafhe costs CONFIG [--quick]``. Tables measured here live per machine under
:func:`~olafhe.core.planning.machine.cost_dir` as ``<machine key>/{backend}-N{ring_dimension}.json``
(:func:`machine_cost_table_path`); shipped tables, the fallback, live in ``olafhe/costs/``::

    {"format": "olafhe-costs", "version": 1, "backend": "openfhe", "ring_dimension": 65536,
     "machine": {...}, "created": "2026-11-25T...", "params": {...},
     "ops": {"multiply": {"0": 0.01, "1": 0.02, ...}, "rotate": {...}, ...},
     "bootstrap": {"9": 20.5, ...},            # levels after bootstrap -> seconds per bootstrap
     "sparse_bootstrap": {"16384": {"6": 11.2}}}  # the same for sparse packing (slots < N/2), optional

Op kinds: add, add_plain, add_scalar, multiply, multiply_plain, multiply_scalar, rotate,
rotate_hoisted (each rotation after the shared precomputation), hoist_precompute, level_reduce,
encode (one plaintext vector at that level), chebyshev_<degree> (optional, measured whole-series).
Levels between measured ones are interpolated linearly (cost grows about linearly in RNS limbs), by
:func:`interpolate_seconds`.

Only bootstrapping depends on the number of slots (its CoeffsToSlots/SlotsToCoeffs transforms are
that large, and below N/4 slots one modular reduction serves real and imaginary parts), so a table
keeps the sparse bootstrap costs beside the full ones and :meth:`CostTable.for_slots` picks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import DataError
from olafhe.core.jsonfile import check_format, read_json, save_json
from olafhe.core.planning.machine import cost_dir, cpu_slug
from olafhe.core.poly.approximation import chebyshev_nonscalar_mults
from olafhe.core.poly.chebyshev import chebyshev_depth

FORMAT = "olafhe-costs"
VERSION = 1


def interpolate_seconds(table: Mapping[int, float], levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Seconds at each of ``levels`` from a sparse ``{level: seconds}`` table: the one interpolation rule
    of every cost lookup (the cost table's and the optimizers' level vectors).

    Empty table -> 0 s; one entry -> that value everywhere; otherwise linear interpolation between the
    given levels (exact at them) and, outside them, linear extrapolation along the two nearest given
    levels, floored at a tenth of the smallest given value.
    """
    at = np.asarray(levels, dtype=np.float64)
    if not table:
        return np.zeros(at.shape)
    known = np.array(sorted(int(k) for k in table), dtype=np.float64)
    values = np.array([float(table[int(k)]) for k in known])
    if known.size == 1:
        return np.full(at.shape, values[0])
    out = np.interp(at, known, values)
    floor = 0.1 * values.min()
    below, above = at < known[0], at > known[-1]
    slope_lo = (values[1] - values[0]) / (known[1] - known[0])
    slope_hi = (values[-1] - values[-2]) / (known[-1] - known[-2])
    out[below] = np.maximum(values[0] + slope_lo * (at[below] - known[0]), floor)
    out[above] = np.maximum(values[-2] + slope_hi * (at[above] - known[-2]), floor)
    return out


def level_costs(table: Mapping[int, float], top: int) -> np.ndarray:
    """Seconds at every level ``0..top`` (see :func:`interpolate_seconds`)."""
    return interpolate_seconds(table, np.arange(top + 1))


@dataclass
class CostTable:
    """Seconds per operation kind and level for one backend and ring dimension."""

    backend: str
    ring_dimension: int
    ops: dict[str, dict[int, float]]
    bootstrap: dict[int, float] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    created: str = ""
    sparse_bootstrap: dict[int, dict[int, float]] = field(default_factory=dict)

    @property
    def machine_key(self) -> str:
        """The key of the machine that measured this table (derived from its CPU and threads in tables
        measured before keys were recorded; "unknown" when neither is known)."""
        if self.machine.get("key"):
            return str(self.machine["key"])
        if not self.machine.get("cpu"):
            return "unknown"
        threads = self.machine.get("threads")
        return f"{cpu_slug(str(self.machine['cpu']))}{f'-t{threads}' if threads else ''}"

    @property
    def name(self) -> str:
        """``{backend}-N{ring_dimension}``, the name plans record."""
        return f"{self.backend}-N{self.ring_dimension}"

    def for_slots(self, slots: int | None) -> CostTable:
        """This table with the bootstrap costs of ``slots``-slot packing (None or N/2: unchanged).

        Uses the sparse costs measured at the smallest slot count >= ``slots`` (a bootstrap over fewer
        slots is never dearer). Levels measured only with full packing are scaled by the mean
        sparse/full ratio of the levels measured both ways; without any sparse measurement at or above
        ``slots`` the full-packing costs stand (an upper bound). ``params["bootstrap_slots"]`` records
        which costs were used.
        """
        if not slots or slots >= self.ring_dimension // 2:
            return self
        usable = sorted(s for s in self.sparse_bootstrap if s >= slots and self.sparse_bootstrap[s])
        if not usable:
            return replace(self, params={**self.params, "bootstrap_slots": self.ring_dimension // 2})
        measured = self.sparse_bootstrap[usable[0]]
        shared = [lv for lv in measured if lv in self.bootstrap]
        ratio = float(np.mean([measured[lv] / self.bootstrap[lv] for lv in shared])) if shared else 1.0
        boot = {lv: measured.get(lv, v * ratio) for lv, v in self.bootstrap.items()} | dict(measured)
        return replace(self, bootstrap=boot, params={**self.params, "bootstrap_slots": usable[0]})

    def per_image(self, batch: int) -> CostTable:
        """This table's seconds divided by ``batch``: the price per image when ``batch`` images share
        every ciphertext (take :meth:`for_slots` of the packed slot count first)."""
        if batch <= 1:
            return self
        f = 1.0 / batch
        return replace(
            self, ops={k: {lv: v * f for lv, v in t.items()} for k, t in self.ops.items()},
            bootstrap={lv: v * f for lv, v in self.bootstrap.items()},
            sparse_bootstrap={s: {lv: v * f for lv, v in t.items()} for s, t in self.sparse_bootstrap.items()},
            params={**self.params, "images_per_ciphertext": batch})

    def cost(self, kind: str, level: int) -> float:
        """Seconds for one ``kind`` operation at ``level`` (:func:`interpolate_seconds` between measured levels)."""
        if kind.startswith("chebyshev_") and kind not in self.ops:
            return self.chebyshev_cost(int(kind.split("_")[1]), level)
        table = self.ops.get(kind)
        if not table:
            if kind == "rotate_hoisted" and "rotate" in self.ops:
                return self.cost("rotate", level)
            if kind in ("hoist_precompute", "level_reduce", "encode"):
                return 0.0
            raise DataError(f"cost table {self.backend}-N{self.ring_dimension} has no entry for {kind!r}")
        return float(interpolate_seconds(table, [level])[0])

    def bootstrap_cost(self, level_after: int) -> float:
        """Seconds of one bootstrap that refreshes to ``level_after`` (interpolated like :meth:`cost`)."""
        if not self.bootstrap:
            raise DataError(f"cost table {self.backend}-N{self.ring_dimension} has no bootstrap costs")
        return float(interpolate_seconds(self.bootstrap, [level_after])[0])

    def bootstrap_params(self, level_after: int) -> CKKSParams | None:
        """CKKS parameters of the measured bootstrapping configuration that refreshes to ``level_after``
        (the last run measured so), with its measured rms precision as ``extra["bootstrap_precision_bits"]``;
        None when no run bootstrapped to that level.

        Different configurations trade precision for levels (e.g. a 50-bit scale leaves 9 levels at
        128-bit security but ~12 bits of precision, a 59-bit scale 6 levels and ~20 bits); plans carry
        the parameters of the configuration they were optimized for.
        """
        found: CKKSParams | None = None
        runs = self.params.get("configs") or [{"params": self.params}]
        for run in runs:
            ckks = run.get("params", {}).get("ckks", {})
            if ckks.get("levels") == level_after and ckks.get("bootstrap"):
                rms = run["params"].get("bootstrap_rms_precision_bits", {}).get(str(level_after))
                extra = {} if rms is None else {"bootstrap_precision_bits": float(rms)}
                found = CKKSParams.from_dict(ckks, f"cost table {self.backend}-N{self.ring_dimension}").with_(
                    extra=extra)
        return found

    def chebyshev_cost(self, degree: int, level: int) -> float:
        """Model of one Chebyshev series: PS products at the levels they run at, plus scalar work."""
        measured = self.ops.get(f"chebyshev_{degree}")
        if measured:
            return self.cost(f"chebyshev_{degree}", level)
        depth = chebyshev_depth(degree)
        mults = chebyshev_nonscalar_mults(degree)
        # products run between `level` and `level - depth`; charge the mean level
        mid = max(level - depth / 2.0, 0.0)
        return (mults * self.cost("multiply", round(mid))
                + (degree + 1) * (self.cost("multiply_scalar", round(mid)) + self.cost("add", round(mid))))

    def predict(self, counts: Mapping[tuple[str, int], int]) -> float:
        """Predicted seconds for a program given operation counts by (kind, level)."""
        total = 0.0
        for (kind, level), n in counts.items():
            if kind == "bootstrap":
                total += n * self.bootstrap_cost(level)
            else:
                total += n * self.cost(kind, level)
        return total

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "backend": self.backend,
            "ring_dimension": self.ring_dimension,
            "machine": self.machine,
            "params": self.params,
            "created": self.created,
            "ops": {k: {str(lv): v for lv, v in sorted(t.items())} for k, t in self.ops.items()},
            "bootstrap": {str(k): v for k, v in sorted(self.bootstrap.items())},
            "sparse_bootstrap": {str(n): {str(k): v for k, v in sorted(t.items())}
                                 for n, t in sorted(self.sparse_bootstrap.items())},
        }

    @classmethod
    def from_dict(cls, doc: dict, origin: str = "cost table") -> CostTable:
        check_format(doc, FORMAT, VERSION, origin)
        try:
            return cls(
                backend=str(doc["backend"]),
                ring_dimension=int(doc["ring_dimension"]),
                ops={k: {int(lv): float(v) for lv, v in t.items()} for k, t in doc["ops"].items()},
                bootstrap={int(k): float(v) for k, v in doc.get("bootstrap", {}).items()},
                sparse_bootstrap={int(n): {int(k): float(v) for k, v in t.items()}
                                  for n, t in doc.get("sparse_bootstrap", {}).items()},
                machine=dict(doc.get("machine", {})),
                params=dict(doc.get("params", {})),
                created=str(doc.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{origin} is corrupt: {exc!r}") from exc

    def save(self, path: str | Path) -> Path:
        return save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        return cls.from_dict(read_json(path, "cost table"), origin=f"cost table {path}")


def cost_table_filename(backend: str, ring_dimension: int) -> str:
    return f"{backend}-N{ring_dimension}.json"


def load_cost_table(backend: str, ring_dimension: int, missing_ok: bool = False) -> CostTable | None:
    """Load the shipped table ``olafhe/costs/{backend}-N{ring_dimension}.json``."""
    name = cost_table_filename(backend, ring_dimension)
    ref = resources.files("olafhe") / "costs" / name
    if not ref.is_file():
        if missing_ok:
            return None
        raise DataError(
            f"no cost table for backend {backend!r} at ring dimension {ring_dimension}; "
            f"measure one with `olafhe costs CONFIG --quick --set backend.ckks.ring_dimension={ring_dimension}`"
        )
    return CostTable.from_dict(json.loads(ref.read_text()), origin=name)


def machine_cost_table_path(backend: str, ring_dimension: int, key: str) -> Path:
    """Where the table of ``backend`` at ``ring_dimension`` measured on machine ``key`` is kept."""
    return cost_dir() / key / cost_table_filename(backend, ring_dimension)


def load_machine_cost_table(backend: str, ring_dimension: int, key: str) -> CostTable | None:
    """The table measured on machine ``key`` (see :func:`machine_cost_table_path`), None when there is none."""
    path = machine_cost_table_path(backend, ring_dimension, key)
    return CostTable.load(path) if path.is_file() else None
