"""Peak-RSS accounting of encrypted runs: each run reports its own peak, not the process's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from olafhe.jobs.memory import reset_peak_rss

# A fresh interpreter: the test process's own heap (torch, earlier tests) would blur a 320 MB signal.
PROBE = """
import json, numpy as np
from olafhe.jobs.memory import peak_rss_mb, reset_peak_rss
out = {"before": peak_rss_mb()}
block = np.ones(40_000_000)  # 320 MB, touched
out["grown"] = peak_rss_mb()
del block
out["after_free"] = peak_rss_mb()
out["reset"] = reset_peak_rss()
out["after_reset"] = peak_rss_mb()
print(json.dumps(out))
"""


def test_peak_rss_resets_between_runs() -> None:
    if not reset_peak_rss():
        pytest.skip("this kernel offers no peak-RSS reset (/proc/self/clear_refs)")
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["grown"] >= got["before"] + 250
    assert got["after_free"] == pytest.approx(got["grown"], abs=5)  # a peak stays after the memory is freed
    assert got["reset"] and got["after_reset"] < got["grown"] - 250  # ... until a new window starts
