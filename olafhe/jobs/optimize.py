"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import OptimizeResult, run_optimize

__all__ = ["run_optimize", "OptimizeResult"]
