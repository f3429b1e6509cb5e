"""TEMP shim until the pipeline split lands (drop at merge)."""

from olafhe.jobs.pipeline import peak_rss_mb

__all__ = ["peak_rss_mb"]
