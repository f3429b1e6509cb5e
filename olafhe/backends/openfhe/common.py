"""Shared pieces of the ``openfhe`` backend: the lazy import, threads,
the mapping of contract levels to OpenFHE's level index, and the release of OpenFHE's process-wide key maps.

The level of a ciphertext is exact under FLEXIBLEAUTO:
``level = depth - reserve - ct.GetLevel() - (ct.GetNoiseScaleDeg() - 1)``; a pending rescale already owns
the limb it will drop. :class:`SlotLayout` holds that mapping for one crypto context.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SlotLayout:
    """Maps contract levels to OpenFHE's level index; shared by the client and the evaluator."""

    depth: int      # multiplicative depth of the crypto context
    reserve: int    # levels kept below level 0 (1 with bootstrapping: EvalBootstrap needs a limb)
    max_level: int  # params.levels
    slots: int

    def index(self, level: int) -> int:
        """OpenFHE ``GetLevel()`` of a rescaled ciphertext with ``level`` levels left."""
        return self.depth - self.reserve - level

    def level(self, ct: Any) -> int:
        return self.depth - self.reserve - ct.GetLevel() - (ct.GetNoiseScaleDeg() - 1)


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
        if not self.live:
            load_openfhe().ReleaseAllContexts()
            return
        self.prune()

    def prune(self, keep: str = "") -> None:
        """Drop the evaluation keys of every tag no owner tracks (but ``keep``), e.g. extra tags a
        deserialized key file brought along."""
        of = load_openfhe()
        wanted = set(self.live) | ({keep} if keep else set())
        mult = of.CryptoContext.GetAllEvalMultKeys()
        auto = of.CryptoContext.GetAllEvalAutomorphismKeys()
        if set(mult) <= wanted and set(auto) <= wanted:
            return
        of.ClearEvalMultKeys()
        of.CryptoContext.ClearEvalAutomorphismKeys()
        for t in wanted:
            if t in mult:
                of.CryptoContext.InsertEvalMultKey(mult[t], t)
            if t in auto:
                of.CryptoContext.InsertEvalAutomorphismKey(auto[t], t)


KEYS = KeyTracker()


class KeyHolder:
    """Mixin of the client and the evaluator: ``close()`` gives up this object's hold on its keys."""

    def close(self) -> None:
        """Drop this object's hold on its key's OpenFHE maps (freed once client and evaluator let go)."""
        release = getattr(self, "_release_keys", None)
        if release is not None:
            release()
