"""The ``openfhe`` backend against numpy oracles, its level bookkeeping, security and key hygiene.

Small insecure rings (N = 2^12, opted in with ``insecure=True``) keep the file fast; the 128-bit
checks at N = 2^16 only build crypto contexts (no keys). Tolerances: at a 40-bit scale OpenFHE's
errors are ~1e-7 (``ATOL`` = 2^-17 leaves a wide margin); bootstrapping keeps ~24-26 bits here.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from numpy.polynomial import chebyshev as C

from olafhe.backends.openfhe.common import load_openfhe
from olafhe.core.errors import OlafheError

# Load openfhe through the backend so that OMP_WAIT_POLICY=PASSIVE is set before libgomp starts
# (spinning OpenMP threads slow everything down tenfold on a shared 2-core machine).
try:
    openfhe = load_openfhe()
except OlafheError as exc:  # pragma: no cover - openfhe is a hard dependency
    pytest.skip(str(exc), allow_module_level=True)

from olafhe.backends.openfhe.backend import OpenFHEBackend, measure_chebyshev_depths  # noqa: E402
from olafhe.backends.openfhe.common import set_openmp_threads  # noqa: E402
from olafhe.backends.simulator import SimulatorBackend  # noqa: E402
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams, bootstrap_cubic_error
from olafhe.core.errors import (  # noqa: E402
    ApproximationError,
    CapabilityError,
    ConfigError,
    OutOfLevelsError,
    SecurityError,
    ShapeError,
)
from olafhe.core.planning.costs import CostTable, load_cost_table  # noqa: E402
from olafhe.core.poly.chebyshev import MAX_CHEBYSHEV_DEGREE, openfhe_chebyshev_depth  # noqa: E402
from olafhe.jobs.measure_costs import measure_cost_table, merge_cost_tables  # noqa: E402

pytestmark = pytest.mark.openfhe

N = 4096
SLOTS = N // 2
LEVELS = 8
ATOL = 2.0**-17
ROTATIONS = frozenset({1, 2, 3, 5, SLOTS - 4})


@pytest.fixture(scope="module")
def leveled():
    """Client and evaluator of a leveled (no bootstrapping) N = 2^12 context with 8 levels."""
    params = CKKSParams(ring_dimension=N, scale_bits=40, first_mod_bits=60, levels=LEVELS, bootstrap=False,
                        insecure=True)
    backend = OpenFHEBackend(params)
    client, ev = backend.keygen(KeyRequest(rotations=ROTATIONS))
    return backend, client, ev


@pytest.fixture(scope="module")
def bootstrapping():
    """N = 2^12, 64 sparse slots, 3 levels after bootstrapping, level budget [1, 1]."""
    params = CKKSParams(ring_dimension=N, levels=3, level_budget=(1, 1), slots=64, insecure=True)
    backend = OpenFHEBackend(params)
    client, ev = backend.keygen(KeyRequest(rotations=frozenset({1}), bootstrap=True))
    return backend, client, ev


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.uniform(-1, 1, SLOTS), rng.uniform(-1, 1, SLOTS), rng.uniform(-1, 1, SLOTS)


# ------------------------------------------------------------------------------------------------ basics
def test_registered_as_openfhe_plugin():
    from olafhe.core.contract.registry import registry

    assert registry().get("backend", "openfhe") is OpenFHEBackend


def test_capabilities_of_insecure_leveled_context(leveled):
    backend, _, ev = leveled
    caps = backend.capabilities()
    assert (caps.backend, caps.slots, caps.ring_dimension, caps.max_level) == ("openfhe", SLOTS, N, LEVELS)
    assert caps.bootstrapping is False and caps.level_after_bootstrap is None
    assert caps.security_bits == 0 and caps.scale_bits == 40
    assert ev.capabilities == caps
    info = backend.context_info()
    assert info["depth"] == LEVELS and info["reserved_levels"] == 0 and info["scaling"] == "FLEXIBLEAUTO"


def test_encrypt_decrypt_roundtrip_pads_and_truncates(leveled, data):
    _, client, ev = leveled
    x = data[0][:100]
    ct = client.encrypt(x)
    assert ev.level(ct) == LEVELS
    full = client.decrypt(ct)
    assert full.shape == (SLOTS,)
    np.testing.assert_allclose(full[:100], x, atol=ATOL)
    np.testing.assert_allclose(full[100:], 0.0, atol=ATOL)
    assert client.decrypt(ct, 7).shape == (7,)
    assert ev.level(client.encrypt(x, 2)) == 2


def test_bad_shapes_and_levels_raise_specific_errors(leveled):
    _, client, ev = leveled
    with pytest.raises(ShapeError, match="do not fit in 2048 slots"):
        client.encrypt(np.zeros(SLOTS + 1))
    with pytest.raises(ShapeError, match="1-D"):
        client.encrypt(np.zeros((2, 2)))
    with pytest.raises(CapabilityError, match="levels 0..8"):
        client.encrypt(np.zeros(4), LEVELS + 1)
    ct = client.encrypt(np.zeros(4))
    with pytest.raises(ShapeError, match="outside 0..2048"):
        client.decrypt(ct, SLOTS + 1)
    with pytest.raises(ShapeError, match="do not fit"):
        ev.add_plain(ct, np.zeros(SLOTS + 3))
    with pytest.raises(ShapeError, match="expected an OpenFHE ciphertext"):
        ev.level(np.zeros(3))


def test_bad_plain_vectors_raise_the_same_errors_as_the_simulator(leveled, bad_plain_vectors):
    backend, client, ev = leveled
    sim_client, sim_ev = SimulatorBackend(backend.params).keygen(KeyRequest(rotations=ROTATIONS))
    ct, sim_ct = client.encrypt(np.zeros(4)), sim_client.encrypt(np.zeros(4))
    for values, error, message in bad_plain_vectors(SLOTS):
        for call in (client.encrypt, partial(ev.add_plain, ct), partial(ev.multiply_plain, ct),
                     partial(ev.encode, level=LEVELS), sim_client.encrypt, partial(sim_ev.add_plain, sim_ct),
                     partial(sim_ev.multiply_plain, sim_ct)):
            with pytest.raises(error, match=message):
                call(values)


# ------------------------------------------------------------------------------------------------ oracles
def test_operations_match_numpy(leveled, data):
    _, client, ev = leveled
    x, y, w = data
    a, b = client.encrypt(x), client.encrypt(y, 5)
    cases = {
        "add": (ev.add(a, b), x + y, 5),
        "add_plain": (ev.add_plain(a, w), x + w, LEVELS),
        "add_scalar": (ev.add_scalar(a, -0.375), x - 0.375, LEVELS),
        "multiply": (ev.multiply(a, b), x * y, 4),
        "square": (ev.multiply(a, a), x * x, LEVELS - 1),
        "multiply_plain": (ev.multiply_plain(a, w), x * w, LEVELS - 1),
        "multiply_scalar": (ev.multiply_scalar(a, 0.3), 0.3 * x, LEVELS - 1),
        "rotate": (ev.rotate(a, 3), np.roll(x, -3), LEVELS),
        "rotate_negative": (ev.rotate(a, -4), np.roll(x, 4), LEVELS),
        "level_reduce": (ev.level_reduce(a, 2), x, 2),
    }
    for name, (ct, expected, level) in cases.items():
        assert ev.level(ct) == level, name
        np.testing.assert_allclose(client.decrypt(ct), expected, atol=ATOL, err_msg=name)


def test_operations_on_products_with_pending_rescale(leveled, data):
    """FLEXIBLEAUTO keeps a pending rescale after products; every op must still be exact."""
    _, client, ev = leveled
    x, y, w = data
    p = ev.multiply(client.encrypt(x), client.encrypt(y))  # level 7, rescale pending
    q = ev.multiply_scalar(client.encrypt(w, 3), 0.5)       # level 2, rescale pending
    checks = {
        "add_plain": (ev.add_plain(p, w), x * y + w, 7),
        "multiply_plain": (ev.multiply_plain(p, w), x * y * w, 6),
        "add_different_levels": (ev.add(p, q), x * y + 0.5 * w, 2),
        "multiply_different_levels": (ev.multiply(q, p), 0.5 * w * x * y, 1),
        "level_reduce_to_0": (ev.level_reduce(p, 0), x * y, 0),
        "add_at_level_0": (ev.add(p, client.encrypt(w, 0)), x * y + w, 0),
        "rotate": (ev.rotate(p, 1), np.roll(x * y, -1), 7),
    }
    for name, (ct, expected, level) in checks.items():
        assert ev.level(ct) == level, name
        np.testing.assert_allclose(client.decrypt(ct), expected, atol=ATOL, err_msg=name)


def test_settle_does_the_pending_rescale_once(leveled, data):
    """settle() keeps level and values but leaves nothing pending for the linear layer's many products."""
    _, client, ev = leveled
    x, y, w = data
    p = ev.multiply(client.encrypt(x), client.encrypt(y))
    assert p.GetNoiseScaleDeg() == 2
    s = ev.settle(p)
    assert s.GetNoiseScaleDeg() == 1 and ev.level(s) == ev.level(p) == 7
    np.testing.assert_allclose(client.decrypt(s), x * y, atol=ATOL)
    rotated = ev.rotate_hoisted(s, [1, 2])
    assert all(r.GetNoiseScaleDeg() == 1 for r in rotated.values())
    out = ev.multiply_plain_sum([rotated[1], rotated[2]], [w, y])
    assert ev.level(out) == 6
    np.testing.assert_allclose(client.decrypt(out), np.roll(x * y, -1) * w + np.roll(x * y, -2) * y, atol=ATOL)
    assert ev.settle(s) is s  # nothing pending: no work


def test_hoisted_rotations_match_numpy_and_are_counted(leveled, data):
    _, client, ev = leveled
    x = data[0]
    a = client.encrypt(x, 4)
    ev.counter.reset()
    out = ev.rotate_hoisted(a, [1, 2, 5, 0, SLOTS + 3])
    assert sorted(out) == [0, 1, 2, 5, SLOTS + 3]
    for steps, ct in out.items():
        assert ev.level(ct) == 4
        np.testing.assert_allclose(client.decrypt(ct), np.roll(x, -steps), atol=ATOL)
    assert ev.counter.counts[("hoist_precompute", 4)] == 1
    assert ev.counter.counts[("rotate_hoisted", 4)] == 4
    assert ev.counter.seconds[("rotate_hoisted", 4)] > 0


def test_pre_encoded_plaintexts(leveled, data):
    _, client, ev = leveled
    x, _, w = data
    a = client.encrypt(x, 6)
    pt = ev.encode(w, 6)
    np.testing.assert_allclose(client.decrypt(ev.multiply_plain(a, pt)), x * w, atol=ATOL)
    np.testing.assert_allclose(client.decrypt(ev.add_plain(a, pt)), x + w, atol=ATOL)
    assert ev.counter.counts[("encode", 6)] >= 1
    for level in (0, 1):  # products (rescale pending) against plaintexts encoded for that level
        p = ev.multiply_scalar(client.encrypt(x, level + 1), 0.5)
        np.testing.assert_allclose(client.decrypt(ev.add_plain(p, ev.encode(w, level))), 0.5 * x + w, atol=ATOL)
        if level:
            np.testing.assert_allclose(client.decrypt(ev.multiply_plain(p, ev.encode(w, level))), 0.5 * x * w,
                                       atol=ATOL)
    with pytest.raises(CapabilityError, match="levels are 0..8"):
        ev.encode(w, LEVELS + 1)


def test_missing_rotation_key_is_a_capability_error(leveled):
    _, client, ev = leveled
    ct = client.encrypt(np.ones(4))
    with pytest.raises(CapabilityError, match="no rotation key for 7"):
        ev.rotate(ct, 7)
    with pytest.raises(CapabilityError, match="no rotation key for 9"):
        ev.rotate_hoisted(ct, [1, 9])
    assert ev.rotate(ct, SLOTS) is ct  # identity needs no key


def test_sparse_slots_rotate_cyclically_within_the_slots(bootstrapping):
    backend, client, ev = bootstrapping
    slots = backend.capabilities().slots
    x = np.arange(slots) / slots
    np.testing.assert_allclose(client.decrypt(ev.rotate(client.encrypt(x), 1)), np.roll(x, -1), atol=ATOL)


# ------------------------------------------------------------------------------------------------ levels
def test_level_bookkeeping_of_a_hand_computed_program(leveled, data):
    """Expected levels worked out by hand from the contract and the measured Chebyshev depths."""
    _, client, ev = leveled
    x, y, w = data
    xy = ev.multiply(client.encrypt(x), client.encrypt(y))                # 8 -> 7
    xyw = ev.multiply_plain(xy, w)                                        # 7 -> 6
    s = ev.add(xyw, client.encrypt(w, 4))                                 # min(6, 4) = 4
    s = ev.add_scalar(ev.rotate(s, 1), 0.5)                               # 4
    r = ev.level_reduce(ev.multiply_scalar(client.encrypt(x), 0.5), 7)    # 8 -> 7 -> 7 (no-op)
    t = ev.chebyshev(ev.level_reduce(r, 6), np.full(8, 0.1))               # 6 - depth(7)=3 -> 3
    u = ev.chebyshev(client.encrypt(x), np.full(16, 0.05))                # 8 - depth(15)=4 -> 4
    assert [ev.level(c) for c in (xy, xyw, s, r, t, u)] == [7, 6, 4, 7, 3, 4]
    expected = np.roll(x * y * w + w, -1) + 0.5
    np.testing.assert_allclose(client.decrypt(s), expected, atol=ATOL)
    np.testing.assert_allclose(client.decrypt(t), C.chebval(0.5 * x, np.full(8, 0.1)), atol=ATOL)
    np.testing.assert_allclose(client.decrypt(u), C.chebval(x, np.full(16, 0.05)), atol=ATOL)


def test_counter_records_kind_level_and_time(leveled, data):
    _, client, ev = leveled
    ev.counter.reset()
    a = client.encrypt(data[0], 5)
    ev.multiply(a, a)
    ev.add(a, client.encrypt(data[1], 3))
    ev.chebyshev(a, np.array([0.0, 1.0, 0.5]))
    assert ev.counter.counts == {("multiply", 5): 1, ("add", 3): 1, ("chebyshev_2", 5): 1}
    assert all(s > 0 for s in ev.counter.seconds.values())


def test_out_of_levels_raises_before_touching_data(leveled):
    _, client, ev = leveled
    bottom = client.encrypt(np.ones(4), 0)
    for op in (lambda: ev.multiply(bottom, bottom), lambda: ev.multiply_plain(bottom, np.ones(4)),
               lambda: ev.multiply_scalar(bottom, 2.0)):
        with pytest.raises(OutOfLevelsError, match="has 0 left"):
            op()
    with pytest.raises(OutOfLevelsError, match=r"chebyshev \(degree 15\) needs 4 level"):
        ev.chebyshev(client.encrypt(np.ones(4), 3), np.ones(16))
    with pytest.raises(OutOfLevelsError, match="only bootstrap raises"):
        ev.level_reduce(client.encrypt(np.ones(4), 2), 3)
    with pytest.raises(OutOfLevelsError, match=">= 0"):
        ev.level_reduce(bottom, -1)
    with pytest.raises(CapabilityError, match="cannot bootstrap"):
        ev.bootstrap(bottom)


# ------------------------------------------------------------------------------------------------ Chebyshev
def test_chebyshev_depth_table_shape():
    assert [openfhe_chebyshev_depth(d) for d in (0, 1, 2, 3, 5, 7, 15, 27, 31, 59, 63, 119, 127)] == \
        [0, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 8]
    assert all(openfhe_chebyshev_depth(d) >= max(1, math.ceil(math.log2(d + 1))) for d in range(1, 256))
    with pytest.raises(ApproximationError, match="above 255"):
        openfhe_chebyshev_depth(MAX_CHEBYSHEV_DEGREE + 1)
    backend = OpenFHEBackend(CKKSParams(ring_dimension=N, levels=2, bootstrap=False, insecure=True))
    assert backend.chebyshev_depth(15) == 4  # the shared depth-optimal program, not the table


def test_chebyshev_depth_table_matches_raw_openfhe():
    """OpenFHE's own consumption (no alignment by the evaluator) at each depth boundary."""
    degrees = [1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 16, 27, 28, 31, 32, 59, 60, 63]
    measured = measure_chebyshev_depths(degrees)
    assert measured == {d: openfhe_chebyshev_depth(d) for d in degrees}


def test_evaluator_chebyshev_takes_the_optimal_depth(leveled, data):
    _, client, ev = leveled
    x = 0.9 * data[0]
    ct = client.encrypt(x)
    rng = np.random.default_rng(3)
    for d in (0, 1, 2, 3, 4, 6, 7, 13, 14, 15, 27, 28, 31):
        coeffs = rng.uniform(-1, 1, d + 1) / np.arange(1, d + 2)
        out = ev.chebyshev(ct, coeffs)
        assert ev.level(out) == LEVELS - math.ceil(math.log2(d + 1)), d  # one level less than OpenFHE's at 7, 15, 31
        np.testing.assert_allclose(client.decrypt(out), C.chebval(x, coeffs), atol=1e-5, err_msg=str(d))
    assert ev.chebyshev_depth(31) == 5 and ev.chebyshev_depth(15) == 4
    # a series whose only significant coefficient is the constant still yields a ciphertext at its level
    flat = ev.chebyshev(ct, np.array([0.25, 0.0, 1e-30, 0.0]))
    assert ev.level(flat) == LEVELS - 2 and np.allclose(client.decrypt(flat, 4), 0.25, atol=1e-6)


@pytest.mark.parametrize("method", ["native", "program"])
def test_forced_chebyshev_method_matches_numpy_at_its_depth(data, method):
    backend = OpenFHEBackend(CKKSParams(ring_dimension=N, scale_bits=40, first_mod_bits=60, levels=LEVELS,
                                        bootstrap=False, insecure=True, extra={"chebyshev": method}))
    client, ev = backend.keygen(KeyRequest())
    x = 0.9 * data[0]
    rng = np.random.default_rng(4)
    for d in (11, 15, 27):  # OpenFHE's routine is depth-optimal at 11 and 27, one level deeper at 15
        coeffs = rng.uniform(-1, 1, d + 1) / np.arange(1, d + 2)
        out = ev.chebyshev(client.encrypt(x), coeffs)
        depth = openfhe_chebyshev_depth(d) if method == "native" else math.ceil(math.log2(d + 1))
        assert backend.chebyshev_depth(d) == ev.chebyshev_depth(d) == depth
        assert ev.level(out) == LEVELS - depth, d
        np.testing.assert_allclose(client.decrypt(out), C.chebval(x, coeffs), atol=1e-5)
    with pytest.raises(ConfigError, match="chebyshev must be one of"):
        OpenFHEBackend(CKKSParams(ring_dimension=N, insecure=True, bootstrap=False, extra={"chebyshev": "fast"}))


def test_chebyshev_at_the_lowest_level_that_fits(leveled, data):
    _, client, ev = leveled
    x = data[0]
    for d in (7, 15):
        depth = ev.chebyshev_depth(d)
        coeffs = np.linspace(0.3, -0.2, d + 1)
        out = ev.chebyshev(client.encrypt(x, depth), coeffs)
        assert ev.level(out) == 0
        np.testing.assert_allclose(client.decrypt(out), C.chebval(x, coeffs), atol=1e-5)


def test_chebyshev_relu_approximation_matches_numpy(leveled):
    _, client, ev = leveled
    t = np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
    coeffs = C.chebfit(t, np.maximum(t, 0.0), 15)
    x = np.linspace(-1, 1, SLOTS)
    out = client.decrypt(ev.chebyshev(client.encrypt(x), coeffs))
    assert np.max(np.abs(out - C.chebval(x, coeffs))) < 1e-3
    assert np.max(np.abs(out - np.maximum(x, 0))) < 0.05  # and it is a ReLU approximation


def test_chebyshev_rejects_bad_coefficients(leveled):
    _, client, ev = leveled
    ct = client.encrypt(np.ones(4))
    with pytest.raises(ShapeError, match="non-empty 1-D"):
        ev.chebyshev(ct, np.zeros((2, 3)))
    with pytest.raises(ApproximationError, match="NaN"):
        ev.chebyshev(ct, np.array([0.0, np.nan]))


# ------------------------------------------------------------------------------------------------ keys
def _reachable(obj, seen=None, depth=0):
    """Every object reachable from ``obj`` through attributes, containers and closures."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    yield obj
    children = []
    if isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    for slot in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, slot):
            children.append(getattr(obj, slot))
    for child in children:
        if isinstance(child, (str, bytes, int, float, np.ndarray)) or child is None:
            continue
        yield from _reachable(child, seen, depth + 1)


def test_server_holds_no_secret_key(leveled, bootstrapping):
    for _, client, ev in (leveled, bootstrapping):
        found = list(_reachable(ev))
        assert any(isinstance(o, openfhe.CryptoContext) for o in found)
        assert not any(isinstance(o, (openfhe.PrivateKey, openfhe.KeyPair)) for o in found)
        assert any(isinstance(o, openfhe.PrivateKey) for o in _reachable(client))  # the walk does find keys


def test_dropped_keys_are_freed_and_live_keys_survive(leveled, data):
    """OpenFHE keeps evaluation keys in process-wide maps; dropping a client/evaluator pair frees them."""
    import gc

    _, client, ev = leveled
    tags = set(openfhe.CryptoContext.GetAllEvalAutomorphismKeys())
    params = CKKSParams(ring_dimension=2048, levels=2, bootstrap=False, insecure=True)
    for _ in range(2):
        c2, e2 = OpenFHEBackend(params).keygen(KeyRequest(rotations=frozenset({1, 3})))
        assert len(openfhe.CryptoContext.GetAllEvalAutomorphismKeys()) == len(tags) + 1
        e2.close()
        del c2, e2
        gc.collect()
        assert set(openfhe.CryptoContext.GetAllEvalAutomorphismKeys()) == tags
    x = data[0]  # the fixture's rotation and relinearization keys were re-inserted
    out = ev.multiply(ev.rotate(client.encrypt(x), 5), client.encrypt(x))
    np.testing.assert_allclose(client.decrypt(out), np.roll(x, -5) * x, atol=ATOL)


# ------------------------------------------------------------------------------------------------ security
def test_insecure_ring_dimension_needs_the_opt_in():
    params = CKKSParams(ring_dimension=N, levels=3, bootstrap=False)
    with pytest.raises(SecurityError, match="below 128-bit security.*ckks.insecure = true"):
        OpenFHEBackend(params).capabilities()
    with pytest.raises(SecurityError):
        OpenFHEBackend(params).keygen(KeyRequest())
    assert OpenFHEBackend(params.with_(insecure=True)).capabilities().security_bits == 0


def test_secure_n65536_context_is_128_bit_without_keys():
    backend = OpenFHEBackend(CKKSParams(ring_dimension=65536, levels=3))
    assert backend.capabilities().security_bits == 128
    info = backend.context_info()
    assert info["depth"] == 3 + info["bootstrap_depth"] + 1 and info["bootstrap_depth"] == 16
    assert info["modulus_bits"] <= 1772


def test_openfhe_rejection_becomes_security_error_with_a_hint():
    """Levels 9 at N = 2^16 with [3, 3] bootstrapping pass the log Q table but fail OpenFHE's log QP check."""
    with pytest.raises(SecurityError, match=r"at most 6 levels fit"):
        OpenFHEBackend(CKKSParams(ring_dimension=65536, levels=9)).capabilities()


def test_sparse_ternary_secret_needs_the_opt_in():
    with pytest.raises(SecurityError, match="SPARSE_TERNARY"):
        OpenFHEBackend(CKKSParams(ring_dimension=65536, levels=3, secret_key_dist="SPARSE_TERNARY"))


def test_invalid_openfhe_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="scale_bits"):
        OpenFHEBackend(CKKSParams(scale_bits=60, first_mod_bits=60))
    with pytest.raises(ConfigError, match="bootstrap_iterations"):
        OpenFHEBackend(CKKSParams(bootstrap_iterations=3))


def test_thread_count_can_be_set():
    assert set_openmp_threads(2) is True


# ------------------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_refreshes_to_params_levels(bootstrapping):
    backend, client, ev = bootstrapping
    caps = backend.capabilities()
    assert caps.bootstrapping and caps.level_after_bootstrap == 3 == caps.max_level
    x = np.random.default_rng(1).uniform(-1, 1, caps.slots)
    for start in (0, 2):
        ct = ev.level_reduce(ev.multiply_scalar(client.encrypt(x), 1.0), start)  # a product, as in programs
        out = ev.bootstrap(ct)
        assert ev.level(out) == 3
        bits = -math.log2(np.max(np.abs(client.decrypt(out) - x)))
        assert bits > 12, bits
    # the refreshed ciphertext (rescale pending) supports the whole level budget again
    y = ev.add_plain(ev.multiply(out, out), x)
    z = ev.multiply_scalar(ev.multiply_scalar(y, 0.5), 2.0)
    assert ev.level(z) == 0
    np.testing.assert_allclose(client.decrypt(z), x * x + x, atol=2.0**-10)
    assert ev.counter.counts[("bootstrap", 3)] == 2


def test_bootstrap_real_removes_the_imaginary_noise_a_polynomial_turns_into_error(bootstrapping):
    backend, client, ev = bootstrapping
    x = np.random.default_rng(1).uniform(-0.9, 0.9, backend.capabilities().slots)
    ct = ev.level_reduce(ev.multiply_scalar(client.encrypt(x), 1.0), 0)
    plain, real = ev.bootstrap(ct), ev.bootstrap_real(ct)
    assert ev.level(real) == ev.level(plain) == 3
    doubled = client.decrypt(real)
    assert -math.log2(np.max(np.abs(doubled / 2 - x))) > 12  # twice the value, same precision
    # a series after the plain bootstrap errs (its imaginary noise), after bootstrap_real it does not
    coeffs = C.chebinterpolate(lambda t: np.maximum(t, 0.0), 7)
    err_plain = np.max(np.abs(client.decrypt(ev.chebyshev(plain, coeffs)) - C.chebval(client.decrypt(plain), coeffs)))
    out = ev.chebyshev(real, coeffs, doubled=True)
    assert ev.level(out) == 0
    err_real = np.max(np.abs(client.decrypt(out) - C.chebval(doubled / 2, coeffs)))
    assert err_real < 1e-10 and err_plain > 10 * err_real, (err_plain, err_real)


def _bootstrap_error_of_constant(client, ev, c: float, slots: int) -> np.ndarray:
    """Per-slot error of ``bootstrap_real`` (halved) on a constant vector ``c`` bootstrapped from level 0."""
    ct = ev.level_reduce(ev.multiply_scalar(client.encrypt(np.full(slots, c)), 1.0), 0)
    return client.decrypt(ev.bootstrap_real(ct)) / 2 - c


def test_bootstrap_errs_on_the_slots_mean_by_the_sine_approximations_cubic(bootstrapping):
    backend, client, ev = bootstrapping
    caps = backend.capabilities()
    k = caps.bootstrap_cubic
    assert k == pytest.approx(bootstrap_cubic_error(backend.params)) and k > 0
    for c in (0.5, 0.9):  # constant vectors: all of the message is the constant coefficient
        err = _bootstrap_error_of_constant(client, ev, c, caps.slots)
        assert err.mean() == pytest.approx(-k * c**3, rel=0.05)
        assert np.std(err) < 0.1 * k * c**3  # common to every slot


def test_the_bootstrap_mean_error_does_not_depend_on_the_scale_and_first_modulus(bootstrapping):
    """A 55-bit scale under a 60-bit first modulus (the 8-level configuration's gap) errs on the mean as
    59/60 does: OpenFHE compensates the gap, so the model's k must not scale with it."""
    params = replace(bootstrapping[0].params, scale_bits=55, first_mod_bits=60)
    backend = OpenFHEBackend(params)
    client, ev = backend.keygen(KeyRequest(rotations=frozenset(), bootstrap=True))
    k = backend.capabilities().bootstrap_cubic
    assert k == pytest.approx(bootstrapping[0].capabilities().bootstrap_cubic)
    c = 0.9  # the 55-bit scale's random error is ~10x the 59-bit one's: the largest mean measures k best
    err = _bootstrap_error_of_constant(client, ev, c, params.slots)
    assert err.mean() == pytest.approx(-k * c**3, rel=0.05)
    assert np.std(err) < 0.3 * k * c**3


def test_two_iteration_bootstrap_is_more_precise():
    params = CKKSParams(ring_dimension=N, levels=2, level_budget=(1, 1), slots=8, insecure=True,
                        bootstrap_iterations=2)
    backend = OpenFHEBackend(params)
    assert backend.context_info()["depth"] == 2 + backend.bootstrap_depth() + 2
    client, ev = backend.keygen(KeyRequest(bootstrap=True))
    x = np.linspace(-0.9, 0.9, 8)
    out = ev.bootstrap(client.encrypt(x, 0))
    assert ev.level(out) == 2
    assert -math.log2(np.max(np.abs(client.decrypt(out) - x))) > 30


def test_bootstrap_needs_keys_and_configuration(leveled):
    params = CKKSParams(ring_dimension=N, levels=2, level_budget=(1, 1), slots=8, insecure=True)
    client, ev = OpenFHEBackend(params).keygen(KeyRequest())
    with pytest.raises(CapabilityError, match="no bootstrap keys"):
        ev.bootstrap(client.encrypt(np.ones(2), 0))
    backend = leveled[0]
    with pytest.raises(CapabilityError, match="ckks.bootstrap = false"):
        backend.keygen(KeyRequest(bootstrap=True))


# ------------------------------------------------------------------------------------------------ costs
def test_measure_cost_table_covers_every_op_kind():
    backend = OpenFHEBackend(CKKSParams(ring_dimension=2048, levels=3, level_budget=(1, 1), slots=16,
                                        insecure=True))
    table = measure_cost_table(backend, repeats=1, progress=False, chebyshev_degrees=(3,))
    for kind in ("add", "add_plain", "add_scalar", "rotate", "rotate_hoisted", "hoist_precompute", "encode"):
        assert sorted(table.ops[kind]) == [0, 1, 2, 3], kind
    for kind in ("multiply", "multiply_plain", "multiply_scalar", "level_reduce"):
        assert sorted(table.ops[kind]) == [1, 2, 3], kind
    assert all(v > 0 for kind, t in table.ops.items() for v in t.values() if kind != "hoist_precompute")
    assert sorted(table.ops["chebyshev_3"]) == [2, 3]  # top level and the lowest that fits
    # 16 of 1024 slots: a sparse bootstrap, kept apart from full-packing costs
    assert table.bootstrap == {} and list(table.sparse_bootstrap) == [16]
    assert list(table.sparse_bootstrap[16]) == [3] and table.sparse_bootstrap[16][3] > 0
    assert table.params["bootstrap_precision_bits"]["3"] > 12
    assert table.params["context"]["reserved_levels"] == 1
    again = CostTable.from_dict(table.to_dict())
    assert again.ops == table.ops and again.sparse_bootstrap == table.sparse_bootstrap


def test_merge_cost_tables_keeps_first_ops_and_unions_bootstrap():
    a = CostTable("openfhe", 4096, {"multiply": {1: 1.0, 2: 2.0}}, {3: 10.0}, created="2026-01-01")
    b = CostTable("openfhe", 4096, {"multiply": {2: 9.0, 3: 3.0}, "rotate": {1: 0.5}}, {5: 20.0},
                  created="2026-01-02")
    m = merge_cost_tables([a, b])
    assert m.ops == {"multiply": {1: 1.0, 2: 2.0, 3: 3.0}, "rotate": {1: 0.5}}
    assert m.bootstrap == {3: 10.0, 5: 20.0} and m.params["merged_from"] == 2
    c = CostTable("openfhe", 4096, {}, sparse_bootstrap={256: {3: 6.0}})
    d = CostTable("openfhe", 4096, {}, sparse_bootstrap={256: {5: 12.0}, 64: {3: 5.0}})
    assert merge_cost_tables([a, c, d]).sparse_bootstrap == {256: {3: 6.0, 5: 12.0}, 64: {3: 5.0}}
    with pytest.raises(Exception, match="cannot merge"):
        merge_cost_tables([a, CostTable("openfhe", 8192, {})])


@pytest.mark.parametrize("ring_dimension", [65536, 8192, 4096])
def test_shipped_cost_tables_load(ring_dimension):
    table = load_cost_table("openfhe", ring_dimension)
    assert table.backend == "openfhe" and table.ring_dimension == ring_dimension
    assert table.cost("multiply", 2) > table.cost("add", 2) > 0
    assert table.cost("rotate", 1) > 0
    assert len(table.bootstrap) >= 2 and min(table.bootstrap.values()) > 0.1
    if ring_dimension == 65536:  # measured at 128-bit with [3, 3] bootstrapping to levels 3..6
        assert {3, 4, 5, 6} <= set(table.bootstrap) and min(table.bootstrap.values()) > 1.0
        assert all(c["params"]["context"]["security_bits"] == 128 for c in table.params["configs"])
