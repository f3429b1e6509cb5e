"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import run_evaluate

__all__ = ["run_evaluate"]
