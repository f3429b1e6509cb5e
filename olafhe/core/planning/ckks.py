"""Which CKKS parameters a job runs with: the config's, overridden by a plan's, with automatic slots.

A plan is optimized for one bootstrapping configuration (its levels, scale, level budget, slots and
measured precision), so jobs that run a plan use the plan's values over the config's;
:func:`plan_ckks` is the other direction, the parameters a new plan records.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from olafhe.core.config import Config
from olafhe.core.contract.backend import Capabilities
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.errors import ConfigError
from olafhe.core.graph.ir import Graph
from olafhe.core.planning.plan import Plan, PlanCKKS

T = TypeVar("T")


def _first(value: T | None, default: T) -> T:
    return default if value is None else value


def slot_count(config: Config, graph: Graph | None = None, plan: Plan | None = None) -> int | None:
    """Slots per ciphertext: ``backend.ckks.slots`` when set, else the plan's, else automatic.

    Automatic packing is sparse when bootstrapping: the smallest power of two that holds the largest
    tensor of ``graph`` (every layout's period is at most that for grid and multiplexed layouts). A
    sparse bootstrap is much cheaper (OpenFHE, N = 2^16, 6 levels, measured: 15.7 s over 2^15 slots,
    11.2 s over 2^14, 9.1 s over 2^12) and as precise, while linear layers cost the same: data of period
    P repeats ``slots / P`` times either way. Without bootstrapping fewer slots save nothing, so the
    result is ``None`` (all ``ring_dimension / 2``).
    """
    c = config.backend.ckks
    if c.slots:
        return int(c.slots)
    recorded = plan.ckks if plan is not None else PlanCKKS()
    if recorded.slots:
        return int(recorded.slots)
    if graph is None or not _first(recorded.bootstrap, c.bootstrap):
        return None
    return min(c.ring_dimension // 2, _largest_tensor_slots(graph))


def _largest_tensor_slots(graph: Graph) -> int:
    largest = max(int(np.prod(node.shape)) for node in graph.nodes)
    return 1 << max(0, (largest - 1).bit_length())


def _image_slots(config: Config, graph: Graph | None) -> int:
    """Slots one packed image takes: ``backend.ckks.slots`` when set, else its largest tensor's."""
    if config.backend.ckks.slots:
        return int(config.backend.ckks.slots)
    if graph is None:
        raise ConfigError("packing several images per ciphertext needs the model graph or ckks.slots")
    return _largest_tensor_slots(graph)


def images_per_ciphertext(config: Config, graph: Graph, plan: Plan | None = None, images: int | None = None) -> int:
    """How many images share one ciphertext (slot interleaving, :mod:`olafhe.core.compiler.packing`).

    ``backend.ckks.batch`` when set, else the batch ``plan`` was priced for, else automatic: as many as
    the slots hold (``ring_dimension / 2`` over one image's slots) and ``images`` need (a power of two),
    and one image when the count is unknown (keys made ahead of time, single-image latency).
    """
    c = config.backend.ckks
    per_image = _image_slots(config, graph)
    fits = max(1, (c.ring_dimension // 2) // per_image)
    chosen = c.batch or (plan.ckks.batch if plan is not None and plan.ckks.batch else 0)
    if chosen:
        if chosen & (chosen - 1) or chosen > fits:
            raise ConfigError(f"backend.ckks.batch = {chosen}: images per ciphertext must be a power of two "
                              f"<= {fits} (ring dimension {c.ring_dimension}, {per_image} slots per image)")
        return int(chosen)
    if not images or images <= 1:
        return 1
    return min(fits, 1 << (int(images) - 1).bit_length())


def resolve_ckks(config: Config, plan: Plan | None = None, graph: Graph | None = None,
                 batch: int = 1) -> CKKSParams:
    """The CKKS parameters of ``config`` (``backend.ckks``), overridden by those ``plan`` recorded
    (scale, first modulus, levels, bootstrapping, level budget, secret key, slots, precision), with
    automatic slots from ``graph`` (see :func:`slot_count`); ``batch`` images per ciphertext multiply
    the slots one image needs (see :func:`images_per_ciphertext`)."""
    c = config.backend.ckks
    slots = batch * _image_slots(config, graph) if batch > 1 else slot_count(config, graph, plan)
    p = plan.ckks if plan is not None else PlanCKKS()
    extra: dict = {"noise": c.noise}
    if p.precision_bits is not None:
        extra["bootstrap_precision_bits"] = float(p.precision_bits)
    return CKKSParams(
        ring_dimension=c.ring_dimension, scale_bits=int(_first(p.scale_bits, c.scale_bits)),
        first_mod_bits=int(_first(p.first_mod_bits, c.first_mod_bits)), levels=int(_first(p.levels, c.levels)),
        bootstrap=bool(_first(p.bootstrap, c.bootstrap)),
        level_budget=tuple(_first(p.level_budget, c.level_budget)),  # type: ignore[arg-type]
        secret_key_dist=str(_first(p.secret_key_dist, c.secret_key_dist)),
        bootstrap_iterations=c.bootstrap_iterations, slots=slots, insecure=c.insecure,
        threads=c.threads or None, extra=extra,
    )


def plan_ckks(params: CKKSParams, caps: Capabilities, cost_table: str,
              measured: CKKSParams | None = None, cost_machine: str | None = None,
              batch: int = 1) -> PlanCKKS:
    """The parameters a plan records: ring dimension, security and slots of the backend it was optimized
    for (``caps`` seen per image), the cost table that priced it (and the key of the machine that measured
    it), ``batch`` images per ciphertext when more than one, and the scale and bootstrapping configuration
    (``measured``, the cost table's run that bootstraps to the plan's levels, with its precision, else
    ``params``)."""
    src = measured or params
    precision = measured.extra.get("bootstrap_precision_bits") if measured is not None else None
    return PlanCKKS(ring_dimension=caps.ring_dimension, security_bits=caps.security_bits,
                    scale_bits=src.scale_bits, first_mod_bits=src.first_mod_bits,
                    level_budget=tuple(src.level_budget),  # type: ignore[arg-type]
                    secret_key_dist=src.secret_key_dist, slots=caps.slots, cost_table=cost_table,
                    cost_machine=cost_machine, precision_bits=precision, batch=batch if batch > 1 else None)
