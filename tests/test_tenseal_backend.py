"""Tests of the ``tenseal`` CKKS backend (SEAL through tenseal.sealapi) against numpy oracles.

Tolerances come from the 40-bit scale of the CI configuration (N = 16384, 7 levels, 128-bit) and the
errors this backend measures there: fresh symmetric encryption ~2**-30, a product with rescale
~2**-26, a rotation ~2**-19 (SEAL's key switching adds ~2**21 absolute at scale 2**40). ``TOL`` and
``ROT_TOL`` leave 4-6 bits of margin over those; a wrong scale or a missed rescale is off by far more.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import pytest
from numpy.polynomial import chebyshev as C

tenseal = pytest.importorskip("tenseal")
sealapi = pytest.importorskip("tenseal.sealapi")

from olafhe.backends.simulator import SimulatorBackend  # noqa: E402
from olafhe.backends.tenseal.backend import TenSEALBackend  # noqa: E402
from olafhe.backends.tenseal.common import (  # noqa: E402
    TenSEALCiphertext,
    TenSEALPlaintext,
    choose_scale_primes,
    default_params,
)
from olafhe.core.contract.backend import KeyRequest  # noqa: E402
from olafhe.core.contract.ckks import CKKSParams  # noqa: E402
from olafhe.core.errors import (  # noqa: E402
    CapabilityError,
    ConfigError,
    OutOfLevelsError,
    SecurityError,
    ShapeError,
)
from olafhe.core.poly.chebyshev import (  # noqa: E402
    ChebyshevProgram,
    chebyshev_baby_steps,
    chebyshev_depth,
    chebyshev_schedule,
)

TOL = 2.0**-20  # ~1e-6: products, additions, plaintext and constant ops (measured <= 2**-25)
ROT_TOL = 2.0**-15  # ~3e-5: anything that went through a rotation (measured <= 2**-18.5)
ROTATIONS = frozenset({1, -1, 5, 300})


@pytest.fixture(scope="module")
def keys() -> tuple[Any, Any]:
    backend = TenSEALBackend(default_params())
    return backend.keygen(KeyRequest(rotations=ROTATIONS))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    return rng.uniform(-1, 1, 8192), rng.uniform(-1, 1, 8192)


def maxerr(client: Any, ct: Any, expected: np.ndarray) -> float:
    return float(np.max(np.abs(client.decrypt(ct, len(expected)) - expected)))


# --------------------------------------------------------------------------- registry and capabilities
def test_registry_lookup() -> None:
    from olafhe.core.contract.registry import registry

    assert registry().get("backends", "tenseal") is TenSEALBackend


def test_capabilities_default_config() -> None:
    backend = TenSEALBackend()
    caps = backend.capabilities()
    assert (caps.backend, caps.ring_dimension, caps.slots, caps.max_level) == ("tenseal", 16384, 8192, 7)
    assert caps.bootstrapping is False and caps.level_after_bootstrap is None
    assert caps.security_bits == 128
    assert backend.total_modulus_bits() == 60 + 7 * 40 + 60 <= 438
    assert 17 <= caps.precision_bits <= 21  # rotation-limited, measured 18.7 bits
    assert "no bootstrapping" in caps.describe()


def test_levels_that_fit_128_bit() -> None:
    # 60-bit first and special primes, 40-bit scale: 7 levels at N=16384 and 19 at N=32768 are the maximum.
    for n, levels in ((16384, 7), (32768, 19)):
        ok = CKKSParams(ring_dimension=n, scale_bits=40, first_mod_bits=60, levels=levels, bootstrap=False)
        assert TenSEALBackend(ok).capabilities().security_bits == 128
        with pytest.raises(SecurityError):
            TenSEALBackend(ok.with_(levels=levels + 1)).capabilities()


def _canonical_scales(scale_bits: int, top: float, primes: list[int]) -> list[float]:
    scales = [top]
    for q in reversed(primes):  # q_levels is dropped first
        scales.append(scales[-1] ** 2 / q)
    return scales


@pytest.mark.parametrize("n, scale_bits, levels", [(16384, 40, 7), (32768, 40, 19), (32768, 50, 15)])
def test_scale_primes_keep_every_level_near_the_nominal_scale(n: int, scale_bits: int, levels: int) -> None:
    primes, top = choose_scale_primes(n, scale_bits, levels)
    assert len(set(primes)) == levels and all(q % (2 * n) == 1 for q in primes)
    assert all(sealapi.Modulus(q).is_prime() for q in primes)
    assert math.prod(primes) < 2 ** (scale_bits * levels)  # never more bits than the security check counted
    drift = max(abs(s / 2.0**scale_bits - 1) for s in _canonical_scales(scale_bits, top, primes))
    assert drift < 1e-4
    # SEAL's default primes (all just below 2**scale_bits) make the deviation double every level
    default = [m.value() for m in sealapi.CoeffModulus.Create(n, [scale_bits] * levels)]
    default_drift = max(abs(s / 2.0**scale_bits - 1) for s in _canonical_scales(scale_bits, 2.0**scale_bits, default))
    assert default_drift > 100 * drift


# --------------------------------------------------------------------------- per-op oracles
def test_encrypt_decrypt_roundtrip(keys: Any, data: Any) -> None:
    client, ev = keys
    x, _ = data
    ct = client.encrypt(x)
    assert isinstance(ct, TenSEALCiphertext) and ev.level(ct) == 7
    assert maxerr(client, ct, x) < TOL
    short = client.encrypt(np.array([0.5, -0.25, 0.125]), level=3)
    assert ev.level(short) == 3
    out = client.decrypt(short)
    assert out.shape == (8192,)
    np.testing.assert_allclose(out[:3], [0.5, -0.25, 0.125], atol=TOL)
    assert np.max(np.abs(out[3:])) < TOL  # zero padding


def test_additions(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    a, b = client.encrypt(x), client.encrypt(y)
    assert maxerr(client, ev.add(a, b), x + y) < TOL
    assert maxerr(client, ev.sub(a, b), x - y) < TOL
    assert maxerr(client, ev.add_plain(a, y), x + y) < TOL
    assert maxerr(client, ev.add_scalar(a, -3.25), x - 3.25) < TOL
    assert all(ev.level(c) == 7 for c in (ev.add(a, b), ev.add_plain(a, y), ev.add_scalar(a, 1.0)))


def test_products(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    a, b = client.encrypt(x), client.encrypt(y)
    prod = ev.multiply(a, b)
    assert ev.level(prod) == 6 and maxerr(client, prod, x * y) < TOL
    sq = ev.multiply(a, a)
    assert ev.level(sq) == 6 and maxerr(client, sq, x * x) < TOL
    mp = ev.multiply_plain(a, y)
    assert ev.level(mp) == 6 and maxerr(client, mp, x * y) < TOL
    ms = ev.multiply_scalar(a, -2.75)
    assert ev.level(ms) == 6 and maxerr(client, ms, -2.75 * x) < TOL
    # The canonical per-level scales make products of products exact (no scale drift error).
    deep = ev.multiply(prod, sq)
    assert ev.level(deep) == 5 and maxerr(client, deep, x**3 * y) < TOL


def test_operands_at_different_levels(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    a = client.encrypt(x)
    b = ev.multiply_scalar(ev.multiply_scalar(client.encrypt(y), 1.5), 2.0)  # level 5, value 3y
    ev.counter.reset()
    s = ev.add(a, b)
    assert ev.level(s) == 5 and maxerr(client, s, x + 3 * y) < TOL
    assert ev.counter.counts[("level_reduce", 6)] == 1 and ev.counter.counts[("add", 5)] == 1
    p = ev.multiply(b, a)
    assert ev.level(p) == 4 and maxerr(client, p, 3 * x * y) < TOL


def test_rotations(keys: Any, data: Any) -> None:
    client, ev = keys
    x, _ = data
    a = client.encrypt(x)
    for step in (1, -1, 5, 300, 8192 + 5):
        r = ev.rotate(a, step)
        assert ev.level(r) == 7
        assert maxerr(client, r, np.roll(x, -step)) < ROT_TOL, step
    assert ev.rotate(a, 0) is a and ev.rotate(a, 8192) is a
    hoisted = ev.rotate_hoisted(a, [1, 5, 0])
    assert set(hoisted) == {1, 5, 0}
    for step, ct in hoisted.items():
        assert maxerr(client, ct, np.roll(x, -step)) < ROT_TOL


def test_rotation_without_key_is_a_clear_error(keys: Any, data: Any) -> None:
    client, ev = keys
    a = client.encrypt(data[0])
    with pytest.raises(CapabilityError, match=r"rotation by 2 .*KeyRequest.rotations"):
        ev.rotate(a, 2)
    with pytest.raises(CapabilityError, match="rotation by 7"):
        ev.rotate_hoisted(a, [1, 7])
    assert ev.rotations == frozenset({1, 8191, 5, 300})  # exactly the requested ones, reduced mod slots


def test_level_reduce(keys: Any, data: Any) -> None:
    client, ev = keys
    x, _ = data
    a = client.encrypt(x)
    assert ev.level_reduce(a, 7) is a
    low = ev.level_reduce(a, 2)
    assert ev.level(low) == 2 and maxerr(client, low, x) < TOL
    with pytest.raises(CapabilityError, match="cannot raise"):
        ev.level_reduce(low, 3)


def test_pre_encoded_plaintexts(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    a = client.encrypt(x)
    pt = ev.encode(y, level=7)
    assert isinstance(pt, TenSEALPlaintext)
    ev.counter.reset()
    assert maxerr(client, ev.multiply_plain(a, pt), x * y) < TOL
    assert maxerr(client, ev.add_plain(a, pt), x + y) < TOL
    assert ev.counter.total("encode") == 0  # reused, not re-encoded
    low = ev.level_reduce(a, 4)  # another level: re-encoded from the stored values, still exact
    assert maxerr(client, ev.multiply_plain(low, pt), x * y) < TOL
    assert ev.counter.counts[("encode", 4)] == 1


def test_multiply_plain_sum_rescales_once(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    a = client.encrypt(x)
    b = ev.multiply_scalar(client.encrypt(y), 1.0)  # level 6: aligned down to it
    w = [np.cos(np.arange(8192)), ev.encode(np.full(8192, -0.5), level=6), np.zeros(8192)]
    ev.counter.reset()
    out = ev.multiply_plain_sum([a, b, a], w)
    assert ev.level(out) == 5
    assert maxerr(client, out, np.cos(np.arange(8192)) * x - 0.5 * y) < TOL
    assert ev.counter.counts[("multiply_plain", 6)] == 3 and ev.counter.counts[("level_reduce", 7)] == 2
    zero = ev.multiply_plain_sum([a], [np.zeros(3)])
    assert ev.level(zero) == 6 and maxerr(client, zero, np.zeros(8192)) < TOL
    with pytest.raises(ShapeError, match="as many plaintexts"):
        ev.multiply_plain_sum([a, a], [x])


def test_exact_zero_results_are_encryptions_of_zero(keys: Any, data: Any) -> None:
    client, ev = keys
    a = client.encrypt(data[0])
    # SEAL refuses "transparent" (exactly zero) results; the backend returns a fresh encryption of 0.
    assert maxerr(client, ev.sub(a, a), np.zeros(8192)) < TOL
    z = ev.multiply_plain(a, np.zeros(4))
    assert ev.level(z) == 6 and maxerr(client, z, np.zeros(8192)) < TOL
    assert maxerr(client, ev.multiply_scalar(a, 0.0), np.zeros(8192)) < TOL


def test_bad_plain_vectors_raise_the_same_errors_as_the_simulator(keys: Any, bad_plain_vectors: Any) -> None:
    client, ev = keys
    sim_client, sim_ev = SimulatorBackend(default_params()).keygen(KeyRequest(rotations=ROTATIONS))
    ct, sim_ct = client.encrypt(np.zeros(4)), sim_client.encrypt(np.zeros(4))
    for values, error, message in bad_plain_vectors(ev.capabilities.slots):
        for call in (client.encrypt, partial(ev.add_plain, ct), partial(ev.multiply_plain, ct), ev.encode,
                     sim_client.encrypt, partial(sim_ev.add_plain, sim_ct), partial(sim_ev.multiply_plain, sim_ct)):
            with pytest.raises(error, match=message):
                call(values)


def test_input_validation(keys: Any) -> None:
    client, ev = keys
    with pytest.raises(ShapeError, match="do not fit in 8192 slots"):
        client.encrypt(np.zeros(8193))
    with pytest.raises(ShapeError, match="1-D"):
        client.encrypt(np.zeros((2, 2)))
    with pytest.raises(CapabilityError, match="outside 0..7"):
        client.encrypt(np.zeros(2), level=8)
    a = client.encrypt(np.zeros(2))
    with pytest.raises(ShapeError):
        ev.add_plain(a, np.zeros(9000))
    with pytest.raises(CapabilityError, match="cannot operate on"):
        ev.add(a, np.zeros(2))
    # at level 0 only the 60-bit first prime is left: 2**20 of headroom above the 40-bit scale
    with pytest.raises(CapabilityError, match="cannot encode values up to 1e\\+30"):
        ev.add_scalar(client.encrypt(np.zeros(2), level=0), 1e30)


def test_ciphertexts_of_another_key_set_are_refused(keys: Any) -> None:
    _, ev = keys
    other_client, _ = TenSEALBackend().keygen(KeyRequest())
    with pytest.raises(CapabilityError, match="another tenseal key set"):
        ev.add_scalar(other_client.encrypt(np.ones(2)), 1.0)


# --------------------------------------------------------------------------- level bookkeeping
def test_level_bookkeeping_of_a_hand_computed_program(keys: Any, data: Any) -> None:
    client, ev = keys
    x, y = data
    ev.counter.reset()
    cx = client.encrypt(x)  # level 7
    sq = ev.multiply(cx, cx)  # 6
    cube = ev.multiply(sq, cx)  # cx brought to 6 first, product at 5
    w = ev.multiply_plain(cube, y)  # 4
    u = ev.add(w, cx)  # 4 (cx reduced 7 -> 4)
    v = ev.rotate(u, 1)  # 4
    s = ev.multiply_scalar(v, 0.5)  # 3
    t = ev.add_scalar(s, 1.0)  # 3
    r = ev.level_reduce(t, 1)  # 1
    q = ev.multiply(r, r)  # 0
    expected_levels = [7, 6, 5, 4, 4, 4, 3, 3, 1, 0]
    assert [ev.level(c) for c in (cx, sq, cube, w, u, v, s, t, r, q)] == expected_levels
    expected = (np.roll(x**3 * y + x, -1) * 0.5 + 1.0) ** 2
    assert maxerr(client, q, expected) < 4 * ROT_TOL  # rotation error (~2**-19) doubled by squaring
    counts = ev.counter.counts
    assert counts[("multiply", 7)] == 1 and counts[("multiply", 6)] == 1 and counts[("multiply", 1)] == 1
    assert counts[("multiply_plain", 5)] == 1 and counts[("rotate", 4)] == 1
    assert counts[("multiply_scalar", 4)] == 1 and counts[("add_scalar", 3)] == 1
    assert counts[("level_reduce", 7)] == 1  # the implicit alignment of cx for the cube
    assert counts[("level_reduce", 5)] == 1  # cx 7 -> 4 for the add (recorded at target + 1)
    assert counts[("level_reduce", 3)] == 1  # explicit, recorded at the input level
    assert all(sec >= 0 for sec in ev.counter.seconds.values())
    for op in (lambda: ev.multiply(q, q), lambda: ev.multiply_plain(q, y), lambda: ev.multiply_scalar(q, 2.0)):
        with pytest.raises(OutOfLevelsError, match="has 0 left"):
            op()
    assert ev.level(ev.add(q, q)) == 0  # additions still run at level 0


# --------------------------------------------------------------------------- Chebyshev
@pytest.mark.parametrize("degree", [3, 7, 15])
def test_chebyshev_relu_fit(keys: Any, degree: int) -> None:
    client, ev = keys
    t = np.linspace(-1, 1, 8192)
    coeffs = C.chebfit(t, np.maximum(t, 0.0), degree)
    ct = client.encrypt(t, level=6)
    ev.counter.reset()
    out = ev.chebyshev(ct, coeffs)
    depth = math.ceil(math.log2(degree + 1))
    assert ev.chebyshev_depth(degree) == depth
    assert ev.level(out) == 6 - depth
    assert maxerr(client, out, C.chebval(t, coeffs)) < 1e-3
    assert maxerr(client, out, C.chebval(t, coeffs)) < 1e3 * TOL  # in fact at CKKS noise level
    # the real run does no more ciphertext products than the schedule (fits may skip zero terms)
    assert ev.counter.total("multiply") <= chebyshev_schedule(degree)[1]


def test_chebyshev_with_exactly_enough_levels_and_too_few(keys: Any) -> None:
    client, ev = keys
    t = np.linspace(-1, 1, 8192)
    coeffs = C.chebfit(t, np.tanh(3 * t), 15)
    out = ev.chebyshev(client.encrypt(t, level=4), coeffs)
    assert ev.level(out) == 0
    assert maxerr(client, out, C.chebval(t, coeffs)) < 1e-5
    with pytest.raises(OutOfLevelsError, match="chebyshev needs 4 level"):
        ev.chebyshev(client.encrypt(t, level=3), coeffs)


def test_chebyshev_low_degrees_and_sparse_series(keys: Any) -> None:
    client, ev = keys
    t = np.linspace(-1, 1, 8192)
    ct = client.encrypt(t, level=5)
    const = ev.chebyshev(ct, np.array([0.75]))  # degree 0: no level, a ciphertext of the constant
    assert ev.level(const) == 5 and maxerr(client, const, np.full(8192, 0.75)) < TOL
    lin = ev.chebyshev(ct, np.array([0.5, -2.0]))
    assert ev.level(lin) == 4 and maxerr(client, lin, 0.5 - 2.0 * t) < TOL
    # only the top term: depth is still that of the nominal degree
    sparse = np.zeros(8)
    sparse[7] = 1.0
    out = ev.chebyshev(ct, sparse)
    assert ev.level(out) == 2 and maxerr(client, out, C.chebval(t, sparse)) < TOL
    # trailing zeros: the depth follows the length of the coefficient vector, as the plan predicts
    padded = np.array([0.1, 0.2, 0.0, 0.0])
    out = ev.chebyshev(ct, padded)
    assert ev.level(out) == 3 and maxerr(client, out, 0.1 + 0.2 * t) < TOL


def test_chebyshev_depth_is_measured_on_the_schedule() -> None:
    for degree in range(0, 257):
        depth, products, scalars = chebyshev_schedule(degree)
        assert depth == (math.ceil(math.log2(degree + 1)) if degree else 0), degree
        assert chebyshev_depth(degree) == depth
        assert products <= degree and scalars <= 2 * degree + 1
    assert TenSEALBackend().chebyshev_depth(31) == 5
    # baby steps keep the product count near Paterson-Stockmeyer's (OpenFHE: 26 for degree 127)
    assert chebyshev_schedule(127)[1] <= 30 and chebyshev_baby_steps(127) == 8


class _NumpyOps:
    """Float arrays with levels: checks the Chebyshev algebra and level rules without encryption."""

    negligible = 0.0

    def level(self, a: tuple[np.ndarray, int]) -> int:
        return a[1]

    def multiply(self, a: Any, b: Any) -> Any:
        assert min(a[1], b[1]) >= 1
        return a[0] * b[0], min(a[1], b[1]) - 1

    def add(self, a: Any, b: Any) -> Any:
        return a[0] + b[0], min(a[1], b[1])

    def sub(self, a: Any, b: Any) -> Any:
        return a[0] - b[0], min(a[1], b[1])

    def add_scalar(self, a: Any, c: float) -> Any:
        return a[0] + c, a[1]

    def scalar_to(self, a: Any, c: float, level: int) -> Any:
        assert level < a[1]
        return c * a[0], level

    def constant(self, c: float, level: int) -> Any:
        return np.full(5, c), level


@pytest.mark.parametrize("degree", [0, 1, 2, 5, 11, 27, 59, 100, 127])
def test_chebyshev_recursion_matches_numpy(degree: int) -> None:
    rng = np.random.default_rng(degree)
    coeffs = rng.normal(size=degree + 1) / (1 + np.arange(degree + 1))
    t = np.array([-1.0, -0.37, 0.0, 0.61, 1.0])
    depth = math.ceil(math.log2(degree + 1)) if degree else 0
    for baby in (1, 4, chebyshev_baby_steps(degree), None):
        value, level = ChebyshevProgram(_NumpyOps(), (t, 10), baby).evaluate(coeffs)
        assert level == 10 - depth
        np.testing.assert_allclose(value, C.chebval(t, coeffs), atol=1e-11)
        # from 2t (a conjugate-adding bootstrap): Dickson powers, same depth, same values
        value, level = ChebyshevProgram(_NumpyOps(), (2.0 * t, 10), baby, doubled=True).evaluate(coeffs)
        assert level == 10 - depth
        np.testing.assert_allclose(value, C.chebval(t, coeffs), atol=1e-11)


# --------------------------------------------------------------------------- security, keys, capabilities
def test_insecure_parameters_need_an_explicit_opt_in() -> None:
    params = CKKSParams(ring_dimension=8192, scale_bits=40, first_mod_bits=60, levels=4, bootstrap=False)
    with pytest.raises(SecurityError, match="at most 218 modulus bits, these need 280"):
        TenSEALBackend(params).capabilities()
    with pytest.raises(SecurityError):
        TenSEALBackend(params).keygen(KeyRequest())
    opted = TenSEALBackend(params.with_(insecure=True))
    assert opted.capabilities().security_bits == 0
    client, ev = opted.keygen(KeyRequest())
    assert ev.capabilities.security_bits == 0
    x = np.linspace(-1, 1, 4096)
    assert maxerr(client, ev.multiply(client.encrypt(x), client.encrypt(x)), x * x) < TOL


def test_parameters_seal_refuses_give_clear_errors() -> None:
    # 10-bit primes congruent to 1 mod 2N do not exist at N = 8192
    tiny = CKKSParams(ring_dimension=8192, scale_bits=10, first_mod_bits=20, levels=2, bootstrap=False)
    with pytest.raises(ConfigError, match="SEAL cannot build a coefficient modulus"):
        TenSEALBackend(tiny).keygen(KeyRequest())
    with pytest.raises(ConfigError, match="2..60 bits"):
        TenSEALBackend(CKKSParams(ring_dimension=16384, scale_bits=40, first_mod_bits=61, levels=2))
    with pytest.raises(ConfigError, match="must exceed ckks.scale_bits"):
        TenSEALBackend(CKKSParams(ring_dimension=16384, scale_bits=40, first_mod_bits=40, levels=2))


def test_bootstrap_is_a_capability_error(keys: Any) -> None:
    client, ev = keys
    with pytest.raises(CapabilityError, match="'tenseal' cannot bootstrap"):
        ev.bootstrap(client.encrypt(np.ones(2)))
    with pytest.raises(CapabilityError, match="'tenseal' cannot bootstrap"):
        TenSEALBackend().keygen(KeyRequest(bootstrap=True))


def test_multiply_without_relinearization_key() -> None:
    client, ev = TenSEALBackend().keygen(KeyRequest(relinearization=False))
    a = client.encrypt(np.ones(2))
    with pytest.raises(CapabilityError, match="no relinearization key"):
        ev.multiply(a, a)
    assert ev.level(ev.multiply_scalar(a, 2.0)) == 6  # plaintext work needs no evaluation key


def _secret_objects(root: Any) -> list[str]:
    """Paths to secret-key holders reachable through attributes, containers and dataclass fields."""
    secret_types = (sealapi.SecretKey, sealapi.Decryptor, sealapi.KeyGenerator)
    found: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("evaluator", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), np.ndarray)):
            continue
        seen.add(id(obj))
        if isinstance(obj, secret_types) or "secret" in type(obj).__name__.lower():
            found.append(f"{path}: {type(obj).__name__}")
            continue
        children: list[tuple[str, Any]] = []
        if isinstance(obj, dict):
            children += [(f"{path}[{k!r}]", v) for k, v in obj.items()]
            children += [(f"{path}.key({k!r})", k) for k in obj]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        for name in getattr(obj, "__dict__", {}) or {}:
            children.append((f"{path}.{name}", getattr(obj, name)))
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                children.append((f"{path}.{name}", getattr(obj, name)))
        stack.extend(children)
    return found


def test_server_holds_no_secret_key(keys: Any) -> None:
    client, ev = keys
    assert _secret_objects(ev) == []
    # the walk does find the key where it is (the client), so an empty result means something
    assert _secret_objects(client)


# --------------------------------------------------------------------------- the engine on this backend
def test_engine_runs_a_compiled_program_on_tenseal() -> None:
    """A mini ResNet (strided conv, ReLU, conv + skip, ReLU, pool, dense) through the real engine."""
    engine_tests = pytest.importorskip("test_engine", reason="reuses the engine tests' tiny model")
    import torch

    from olafhe.core.compiler.compile import compile_program
    from olafhe.core.compiler.program import ActivationStep, LinearStep
    from olafhe.core.compiler.runtime import encrypted_inference

    # 8 levels at 128-bit: 50-bit first/special primes, 40-bit scale (420 of 438 bits).
    params = CKKSParams(ring_dimension=16384, scale_bits=40, first_mod_bits=50, levels=8, bootstrap=False)
    backend = TenSEALBackend(params)
    slots = backend.capabilities().slots
    graph = engine_tests.tiny_graph()

    def compiled(levels: tuple[int, int]) -> tuple[Any, Any]:
        plan = engine_tests.tiny_plan(degree=3, levels=levels)
        return plan, compile_program(graph, {ly.name: ly for ly in plan.layers}, slots, plan.input_level)

    # place the two degree-3 ReLUs (depth 2) so that the linear steps after them fit exactly
    _, draft = compiled((6, 3))
    kinds = ["act" if isinstance(st, ActivationStep) else "lin" for st in draft.steps
             if isinstance(st, (ActivationStep, LinearStep))]
    first, last = kinds.index("act"), len(kinds) - 1 - kinds[::-1].index("act")
    tail, mid = len(kinds) - 1 - last, last - first - 1
    levels = (2 + mid + 2 + tail, 2 + tail)
    if levels[0] + 1 > params.levels:
        pytest.skip(f"the compiled tiny model needs {levels[0] + 1} levels, the backend has {params.levels}")
    plan, program = compiled(levels)
    client, server = backend.keygen(program.key_request())
    x = engine_tests.images(1)
    exact = graph.forward(x.double(), {n: (lambda f: lambda v: torch.from_numpy(f(v.numpy())))(a)
                                       for n, a in plan.approximations().items()}).numpy()
    logits, report = encrypted_inference(program, client, server, x[0].numpy())
    np.testing.assert_allclose(logits, exact[0], atol=1e-4)  # measured 5e-6 (rotations dominate)
    acts = [s for s in report.steps if s["kind"] == "activation"]
    assert [(s["level_in"], s["level_out"]) for s in acts] == [(lv, lv - 2) for lv in levels]
    assert report.steps[-1]["level_out"] == 0
    assert _secret_objects(server) == []
