"""Which machine a cost table belongs to: a key from the CPU model and OpenFHE's thread count.

Operation costs depend on the CPU (an Intel Xeon bootstraps ~2x slower than the AMD EPYC the shipped
tables were measured on, and the ranking of bootstrapping configurations flips) and on the number of
threads OpenMP runs, so measured tables are kept per machine key, e.g. ``intel-xeon-platinum-8375c-t2``
for "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz" with 2 threads, under :func:`cost_dir`::

    $OLAFHE_COSTS (default ~/.cache/olafhe/costs)/<machine key>/<backend>-N<ring dimension>.json
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

COSTS_ENV = "OLAFHE_COSTS"
# words of /proc/cpuinfo model names that say nothing about the CPU's speed class
_NOISE = re.compile(r"\((?:r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\b\d+-core\b", re.IGNORECASE)


def cpu_model() -> str:
    """This machine's CPU model: ``model name`` of /proc/cpuinfo, else what :mod:`platform` reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def default_threads(configured: int | None = None) -> int:
    """Threads OpenFHE runs with: ``configured`` (``backend.ckks.threads``) when set, else OpenMP's
    default (``$OMP_NUM_THREADS``, else every core)."""
    if configured:
        return int(configured)
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def cpu_slug(model: str) -> str:
    """``model`` as lowercase words joined by ``-``, without trademarks, "CPU" and the clock frequency."""
    slug = re.sub(r"[^a-z0-9]+", "-", _NOISE.sub(" ", model).lower()).strip("-")
    return slug or "unknown-cpu"


def machine_key(threads: int | None = None, cpu: str | None = None) -> str:
    """The key cost tables are filed under: CPU model slug and thread count (default: this machine's)."""
    return f"{cpu_slug(cpu if cpu is not None else cpu_model())}-t{default_threads(threads)}"


def cost_dir() -> Path:
    """The per-user directory of measured tables: ``$OLAFHE_COSTS``, else ``~/.cache/olafhe/costs``."""
    return Path(os.environ.get(COSTS_ENV) or Path.home() / ".cache" / "olafhe" / "costs").expanduser()


def machine_description(threads: int | None = None) -> dict:
    """Where a cost table was measured: CPU model, machine key, threads, cores, memory, versions."""
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "key": machine_key(threads, cpu),
        "threads": default_threads(threads),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
