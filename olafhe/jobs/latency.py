"""Predicted seconds per image of a plan on a backend: its compiled program's operations x a cost table."""

from __future__ import annotations

import numpy as np

from olafhe.core.compiler.program import Program
from olafhe.core.compiler.runtime import encrypted_inference
from olafhe.core.config import Config
from olafhe.core.contract.backend import Backend
from olafhe.core.contract.ckks import CKKSParams
from olafhe.core.planning.costs import CostTable
from olafhe.core.planning.plan import Plan
from olafhe.jobs.backend import compile_for_backend, cost_table, warn_if_priced_elsewhere
from olafhe.jobs.workspace import Loaded, check_plan, load, test_set


def predict_plan_seconds(config: Config, plan: Plan, backend_name: str, loaded: Loaded | None = None,
                         batch: int = 1) -> float:
    """Predicted seconds per image of ``plan`` on ``backend_name``, from that backend's cost table, with
    ``batch`` images per ciphertext.

    The plan is compiled as :func:`~olafhe.jobs.infer.run_infer` would for that backend (its slots,
    Chebyshev depths and rotation-key budget), so a plan optimized against one library's costs can be
    priced on another. Refuses, like ``infer``, a plan the backend cannot run (bootstraps without
    bootstrapping, levels) or one made for another model or checkpoint, and warns about one priced with
    another machine's cost table (the prediction itself uses this machine's table when there is one).
    """
    loaded = loaded or load(config)
    check_plan(config, loaded, plan)
    warn_if_priced_elsewhere(config, plan)
    backend, caps, _, program = compile_for_backend(config, loaded.graph, plan, backend_name, batch)
    x, _ = test_set(loaded.data_dir, 1)
    costs = cost_table(config, backend.name, caps.slots).per_image(batch)
    return predict_program_seconds(program, costs, backend, x[0].numpy())


def predict_program_seconds(program: Program, costs: CostTable, backend: Backend, image: np.ndarray) -> float:
    """Predicted latency of one inference: the program's operation counts (by kind and level, from an
    op-by-op simulator run of one image with the target backend's Chebyshev depths) times the cost table
    (per image when it is :meth:`CostTable.per_image`)."""
    from olafhe.backends.simulator import SimulatorBackend

    caps = backend.capabilities()
    sim = SimulatorBackend(CKKSParams(ring_dimension=caps.ring_dimension, levels=caps.max_level, slots=program.slots,
                                      bootstrap=caps.bootstrapping, insecure=True, extra={"noise": False}))
    client, server = sim.keygen(program.key_request())
    server.chebyshev_depth = backend.chebyshev_depth  # type: ignore[method-assign]
    encrypted_inference(program, client, server, image)
    counts = dict(server.counter.counts)
    if caps.level_after_bootstrap is not None:  # bootstrap cost is keyed by the level it refreshes to
        boots = sum(n for (k, _), n in counts.items() if k == "bootstrap")
        counts = {key: n for key, n in counts.items() if key[0] != "bootstrap"}
        if boots:
            counts[("bootstrap", caps.level_after_bootstrap)] = boots
    return costs.predict(counts)
