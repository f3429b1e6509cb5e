"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import Loaded, calibration_split, get_calibration, load, sensitivities, test_set

__all__ = ["Loaded", "load", "calibration_split", "test_set", "get_calibration", "sensitivities"]
