"""Shared pieces of the ``openfhe`` backend: the lazy import, threads, and the release of OpenFHE's
process-wide key maps."""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import Any

from olafhe.core.errors import CapabilityError


def load_openfhe() -> Any:
    """Import openfhe lazily (importing olafhe must not require it).

    Sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before libgomp loads: with OpenMP's default spinning,
    a bootstrap on this 2-core machine ran 20x slower whenever other processes competed for the cores
    (24 s instead of 1.0-1.2 s at N = 2^12); passive waiting keeps 2 threads at the 1-thread speed or better.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import openfhe
    except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
        raise CapabilityError(f"backend 'openfhe' needs the openfhe package (pip install openfhe): {exc}") from exc
    return openfhe


def set_openmp_threads(threads: int) -> bool:
    """Set OpenMP's thread count for OpenFHE (process-wide). Returns False when libgomp is absent."""
    load_openfhe()  # make sure OpenFHE's libgomp is the one loaded
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        return False
    gomp.omp_set_num_threads(int(threads))
    return True


class KeyTracker:
    """Frees OpenFHE's process-wide evaluation-key maps when the last client/evaluator of a key dies.

    OpenFHE stores relinearization, rotation and bootstrapping keys in static maps keyed by the secret
    key's tag, and nothing removes them: every ``keygen`` in a process adds ~10 GB at N = 2^16 with
    bootstrapping (measured: 0.65 GB per keygen at N = 2^13), so a second keygen would exhaust this
    machine. Owners register here; when a tag has no live owner its keys are dropped (the bindings can
    only clear all maps, so the keys of tags still alive are re-inserted), and when no tag is alive at all
    ``ReleaseAllContexts`` also frees the contexts' bootstrapping precomputations.
    """

    def __init__(self) -> None:
        self.live: dict[str, int] = {}

    def track(self, tag: str, *owners: object) -> None:
        for owner in owners:
            self.live[tag] = self.live.get(tag, 0) + 1
            owner._release_keys = weakref.finalize(owner, self.release, tag)  # type: ignore[attr-defined]

    def release(self, tag: str) -> None:
        left = self.live.get(tag, 0) - 1
        if left > 0:
            self.live[tag] = left
            return
        self.live.pop(tag, None)
        of = load_openfhe()
        if not self.live:
            of.ReleaseAllContexts()
            return
        mult = of.CryptoContext.GetAllEvalMultKeys()
        auto = of.CryptoContext.GetAllEvalAutomorphismKeys()
        keep = {t: (mult.get(t), auto.get(t)) for t in self.live}
        of.ClearEvalMultKeys()
        of.CryptoContext.ClearEvalAutomorphismKeys()
        for t, (m, a) in keep.items():
            if m is not None:
                of.CryptoContext.InsertEvalMultKey(m, t)
            if a is not None:
                of.CryptoContext.InsertEvalAutomorphismKey(a, t)


KEYS = KeyTracker()
