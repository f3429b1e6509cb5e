"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import run_infer

__all__ = ["run_infer"]
