"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import predict

__all__ = ["predict"]
