"""The exact level dynamic program: the cheapest bootstrap placement, level reductions and input level
for one bootstrap level ``L`` (or none) under the level model of :mod:`olafhe.optimizers.level_model`.

:meth:`LevelSolver.solve` works over states ``(main level, levels of pending skip sources, bootstraps so
far [only with a cap]) x units used``; each state holds a numpy row over the distortion units ``u``
(exactly ``u`` units used), and each layer is four vectorized relaxations (linear+add, bootstrap, level
reduction, candidate). See :mod:`olafhe.optimizers.dp` for the recursion and its complexity. Greedy and
uniform call it with one allowed candidate per layer and zero units (pure placement); ``dp`` with every
candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from olafhe.optimizers.level_model import INF, Structure


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


class LevelSolver:
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
