"""Bootstrap error against input magnitude on OpenFHE, per (scale, first modulus), at a small insecure ring.

The evidence for ``olafhe.core.planning.safety.MEASURED_BOOTSTRAP_INPUT_RANGE``: uniform inputs in
[-amp, amp] are reduced to level 0, bootstrapped and decrypted; max and RMS errors are printed in bits.
Then the systematic part (``olafhe.core.contract.ckks.bootstrap_cubic_error``): inputs of mean m (+-0.05)
are bootstrapped and ``k = -(mean error) / m^3`` is printed per m.
Usage: ``python scripts/bootstrap_range.py [RING_DIMENSION [SCALE FIRST LEVELS ...]]`` (default 4096 and the
configurations 59 60 6, 50 58 9; a few minutes at 4096, ~4 minutes per configuration at 65536).
"""

from __future__ import annotations

import sys

import numpy as np

from olafhe.backends.openfhe.backend import OpenFHEBackend
from olafhe.core.contract.backend import KeyRequest
from olafhe.core.contract.ckks import CKKSParams

AMPLITUDES = (0.5, 1.0, 1.5, 2.0, 4.0, 8.0, 16.0, 32.0)
MEANS = (0.1, 0.3, 0.6)


def bits(err: float) -> float:
    return float(-np.log2(err + 1e-30))


def measure(n: int, scale: int, first: int, levels: int) -> None:
    params = CKKSParams(ring_dimension=n, scale_bits=scale, first_mod_bits=first, levels=levels, level_budget=(3, 3),
                        secret_key_dist="SPARSE_ENCAPSULATED", slots=n // 4, insecure=True)
    client, server = OpenFHEBackend(params).keygen(KeyRequest(rotations=frozenset(), bootstrap=True))
    rng = np.random.default_rng(0)

    def bootstrapped(x: np.ndarray) -> np.ndarray:
        return client.decrypt(server.bootstrap(server.level_reduce(client.encrypt(x), 0)), n // 4)

    for amp in AMPLITUDES:
        x = rng.uniform(-amp, amp, n // 4)
        try:
            y = bootstrapped(x)
        except Exception as exc:  # noqa: BLE001 - report and go on to the next amplitude
            print(f"scale {scale} first {first} amp {amp:5.1f}: FAILED {exc}", flush=True)
            continue
        err = np.abs(y - x)
        rms = float(np.sqrt(np.mean(err**2)))
        print(f"scale {scale} first {first} amp {amp:5.1f}: max err {err.max():.2e} ({bits(err.max()):.1f} bits) "
              f"rms {rms:.2e} ({bits(rms):.1f} bits)", flush=True)
    for mean in MEANS:
        x = mean + rng.uniform(-0.05, 0.05, n // 4)
        shift = float(np.mean(bootstrapped(x) - x))
        print(f"scale {scale} first {first} mean {mean:.1f}: mean error {shift:+.3e}, k = {-shift / mean**3:.3e}",
              flush=True)


if __name__ == "__main__":
    ring = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    numbers = [int(a) for a in sys.argv[2:]] or [59, 60, 6, 50, 58, 9]
    for i in range(0, len(numbers) - 2, 3):
        measure(ring, *numbers[i:i + 3])
