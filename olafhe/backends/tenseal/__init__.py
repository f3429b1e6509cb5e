"""The ``tenseal`` backend: CKKS through the SEAL bindings that ship inside TenSEAL 0.3.16.

TenSEAL's high-level ``CKKSVector`` has no general rotation and hides levels and scales, so this backend
is built on ``tenseal.sealapi`` (SEAL's own objects: ``SEALContext``, ``CKKSEncoder``, ``KeyGenerator``,
``Evaluator.rotate_vector``, ``rescale_to_next``, ``mod_switch_to`` ...), which gives the whole contract.

Parameters and security
    The coefficient modulus is ``[first_mod_bits] + [scale_bits] * levels + [first_mod_bits]`` (the
    last prime is SEAL's special key-switching prime). Its total must fit the HE-standard 128-bit table
    (:func:`~olafhe.core.contract.backend.check_security`) unless ``ckks.insecure`` is set. SEAL enforces the
    same table up to N = 32768 but has no entry for N = 65536, so the context is created with SEAL's own
    check (``TC128``) where SEAL has one and with ``NONE`` after our check passed otherwise (or on an
    explicit opt-out). With 60-bit outer primes and 40-bit scale primes, N = 16384 holds 7 levels
    (400 of 438 bits) and N = 32768 holds 19 levels (880 of 881 bits).

Levels
    ``level`` is SEAL's chain index of the ciphertext: a fresh ciphertext has ``levels`` scale primes
    above the first prime; every product rescales by one of them.

Scales (the hard part of CKKS in SEAL)
    SEAL rescales by the actual prime ``q_l`` (close to, but not equal to, ``2**scale_bits``), so after
    a product the scale is ``s**2 / q_l`` and additions need equal scales. Instead of forcing scales to
    the nominal value (a relative error of about ``|1 - 2**scale_bits / q_l|`` ~ 1e-6 per product that
    compounds), every level ``l`` has one *canonical* scale (OpenFHE's FLEXIBLEAUTO idea)::

        S_levels = 2**scale_bits (lowered by ppm if needed),     S_{l-1} = S_l**2 / q_l

    and every ciphertext at level ``l`` carries exactly ``S_l``. Then a ciphertext product of two level-l
    ciphertexts lands on ``S_{l-1}`` by itself; a plaintext or constant multiplying a level-l ciphertext is
    encoded at scale ``S_l`` (``S_l * S_l / q_l = S_{l-1}``); and a ciphertext that must move down to a
    lower level ``t`` (additions of operands at different levels,
    :meth:`~olafhe.backends.tenseal.ops.TenSEALEvaluator.level_reduce`) is mod switched to ``t + 1`` and
    multiplied by the constant 1 encoded at ``S_t * q_{t+1} / S_l`` before the rescale. Scales are therefore
    exact up to double rounding (relative 1e-16) and the only extra error is the usual rescale rounding. The
    scale primes are chosen by :func:`~olafhe.backends.tenseal.common.choose_scale_primes` (nearest prime =
    1 mod 2N to the current canonical scale, product kept below the nominal bit count), so ``S_l`` stays
    within ~1e-5 of ``2**scale_bits`` at every level even for 19 levels at N = 32768 (SEAL's default primes
    would let it grow 5x).

Rotations
    Galois keys are generated for exactly the requested rotation amounts (reduced modulo the slot
    count); a rotation without its key raises :class:`~olafhe.core.errors.CapabilityError` naming the
    step and the keys present (SEAL would otherwise try to compose it or fail obscurely).
    ``rotate_hoisted`` is a loop: the SEAL bindings expose no hoisted key switching. One Galois key
    holds ``levels + 1`` key-switching components over ``levels + 2`` primes: ~19 MB and 0.07 s at
    N = 16384 with 7 levels, ~220 MB and 1.8 s at N = 32768 with 19 levels.

Precision (measured max error on values in [-1, 1]; N = 16384, 40-bit scale)
    fresh symmetric encryption 2**-30, product 2**-26, rotation 2**-19 (SEAL's key switching has one special
    prime and one digit per prime, so the 60-bit first prime adds ~2**21 absolute at every key switch; the
    rescale after a product divides that away, a rotation keeps it). A 50-bit scale gives 2**-30 after a
    rotation but only 6 levels at N = 16384. See
    :func:`~olafhe.backends.tenseal.common.estimated_precision_bits`.

Slots
    SEAL always packs ``N/2`` slots. A smaller ``ckks.slots = n`` is honoured by replicating the
    ``n``-vector ``N/(2n)`` times: rotating the periodic full vector is then exactly a cyclic rotation
    of the ``n``-vector, and decryption reads the first ``n`` slots.

Polynomials
    :meth:`~olafhe.backends.tenseal.ops.TenSEALEvaluator.chebyshev` evaluates ``sum_k c_k T_k`` (numpy
    convention) by :class:`~olafhe.core.poly.chebyshev.ChebyshevProgram`: Chebyshev division
    ``p = T_m q + r`` at giant steps ``m = 2**j``, leaf polynomials as linear combinations of baby steps ``T_1..T_k``
    whose constant products land exactly on the output level, powers from ``T_2k = 2 T_k**2 - 1`` and
    ``T_{m+n} = 2 T_m T_n - T_{m-n}``. It consumes exactly ``ceil(log2(d + 1))`` levels with close to
    Paterson-Stockmeyer's number of products (27 for degree 127); the same code run on level numbers gives
    :func:`~olafhe.core.poly.chebyshev.chebyshev_schedule`.

Zero results
    SEAL refuses to produce an exactly-zero ("transparent") ciphertext (``a - a``, a product with an
    all-zero plaintext); the evaluator returns a fresh public-key encryption of zero instead.

Not supported: bootstrapping (SEAL has none), multithreading (SEAL's evaluator is single-threaded, so
``ckks.threads`` is ignored). N = 65536 works (our 128-bit check; SEAL's table stops at 32768) but
SEAL's context set-up alone takes 10-25 s there with 40 levels.
"""
