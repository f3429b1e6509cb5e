"""Level and bootstrap placement: the exact level-state dynamic program shared by every optimizer.

The level model (it mirrors what :mod:`olafhe.core.compiler.runtime` executes; levels count *remaining* levels):

* The client encrypts at ``input_level`` (any level ``0..max_level``; lower is cheaper).
* Before activation ``i``: ``linear_depth`` levels of linear work that starts at the main ciphertext's
  level ``m`` and costs ``linear_seconds_by_level[m]``.
* Residual add (``skip_from`` set): the skip value is the *output* of the earlier activation, minus
  ``skip_depth``; the sum lives at ``min(main, skip)``.
* Optional bootstrap of the main ciphertext: costs ``bootstrap_configs[L]`` and returns level ``L``
  (one ``L`` for the whole plan). Only the main path is refreshed: a later residual add still sees the
  older output's own level, so the state carries the levels of outputs that future adds need.
* Free level reduction to ``level_in``; the chosen candidate needs ``level_in >= depth``, costs
  ``seconds_by_level[level_in]`` and leaves ``level_in - depth``.
* After the last activation ``tail_depth`` levels of linear work costing ``tail_seconds_by_level``.
* No level is ever negative.

Cost tables (``dict[level, seconds]``) become vectors over levels ``0..top`` with
:func:`level_costs`: empty -> 0 s everywhere; one entry -> that value everywhere; otherwise linear
interpolation between the given levels and linear extrapolation from the two nearest given levels
outside them, floored at a tenth of the smallest given value (the convention of
:meth:`olafhe.core.planning.costs.CostTable.cost`).

The dynamic program (:func:`solve_levels`) works for one bootstrap level ``L`` at a time over states
``(main level, levels of pending skip sources, bootstraps so far [only with a cap]) x units used``; each
state holds a numpy row over the distortion units ``u`` (exactly ``u`` units used), and each layer is
four vectorized relaxations (linear+add, bootstrap, level reduction, candidate). See
:mod:`olafhe.optimizers.dp` for the recursion and its complexity. Greedy and uniform call it with one
allowed candidate per layer and zero units (pure placement); ``dp`` with every candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from olafhe.core.contract.interfaces import LayerChoice, OptimizationProblem, Solution
from olafhe.core.errors import InfeasibleError

INF = float("inf")


# ------------------------------------------------------------------------------------------------
# Problem structure
# ------------------------------------------------------------------------------------------------


def level_costs(table: Mapping[int, float], top: int) -> np.ndarray:
    """Seconds at each level ``0..top`` from a sparse ``{level: seconds}`` table (see module doc)."""
    out = np.zeros(top + 1)
    if not table:
        return out
    levels = np.array(sorted(int(k) for k in table), dtype=np.float64)
    values = np.array([float(table[int(k)]) for k in levels])
    if levels.size == 1:
        out[:] = values[0]
        return out
    grid = np.arange(top + 1, dtype=np.float64)
    out = np.interp(grid, levels, values)
    floor = 0.1 * values.min()
    lo, hi = grid < levels[0], grid > levels[-1]
    slope_lo = (values[1] - values[0]) / (levels[1] - levels[0])
    slope_hi = (values[-1] - values[-2]) / (levels[-1] - levels[-2])
    out[lo] = np.maximum(values[0] + slope_lo * (grid[lo] - levels[0]), floor)
    out[hi] = np.maximum(values[-1] + slope_hi * (grid[hi] - levels[-1]), floor)
    return out


@dataclass(frozen=True)
class Structure:
    """Everything about a problem the level DP needs, as arrays (built once per problem).

    ``track[i]``: indices of earlier activations whose output level a state before layer ``i`` carries
    (those some layer ``k >= i`` adds as its residual); ``track[n]`` is empty.
    ``act[i][c, l]``: candidate ``c``'s seconds at input level ``l`` (inf where ``l < depth``).
    """

    top: int
    max_level: int
    names: tuple[str, ...]
    skip_src: tuple[int | None, ...]
    track: tuple[tuple[int, ...], ...]
    linear_depth: tuple[int, ...]
    skip_depth: tuple[int, ...]
    tail_depth: int
    lin: tuple[np.ndarray, ...]
    act: tuple[np.ndarray, ...]
    depth: tuple[np.ndarray, ...]
    tail: np.ndarray
    base: int  # radix for encoding states as integers (levels and bootstrap counts are below it)

    @classmethod
    def of(cls, problem: OptimizationProblem) -> Structure:
        layers = problem.layers
        if not layers:
            raise ValueError("the optimization problem has no activation layers")
        if problem.max_level < 0:
            raise ValueError(f"max_level must be >= 0, got {problem.max_level}")
        names = tuple(layer.name for layer in layers)
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            raise ValueError("activation layer names must be unique")
        top = max([problem.max_level, *problem.bootstrap_configs])
        skip_src: list[int | None] = []
        for i, layer in enumerate(layers):
            if not layer.candidates:
                raise ValueError(f"layer {layer.name!r} has no candidates")
            if layer.linear_depth < 0 or layer.skip_depth < 0:
                raise ValueError(f"layer {layer.name!r}: depths must be >= 0")
            src = None
            if layer.skip_from is not None:
                src = index.get(layer.skip_from)
                if src is None or src >= i:
                    raise ValueError(
                        f"layer {layer.name!r}: skip_from {layer.skip_from!r} is not an earlier activation"
                    )
            skip_src.append(src)
        track = tuple(
            tuple(sorted({s for s in skip_src[i:] if s is not None and s < i}))
            for i in range(len(layers) + 1)
        )
        act, depth = [], []
        for layer in layers:
            d = np.array([c.depth for c in layer.candidates], dtype=np.int64)
            if (d < 0).any():
                raise ValueError(f"layer {layer.name!r}: candidate depths must be >= 0")
            costs = np.array([level_costs(c.seconds_by_level, top) for c in layer.candidates])
            costs[np.arange(top + 1)[None, :] < d[:, None]] = INF
            act.append(costs)
            depth.append(d)
        return cls(
            top=top,
            max_level=problem.max_level,
            names=names,
            skip_src=tuple(skip_src),
            track=track,
            linear_depth=tuple(layer.linear_depth for layer in layers),
            skip_depth=tuple(layer.skip_depth for layer in layers),
            tail_depth=problem.tail_depth,
            lin=tuple(level_costs(layer.linear_seconds_by_level, top) for layer in layers),
            act=tuple(act),
            depth=tuple(depth),
            tail=level_costs(problem.tail_seconds_by_level, top),
            base=top + 2 + (problem.max_bootstraps or 0),
        )


def required_input_level(problem: OptimizationProblem, depths: Sequence[int]) -> int:
    """Fresh-encryption level a leveled (bootstrap-free) run needs with these activation depths.

    Levels only ever shift down together, so run the flow from a large level without reductions and
    measure how far the lowest value (main path, skip paths, tail) falls below the start.
    """
    start = 10**9
    level, lowest = start, start
    out: dict[str, int] = {}
    for layer, d in zip(problem.layers, depths, strict=True):
        level -= layer.linear_depth
        if layer.skip_from is not None:
            level = min(level, out[layer.skip_from] - layer.skip_depth)
        lowest = min(lowest, level)
        level -= d
        out[layer.name] = level
        lowest = min(lowest, level)
    lowest = min(lowest, level - problem.tail_depth)
    return start - lowest


# ------------------------------------------------------------------------------------------------
# The level DP
# ------------------------------------------------------------------------------------------------


@dataclass
class LevelPath:
    """One optimal path: total seconds, encryption level and per layer (candidate index, boot, level_in)."""

    seconds: float
    input_level: int
    steps: list[tuple[int, bool, int]]
    states_max: int = 0


@dataclass
class _Table:
    """Sparse DP states: ``lv[:, 0]`` main level, ``lv[:, 1:]`` pending skip levels, ``nb`` bootstraps."""

    lv: np.ndarray
    nb: np.ndarray
    cost: np.ndarray
    code: np.ndarray


def _encode(lv: np.ndarray, nb: np.ndarray, base: int) -> np.ndarray:
    key = nb.astype(np.int64)
    for col in range(lv.shape[1] - 1, -1, -1):
        key = key * base + lv[:, col]
    return key


def _scatter_min(cost: np.ndarray, code: np.ndarray, tgt: np.ndarray, vals: np.ndarray,
                 codes: np.ndarray) -> None:
    """``cost[tgt[k]] = min(cost[tgt[k]], vals[k])`` elementwise, keeping the winner's code.

    ``tgt`` may repeat: rows are applied in rounds in which every target appears at most once.
    """
    if tgt.size == 0:
        return
    order = np.argsort(tgt, kind="stable")
    st = tgt[order]
    first = np.r_[True, st[1:] != st[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(st.size), 0))
    rank = np.empty_like(tgt)
    rank[order] = np.arange(st.size) - start
    for r in range(int(rank.max()) + 1):
        sel = np.nonzero(rank == r)[0]
        t = tgt[sel]
        cur, v = cost[t], vals[sel]
        better = v < cur
        cost[t] = np.where(better, v, cur)
        code[t] = np.where(better, codes[sel], code[t])


def _unique_rows(lv: np.ndarray, nb: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct states among (lv, nb) and the inverse map."""
    keys = _encode(lv, nb, base)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return lv[first], nb[first], inv.ravel()


def _stage_linear(s: Structure, i: int, prev: _Table, code_dtype: type) -> _Table:
    """Linear work, then the residual add: main ``m -> min(m - linear_depth, skip - skip_depth)``."""
    layer_track, next_track = s.track[i], s.track[i + 1]  # next_track: what later adds still need
    lin_depth = s.linear_depth[i]
    main = prev.lv[:, 0] - lin_depth
    ok = main >= 0
    src = s.skip_src[i]
    if src is not None:
        skip = prev.lv[:, 1 + layer_track.index(src)] - s.skip_depth[i]
        ok &= skip >= 0
        main = np.minimum(main, skip)
    keep = [1 + layer_track.index(j) for j in layer_track if j in next_track]
    rows = np.nonzero(ok)[0]
    lv = np.column_stack([main[rows], prev.lv[rows][:, keep]]).astype(np.int64)
    ulv, unb, inv = _unique_rows(lv, prev.nb[rows], s.top + 1)
    width = prev.cost.shape[1]
    cost = np.full((len(ulv), width), INF)
    code = np.zeros((len(ulv), width), dtype=code_dtype)
    vals = prev.cost[rows] + s.lin[i][prev.lv[rows, 0]][:, None]
    codes = np.broadcast_to(rows.astype(code_dtype)[:, None], vals.shape)
    _scatter_min(cost, code, inv, vals, codes)
    return _Table(ulv, unb, cost, code)


def _drop_dominated_entries(t: _Table, base: int) -> None:
    """With a bootstrap cap: an entry ``(levels, b, u)`` is useless when an entry ``(levels, b', u')``
    with ``b' <= b``, ``u' <= u`` (not both equal) is no slower: every completion of the first also
    completes the second. Such entries become inf, so rows holding only them are dropped afterwards
    (this is what keeps the bootstrap-count axis small)."""
    _, ginv = np.unique(_encode(t.lv, np.zeros_like(t.nb), base), return_inverse=True)
    ginv = ginv.ravel()
    order = np.lexsort((t.nb, ginv))
    sg = ginv[order]
    first = np.r_[True, sg[1:] != sg[:-1]]
    rank = np.arange(sg.size) - np.maximum.accumulate(np.where(first, np.arange(sg.size), 0))
    best = np.full((int(ginv.max(initial=-1)) + 1, t.cost.shape[1]), INF)
    for r in range(int(rank.max(initial=-1)) + 1):
        rows = order[rank == r]
        g = ginv[rows]
        cost = t.cost[rows]
        running = np.minimum.accumulate(cost, axis=1)
        earlier = np.minimum(best[g], np.concatenate([np.full((len(rows), 1), INF), running[:, :-1]], axis=1))
        best[g] = np.minimum(best[g], running)
        cost[cost >= earlier] = INF
        t.cost[rows] = cost


class _Pointers:
    """One layer's back-pointers, kept only where the cost is finite when that saves memory (with a
    bootstrap cap most entries are dominated and inf)."""

    def __init__(self, cost: np.ndarray, code: np.ndarray) -> None:
        finite = np.isfinite(cost)
        self.width = cost.shape[1]
        if finite.mean() > 0.4:
            self.dense: np.ndarray | None = code
            return
        self.dense = None
        self.where = np.flatnonzero(finite)
        self.codes = code.ravel()[self.where]

    def __getitem__(self, index: tuple[int, int]) -> int:
        row, u = index
        if self.dense is not None:
            return int(self.dense[row, u])
        k = int(np.searchsorted(self.where, row * self.width + u))
        return int(self.codes[k])


class _Solver:
    """One run of the level DP for a fixed bootstrap level (or none)."""

    def __init__(self, s: Structure, boot_level: int | None, boot_seconds: float,
                 max_boots: int | None) -> None:
        self.s = s
        self.boot_level = boot_level
        self.boot_seconds = boot_seconds
        self.cap = max_boots

    # -------------------------------------------------------------- stages
    def _bootstrap(self, a: _Table) -> _Table:
        """Either keep the state (code*2) or bootstrap the main ciphertext to ``L`` (code*2+1)."""
        if self.boot_level is None or (self.cap is not None and self.cap <= 0):
            return _Table(a.lv, a.nb, a.cost, a.code * 2)
        rows = np.arange(len(a.lv)) if self.cap is None else np.nonzero(a.nb < self.cap)[0]
        blv = a.lv[rows].copy()
        blv[:, 0] = self.boot_level
        bnb = a.nb[rows] + (0 if self.cap is None else 1)
        ulv, unb, inv = _unique_rows(np.vstack([a.lv, blv]), np.concatenate([a.nb, bnb]), self.s.base)
        cost = np.full((len(ulv), a.cost.shape[1]), INF)
        code = np.zeros_like(a.code, shape=cost.shape)
        n = len(a.lv)
        _scatter_min(cost, code, inv[:n], a.cost, a.code * 2)
        _scatter_min(cost, code, inv[n:], a.cost[rows] + self.boot_seconds, a.code[rows] * 2 + 1)
        return _Table(ulv, unb, cost, code)

    def _reduce(self, b: _Table, lmin: int) -> _Table:
        """Free level reduction: state at level ``l`` = best of the same group at any level ``>= l``."""
        top = self.s.top
        gkeys = _encode(b.lv[:, 1:], b.nb, self.s.base)
        _, gfirst, ginv = np.unique(gkeys, return_index=True, return_inverse=True)
        ginv = ginv.ravel()
        ng = len(gfirst)
        xmax = np.full(ng, -1)
        np.maximum.at(xmax, ginv, b.lv[:, 0])
        bidx = np.full((ng, top + 1), -1)
        bidx[ginv, b.lv[:, 0]] = np.arange(len(b.lv))
        counts = np.maximum(xmax - lmin + 1, 0)
        total = int(counts.sum())
        offsets = np.cumsum(counts) - counts
        g_of = np.repeat(np.arange(ng), counts)
        level_of = lmin + np.arange(total) - np.repeat(offsets, counts)
        cidx = np.full((ng, top + 2), -1)
        cidx[g_of, level_of] = np.arange(total)
        cost = np.full((total, b.cost.shape[1]), INF)
        code = np.zeros_like(b.code, shape=cost.shape)
        for lvl in range(top, lmin - 1, -1):
            g = np.nonzero(xmax >= lvl)[0]
            if g.size == 0:
                continue
            rows = cidx[g, lvl]
            inherit = xmax[g] > lvl
            prev_rows = cidx[g[inherit], lvl + 1]
            cost[rows[inherit]] = cost[prev_rows]
            code[rows[inherit]] = code[prev_rows]
            brow = bidx[g, lvl]
            has = brow >= 0
            _scatter_min(cost, code, rows[has], b.cost[brow[has]], b.code[brow[has]])
        lv = np.column_stack([level_of, b.lv[gfirst][g_of, 1:]]).astype(np.int64)
        return _Table(lv, b.nb[gfirst][g_of], cost, code)

    def _activate(self, i: int, c: _Table, allowed: np.ndarray, units: np.ndarray, width: int) -> _Table:
        """Apply each allowed candidate: level ``l -> l - depth``, cost + seconds, units shifted."""
        s = self.s
        own = i in s.track[i + 1]
        depths = s.depth[i][allowed]
        parts_lv, parts_nb, parts = [], [], []
        for k, d in enumerate(depths):
            if units[k] >= width:
                continue
            rows = np.nonzero(c.lv[:, 0] >= d)[0]
            if rows.size == 0:
                continue
            out = c.lv[rows].copy()
            out[:, 0] -= d
            if own:
                out = np.column_stack([out, out[:, 0]])
            parts_lv.append(out)
            parts_nb.append(c.nb[rows])
            parts.append((k, rows))
        if not parts:
            return _Table(np.zeros((0, 1 + len(s.track[i + 1])), np.int64), np.zeros(0, np.int64),
                          np.zeros((0, width)), np.zeros((0, width), c.code.dtype))
        ulv, unb, inv = _unique_rows(np.vstack(parts_lv), np.concatenate(parts_nb), s.base)
        n_allowed = len(allowed)
        cost = np.full((len(ulv), width), INF)
        code = np.zeros((len(ulv), width), dtype=c.code.dtype)
        start = 0
        for k, rows in parts:
            tgt = inv[start:start + rows.size]
            start += rows.size
            w = int(units[k])
            secs = s.act[i][allowed[k], c.lv[rows, 0]]
            vals = c.cost[rows, : width - w] + secs[:, None]
            codes = c.code[rows, : width - w] * n_allowed + k
            cur = cost[tgt, w:]
            better = vals < cur
            cost[tgt, w:] = np.where(better, vals, cur)
            code[tgt, w:] = np.where(better, codes, code[tgt, w:])
        return _Table(ulv, unb, cost, code)

    # -------------------------------------------------------------- driver
    def solve(self, allowed: Sequence[np.ndarray], units: Sequence[np.ndarray],
              capacity: int) -> LevelPath | None:
        """Cheapest path using at most ``capacity`` units (``allowed[i]``: candidate indices of layer
        ``i``, ``units[i]``: their integer distortion units); None when no path exists."""
        s = self.s
        n = len(s.names)
        min_units = np.array([int(u.min()) for u in units])
        rest = np.concatenate([np.cumsum(min_units[::-1])[::-1], [0]])  # rest[i] = sum_{j>=i} min units
        if rest[0] > capacity:
            return None
        widths = capacity - rest + 1
        levels = np.arange(s.max_level + 1, dtype=np.int64)[:, None]
        table = _Table(levels, np.zeros(len(levels), np.int64), np.full((len(levels), widths[0]), INF),
                       np.zeros((len(levels), widths[0]), np.int32))
        table.cost[:, 0] = 0.0
        init_levels = table.lv[:, 0].copy()
        history: list[tuple[np.ndarray, _Pointers]] = []
        states_max = len(levels)
        for i in range(n):
            n_allowed = len(allowed[i])
            dtype = np.int32 if len(table.lv) * 2 * n_allowed < 2**31 - 1 else np.int64
            a = _stage_linear(s, i, table, dtype)
            if len(a.lv) == 0:
                return None
            b = self._bootstrap(a)
            c = self._reduce(b, int(s.depth[i][allowed[i]].min()))
            if len(c.lv) == 0:
                return None
            table = self._activate(i, c, allowed[i], units[i], int(widths[i + 1]))
            if self.cap is not None:
                _drop_dominated_entries(table, s.base)
            live = np.isfinite(table.cost).any(axis=1)
            table = _Table(table.lv[live], table.nb[live], table.cost[live], table.code[live])
            if len(table.lv) == 0:
                return None
            states_max = max(states_max, len(a.lv), len(b.lv), len(c.lv), len(table.lv))
            history.append((table.lv[:, 0].copy(), _Pointers(table.cost, table.code)))
        main = table.lv[:, 0]
        ok = main >= s.tail_depth
        final = np.where(ok[:, None], table.cost + s.tail[np.minimum(main, s.top)][:, None], INF)
        flat = int(np.argmin(final))
        best = float(final.flat[flat])
        if not math.isfinite(best):
            return None
        row, u = divmod(flat, final.shape[1])
        steps: list[tuple[int, bool, int]] = []
        for i in range(n - 1, -1, -1):
            mains, codes = history[i]
            code = codes[row, u]
            k = code % len(allowed[i])
            code //= len(allowed[i])
            cand = int(allowed[i][k])
            steps.append((cand, bool(code % 2), int(mains[row] + s.depth[i][cand])))
            u -= int(units[i][k])
            row = code // 2
        steps.reverse()
        return LevelPath(best, int(init_levels[row]), steps, states_max)


# ------------------------------------------------------------------------------------------------
# Running the DP over bootstrap configurations and building a Solution
# ------------------------------------------------------------------------------------------------


def prepare(problem: OptimizationProblem) -> Structure:
    """Validate ``problem`` and precompute the arrays the DP uses."""
    if problem.max_bootstraps is not None and problem.max_bootstraps < 0:
        raise ValueError(f"max_bootstraps must be >= 0, got {problem.max_bootstraps}")
    return Structure.of(problem)


def check_budget(problem: OptimizationProblem, budget: float) -> tuple[list[np.ndarray], float]:
    """Per-layer candidate distortions (NaN read as inf) and the least achievable total.

    Raises :class:`InfeasibleError` for a negative or non-finite budget, or one below that least total.
    """
    if not math.isfinite(budget) or budget < 0:
        raise InfeasibleError(f"distortion budget must be a finite number >= 0, got {budget}")
    distortions = []
    for layer in problem.layers:
        d = np.array([c.distortion for c in layer.candidates], dtype=np.float64)
        distortions.append(np.where(np.isnan(d), INF, d))
    least = float(sum(d.min() for d in distortions))
    if least > budget:
        raise InfeasibleError(
            f"distortion budget {budget:.6g} is below the least achievable distortion {least:.6g} "
            f"(the most accurate candidate in every layer); raise the budget"
        )
    return distortions, least


def check_leveled_depth(problem: OptimizationProblem, indices: Sequence[int] | None = None) -> None:
    """In leveled mode, refuse problems too deep for ``max_level``: with the shallowest candidate in
    every layer, or with the candidates ``indices`` when given."""
    if problem.bootstrap_configs:
        return
    if indices is None:
        depths = [min(c.depth for c in layer.candidates) for layer in problem.layers]
        what = "even with the shallowest candidate in every layer"
    else:
        depths = [layer.candidates[k].depth for layer, k in zip(problem.layers, indices, strict=True)]
        what = "with the chosen candidates"
    need = required_input_level(problem, depths)
    if need > problem.max_level:
        raise InfeasibleError(
            f"leveled evaluation needs {need} levels {what} but max_level is {problem.max_level}; "
            f"enable bootstrapping or use larger CKKS parameters"
        )


def best_path(prep: Structure, problem: OptimizationProblem, allowed: Sequence[np.ndarray],
              units: Sequence[np.ndarray], capacity: int) -> tuple[LevelPath | None, int | None, dict]:
    """Run the level DP for every bootstrap config (or once, leveled) and keep the fastest path.

    With ``max_bootstraps`` the uncapped DP runs first: when its optimum respects the cap it is also
    the capped optimum (the capped plans are a subset); only otherwise does the slower DP with a
    bootstrap-count axis run. Returns the path, its bootstrap level (None when leveled) and
    ``{L: seconds or None}`` per config.
    """
    configs: list[tuple[int | None, float]] = sorted(problem.bootstrap_configs.items()) or [(None, 0.0)]
    best: tuple[LevelPath | None, int | None] = (None, None)
    per_config: dict = {}
    cap = problem.max_bootstraps
    for level, secs in configs:
        path = _Solver(prep, level, float(secs), None).solve(allowed, units, capacity)
        if path is not None and cap is not None and sum(boot for _, boot, _ in path.steps) > cap:
            path = _Solver(prep, level, float(secs), cap).solve(allowed, units, capacity)
        per_config[level] = None if path is None else path.seconds
        if path is not None and (best[0] is None or path.seconds < best[0].seconds):
            best = (path, level)
    return best[0], best[1], per_config


def evaluate_plan(problem: OptimizationProblem, choices: Sequence[LayerChoice], input_level: int,
                  boot_level: int | None) -> tuple[float, float]:
    """Replay a plan through the level model: ``(predicted seconds, true distortion)``.

    Raises ``ValueError`` when the plan breaks a level rule (negative level, ``level_in`` above the
    available level or below the candidate's depth, a bootstrap without a config).
    """
    top = max([problem.max_level, *problem.bootstrap_configs])
    if not 0 <= input_level <= problem.max_level:
        raise ValueError(f"input level {input_level} outside 0..{problem.max_level}")
    level, seconds, distortion = input_level, 0.0, 0.0
    out: dict[str, int] = {}
    for layer, ch in zip(problem.layers, choices, strict=True):
        seconds += float(level_costs(layer.linear_seconds_by_level, top)[level])
        level -= layer.linear_depth
        if layer.skip_from is not None:
            level = min(level, out[layer.skip_from] - layer.skip_depth)
        if level < 0:
            raise ValueError(f"layer {layer.name!r}: level {level} < 0 before the activation")
        if ch.bootstrap_before:
            if boot_level is None:
                raise ValueError(f"layer {layer.name!r} bootstraps but the plan has no bootstrap level")
            seconds += float(problem.bootstrap_configs[boot_level])
            level = boot_level
        cand = layer.candidates[ch.candidate_index]
        if not cand.depth <= ch.level_in <= level:
            raise ValueError(f"layer {layer.name!r}: level_in {ch.level_in} not in [{cand.depth}, {level}]")
        seconds += float(level_costs(cand.seconds_by_level, top)[ch.level_in])
        distortion += cand.distortion
        level = ch.level_in - cand.depth
        out[layer.name] = level
    if level < problem.tail_depth:
        raise ValueError(f"the tail needs {problem.tail_depth} levels but only {level} are left")
    seconds += float(level_costs(problem.tail_seconds_by_level, top)[level])
    return seconds, distortion


def to_solution(problem: OptimizationProblem, path: LevelPath, boot_level: int | None,
                info: dict) -> Solution:
    """Turn a DP path into a :class:`Solution`, re-checking it with :func:`evaluate_plan`."""
    choices = tuple(
        LayerChoice(layer.name, cand, boot, level_in)
        for layer, (cand, boot, level_in) in zip(problem.layers, path.steps, strict=True)
    )
    bootstraps = sum(ch.bootstrap_before for ch in choices)
    level_after = boot_level if bootstraps else None
    seconds, distortion = evaluate_plan(problem, choices, path.input_level, level_after)
    if not math.isclose(seconds, path.seconds, rel_tol=1e-9, abs_tol=1e-9):
        raise RuntimeError(f"level DP bookkeeping error: path costs {path.seconds} s, replay {seconds} s")
    return Solution(
        choices=choices,
        input_level=path.input_level,
        level_after_bootstrap=level_after,
        bootstraps=bootstraps,
        predicted_seconds=seconds,
        distortion=distortion,
        info=info,
    )


def place(problem: OptimizationProblem, indices: Sequence[int], info: dict | None = None) -> Solution:
    """Best bootstrap placement, bootstrap level, level reductions and input level for fixed candidates."""
    prep = prepare(problem)
    check_leveled_depth(problem, indices)
    allowed = [np.array([int(k)]) for k in indices]
    units = [np.zeros(1, dtype=np.int64) for _ in indices]
    path, level, per_config = best_path(prep, problem, allowed, units, 0)
    if path is None:
        raise InfeasibleError(no_plan_message(problem, "the chosen candidates"))
    return to_solution(problem, path, level, {**(info or {}), "configs": per_config,
                                              "states_max": path.states_max})


def no_plan_message(problem: OptimizationProblem, what: str) -> str:
    """One-line explanation for a level-infeasible problem."""
    if problem.bootstrap_configs:
        mode = f"bootstrapping to levels {sorted(problem.bootstrap_configs)}"
        if problem.max_bootstraps is not None:
            mode += f" at most {problem.max_bootstraps} times"
    else:
        mode = "no bootstrapping"
    return (f"no level assignment fits {what} with max_level {problem.max_level} and {mode} "
            f"(some activation, residual path or the tail runs out of levels)")
