"""Peak resident memory of this process, the one measurement behind every ``peak_rss_mb``."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB since start, or since :func:`reset_peak_rss`.

    Reads ``VmHWM`` from ``/proc/self/status`` (resettable on Linux); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux ``clear_refs`` 5), so one run's peak excludes earlier runs.

    Returns False where the kernel offers no reset (then the peak covers the whole process).
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False
