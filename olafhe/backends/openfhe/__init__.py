"""The ``openfhe`` backend: CKKS through openfhe-python (pinned: ``openfhe==1.6.1.0.22.4``).

Design decisions (each measured with the pinned wheel; see the tests and :mod:`olafhe.jobs.measure_costs`):

* **Scaling: FLEXIBLEAUTO.** OpenFHE rescales automatically and lazily (a product keeps a pending
  rescale, ``GetNoiseScaleDeg() == 2``, until the next multiplication), and scale factors per level are
  chosen so that operands at one level always agree; it is also the technique OpenFHE's bootstrapping
  is tuned for. The remaining level is exact:
  ``level = depth - reserve - ct.GetLevel() - (ct.GetNoiseScaleDeg() - 1)``
  (a pending rescale already owns the limb it will drop).
* **Bootstrapping depth.** ``EvalBootstrap`` cannot start from the last limb (``DropLastElement``
  fails), so a bootstrapping context keeps one *reserved* level below level 0:
  ``depth = levels + GetBootstrapDepth(level_budget, key_dist) + 1`` (+1 more for the two-iteration
  bootstrap, whose second pass costs a level). With that, a bootstrap of a level-0 ciphertext returns
  exactly ``params.levels`` -- checked on every call.
* **Chebyshev depth.** ``EvalChebyshevSeries`` (linear below degree 5, Paterson--Stockmeyer above)
  consumes more than ``ceil(log2(d + 1))`` for some degrees (e.g. 7 -> 4, 15 -> 5, 63 -> 7) because
  the final coefficient products take a level (the measured table:
  :func:`~olafhe.backends.openfhe.common.openfhe_chebyshev_depth`).
  :meth:`~olafhe.backends.openfhe.ops.OpenFHEEvaluator.chebyshev` therefore runs the shared depth-optimal
  :class:`~olafhe.core.poly.chebyshev.ChebyshevProgram` (exactly ``ceil(log2(d + 1))``) for the degrees
  where OpenFHE's routine is deeper, and OpenFHE's (up to 15% faster) where it is not: a degree-31
  activation after a convolution then fits the 6 levels after a bootstrap. Measured at N = 2^16 from
  level 6: degree 7 0.29 s (native 0.33 s, a level deeper), 15 0.54 s (0.50 s), 31 0.94 s (0.70 s).
  ``ckks.extra["chebyshev"] = "native"`` or ``"program"`` forces one routine.
* **Level reduction.** ``LevelReduce`` is a no-op under FLEXIBLEAUTO, so ``level_reduce`` completes a
  pending rescale (``Compress``) and adds an all-zero plaintext encoded at the target level: OpenFHE
  then drops limbs with the correct per-level scale factor (no noise, no key). Plaintext operations on
  products rescale explicitly first, because OpenFHE 1.6.1 fails to adjust a product against a
  plaintext at the last limb.
* **Security.** ``HEStd_128_classic`` unless ``insecure=True`` (``HEStd_NotSet``). The total modulus is
  checked against the HE standard before OpenFHE is called (:func:`check_security`), and OpenFHE's own
  check of log(QP) is translated into :class:`SecurityError`. The key-switching digit count is chosen
  as the smallest of OpenFHE's default, 4, 5, 6 that passes (``ckks.extra["num_large_digits"]`` fixes
  it): more digits shrink P, allowing more levels at the price of larger keys. ``SPARSE_TERNARY``
  secrets need the insecure opt-in (the HE standard tables assume uniform ternary secrets).
* **What fits at N = 2^16, 128-bit, on the 24 GB machine** (measured, ``olafhe/costs/openfhe-N65536.json``):
  level budget [3, 3], scale 59, first modulus 60, SPARSE_ENCAPSULATED: 3 levels after bootstrapping
  with OpenFHE's default 3 digits, 4-5 with 4 digits, 6 with 6 digits (``max_secure_levels()``; the
  contract's default ``levels = 9`` is rejected). Bootstrap 10-16 s, ~20 bits RMS (16-17.6 bits max
  error over 2^15 slots), 10-15 GB peak. Budget [2, 2] needs more than 24 GB of keys; scale 50 allows
  9 levels but keeps only ~12 bits RMS.
* **Threads.** OpenFHE uses OpenMP; ``params.threads`` calls ``omp_set_num_threads`` of the loaded
  libgomp (process-wide), otherwise ``OMP_NUM_THREADS`` applies. ``OMP_WAIT_POLICY`` defaults to
  ``PASSIVE`` (see :func:`~olafhe.backends.openfhe.common.load_openfhe`): spinning OpenMP threads made
  bootstraps 20x slower under load.

The evaluator receives only the crypto context, which holds the evaluation keys (OpenFHE stores
relinearization, rotation and bootstrapping keys in process-wide maps keyed by the secret key's tag)
-- never the secret key. Those maps are freed when the last client/evaluator of a key is garbage
collected or ``close()``d (:class:`~olafhe.backends.openfhe.common.KeyTracker`); without that, a second
``keygen`` at N = 2^16 in one process would run out of memory.
"""
