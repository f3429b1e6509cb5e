"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import predict_plan_seconds, predict_program_seconds

__all__ = ["predict_plan_seconds", "predict_program_seconds"]
