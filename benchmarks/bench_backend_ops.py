"""Per-operation timings of the ``openfhe`` backend at a small ring (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_backend_ops.py --benchmark-only -p no:cacheprovider``
(the project's ``addopts`` skip benchmarks by default). N = 2^13, insecure opt-in, 6 levels, operands at
level 3 shaped like a program's (products with a pending rescale), Chebyshev series from level 6; the
bootstrap case uses N = 2^12 with 64 sparse slots and level budget [1, 1]. The shipped cost tables
(``olafhe/costs/openfhe-N*.json``) are the numbers the optimizer uses; these spot regressions.
"""

from __future__ import annotations

import numpy as np
import pytest

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.backends.openfhe.common import load_openfhe
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams

load_openfhe()  # before anything else imports openfhe: sets OMP_WAIT_POLICY=PASSIVE for libgomp

N = 8192
LEVEL = 3
STEPS = list(range(1, 9))


@pytest.fixture(scope="module")
def setup():
    params = CKKSParams(ring_dimension=N, scale_bits=50, first_mod_bits=60, levels=6, bootstrap=False, insecure=True)
    client, ev = OpenFHEBackend(params).keygen(KeyRequest(rotations=frozenset(STEPS)))
    rng = np.random.default_rng(0)
    x, y, w = (rng.uniform(-1, 1, N // 2) for _ in range(3))
    a = ev.multiply_scalar(client.encrypt(x, LEVEL + 1), 1.0)
    b = ev.multiply_scalar(client.encrypt(y, LEVEL + 1), 1.0)
    return ev, a, b, w, client.encrypt(x)


@pytest.mark.parametrize("op", ["add", "add_plain", "add_scalar", "multiply", "multiply_plain",
                                "multiply_scalar", "rotate", "level_reduce", "encode"])
def test_op(benchmark, setup, op):
    ev, a, b, w, _ = setup
    calls = {
        "add": lambda: ev.add(a, b),
        "add_plain": lambda: ev.add_plain(a, w),
        "add_scalar": lambda: ev.add_scalar(a, 0.5),
        "multiply": lambda: ev.multiply(a, b),
        "multiply_plain": lambda: ev.multiply_plain(a, w),
        "multiply_scalar": lambda: ev.multiply_scalar(a, 0.5),
        "rotate": lambda: ev.rotate(a, 1),
        "level_reduce": lambda: ev.level_reduce(a, 0),
        "encode": lambda: ev.encode(w, LEVEL),
    }
    out = benchmark(calls[op])
    if op != "encode":
        assert ev.level(out) in (LEVEL, LEVEL - 1, 0)


def test_rotate_hoisted_batch_of_8(benchmark, setup):
    ev, a, _, _, _ = setup
    out = benchmark(lambda: ev.rotate_hoisted(a, STEPS))
    assert sorted(out) == STEPS


@pytest.fixture(scope="module")
def chebyshev_setups():
    """One leveled context per Chebyshev method (``ckks.extra.chebyshev``), a fresh ciphertext at level 6."""
    out = {}
    for method in ("auto", "native", "program"):
        params = CKKSParams(ring_dimension=N, scale_bits=50, first_mod_bits=60, levels=6, bootstrap=False,
                            insecure=True, extra={"chebyshev": method})
        client, ev = OpenFHEBackend(params).keygen(KeyRequest())
        out[method] = (ev, client.encrypt(np.linspace(-1, 1, N // 2)))
    return out


@pytest.mark.parametrize("method", ["auto", "native", "program"])
@pytest.mark.parametrize("degree", [7, 15, 27, 31])
def test_chebyshev(benchmark, chebyshev_setups, degree, method):
    """OpenFHE's routine vs the depth-optimal program ("auto" picks per degree); depths differ at 7, 15, 31."""
    ev, top = chebyshev_setups[method]
    coeffs = np.linspace(1.0, 0.01, degree + 1)
    out = benchmark(lambda: ev.chebyshev(top, coeffs))
    benchmark.extra_info["depth"] = ev.chebyshev_depth(degree)
    assert ev.level(out) == ev.level(top) - ev.chebyshev_depth(degree)


def test_bootstrap_small_ring(benchmark):
    params = CKKSParams(ring_dimension=4096, levels=3, level_budget=(1, 1), slots=64, insecure=True)
    client, ev = OpenFHEBackend(params).keygen(KeyRequest(bootstrap=True))
    ct = client.encrypt(np.linspace(-1, 1, 64), 0)
    out = benchmark.pedantic(lambda: ev.bootstrap(ct), rounds=3, iterations=1)
    assert ev.level(out) == 3
