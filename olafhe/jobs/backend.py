"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import approximator_for, check_runnable, cost_table, make_backend, optimizer_for

__all__ = ["make_backend", "cost_table", "check_runnable", "approximator_for", "optimizer_for"]
