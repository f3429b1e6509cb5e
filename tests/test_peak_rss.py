"""Peak-RSS accounting of encrypted runs: each run reports its own peak, not the process's."""

from __future__ import annotations

import numpy as np
import pytest

from olafhe.pipeline import peak_rss_mb, reset_peak_rss


def test_peak_rss_resets_between_runs() -> None:
    if not reset_peak_rss():
        pytest.skip("this kernel offers no peak-RSS reset (/proc/self/clear_refs)")
    before = peak_rss_mb()
    block = np.ones(40_000_000)  # 320 MB, touched
    grown = peak_rss_mb()
    assert grown >= before + 250
    del block
    assert peak_rss_mb() == pytest.approx(grown, abs=5)  # a peak stays after the memory is freed
    assert reset_peak_rss()
    assert peak_rss_mb() < grown - 250  # ... until a new window starts
