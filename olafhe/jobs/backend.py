"""Plugins a job runs with: the backend for a config (and plan), its cost table, approximators, optimizers."""

from __future__ import annotations

import warnings
from typing import NamedTuple

from olafhe.core.compiler.compile import compile_program
from olafhe.core.compiler.packing import Packing
from olafhe.core.compiler.program import Program
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend, Capabilities
from olafhe.core.contract.interfaces import Approximator, DegreeOptimizer
from olafhe.core.contract.registry import registry
from olafhe.core.errors import CostTableWarning, DataError, OlafheError
from olafhe.core.graph.ir import Graph
from olafhe.core.planning import machine
from olafhe.core.planning.ckks import resolve_ckks
from olafhe.core.planning.costs import CostTable, load_cost_table, load_machine_cost_table
from olafhe.core.planning.plan import Plan


def make_backend(config: Config, name: str | None = None, plan: Plan | None = None,
                 graph: Graph | None = None, batch: int = 1) -> Backend:
    """The backend ``name`` (default ``backend.name``) for ``plan``; ``graph`` enables automatic slots,
    ``batch`` images per ciphertext multiply them."""
    cls = registry().get("backends", name or config.backend.name)
    return cls(resolve_ckks(config, plan, graph, batch))


def cost_table(config: Config, backend_name: str | None = None, slots: int | None = None) -> CostTable:
    """The cost table of ``backend_name`` (default ``backend.cost_backend``) at the configured ring dimension,
    with the bootstrap costs of ``slots`` slots (see :meth:`CostTable.for_slots`): the one place tables
    are looked up.

    This machine's table (:func:`~olafhe.core.planning.costs.machine_cost_table_path`, keyed by CPU model
    and ``backend.ckks.threads``) comes first. Else the shipped table, with one
    :class:`~olafhe.core.errors.CostTableWarning` naming both machines; when none was shipped at that ring
    dimension, the nearest shipped table is scaled linearly in N (labelled ``estimated`` in its params).
    """
    name, n = backend_name or config.backend.cost_backend, config.backend.ckks.ring_dimension
    here = machine.machine_key(config.backend.ckks.threads or None)
    table = load_machine_cost_table(name, n, here)
    if table is not None:
        return table.for_slots(slots)
    table = load_cost_table(name, n, missing_ok=True) or _scaled_shipped_table(name, n)
    if table.machine_key != here:
        warnings.warn(
            f"no {table.name} cost table measured on this machine ({machine.cpu_model()}, key {here}); plans are "
            f"priced with the one measured on {table.machine.get('cpu', 'an unknown CPU')} (key {table.machine_key}), "
            f"whose bootstrap costs and their ranking may differ here. Measure this machine's with "
            f"`olafhe costs CONFIG --quick --set backend.ckks.ring_dimension={n}`",
            CostTableWarning, stacklevel=2)
    return table.for_slots(slots)


def _scaled_shipped_table(name: str, n: int) -> CostTable:
    """The nearest shipped table of backend ``name``, its costs scaled linearly from its ring dimension to ``n``."""
    for other in (65536, 32768, 16384, 8192, 4096):
        base = load_cost_table(name, other, missing_ok=True)
        if base is not None:
            f = n / other
            return CostTable(name, n, {k: {lv: v * f for lv, v in t.items()} for k, t in base.ops.items()},
                             {k: v * f for k, v in base.bootstrap.items()}, base.machine,
                             {**base.params, "estimated_from": other}, base.created)
    raise DataError(f"no cost table shipped for backend {name!r}; measure one with `olafhe costs CONFIG --quick`")


def warn_if_priced_elsewhere(config: Config, plan: Plan) -> str | None:
    """Warn (:class:`~olafhe.core.errors.CostTableWarning`) when ``plan`` was priced with a table measured on
    another machine than this one; returns the machine it was priced on (None: unknown).

    Plans made before tables were keyed by machine name none; they were priced with the shipped table.
    """
    if not plan.ckks.cost_table:
        return None
    priced_on = plan.ckks.cost_machine
    if priced_on is None:
        backend, _, ring = plan.ckks.cost_table.rpartition("-N")
        shipped = load_cost_table(backend, int(ring), missing_ok=True) if ring.isdigit() else None
        priced_on = shipped.machine_key if shipped is not None else None
    here = machine.machine_key(config.backend.ckks.threads or None)
    if priced_on is not None and priced_on != here:
        warnings.warn(
            f"the plan was priced with cost table {plan.ckks.cost_table} of machine {priced_on}, but runs on "
            f"{here} ({machine.cpu_model()}): its predicted latency and bootstrap choices may not hold here; measure "
            f"this machine's table with `olafhe costs CONFIG --quick` and optimize again",
            CostTableWarning, stacklevel=2)
    return priced_on


def check_runnable(plan: Plan, backend: Backend) -> Capabilities:
    """The backend's capabilities, after refusing (before any work) a plan it cannot run.

    The message names the plan's bootstraps and depth and the backend's limit.
    """
    caps = backend.capabilities()
    if plan.bootstraps and not caps.bootstrapping:
        raise OlafheError(
            f"backend {backend.name!r} cannot bootstrap, but the plan needs {plan.bootstraps} bootstraps "
            f"(total activation depth {plan.total_activation_depth()}, backend max level {caps.max_level}); "
            "make a leveled plan with --set optimizer.leveled=true"
        )
    if plan.input_level > caps.max_level:
        raise OlafheError(
            f"plan needs input level {plan.input_level} (total activation depth {plan.total_activation_depth()}, "
            f"{plan.bootstraps} bootstraps) but backend {backend.name!r} allows at most {caps.max_level}"
        )
    return caps


def approximator_for(config: Config, name: str | None = None) -> Approximator:
    cls = registry().get("approximators", name or config.approximation.approximator)
    return cls(activation=config.approximation.activation, **config.approximation.approximator_params)


def optimizer_for(config: Config, name: str | None = None) -> DegreeOptimizer:
    cls = registry().get("optimizers", name or config.optimizer.name)
    return cls(**config.optimizer.optimizer_params)


class Compiled(NamedTuple):
    """A plan compiled for a backend: the backend, its (physical) capabilities, the packing of images into its
    slots and the program of one image."""

    backend: Backend
    caps: Capabilities
    packing: Packing
    program: Program


def compile_for_backend(config: Config, graph: Graph, plan: Plan, backend_name: str | None = None,
                        batch: int = 1) -> Compiled:
    """``plan`` compiled as every job runs it on ``backend_name`` with ``batch`` images per ciphertext
    (refused before any work, like :func:`check_runnable`, when the backend cannot run it)."""
    backend = make_backend(config, backend_name, plan, graph, batch)
    caps = check_runnable(plan, backend)
    packing = Packing(batch, caps.slots // batch)
    program = compile_program(graph, {ly.name: ly for ly in plan.layers}, packing.slots, plan.input_level,
                              cache_diagonals=caps.ring_dimension <= 2**14,
                              max_rotation_keys=config.backend.max_rotation_keys)
    return Compiled(backend, caps, packing, program)
