"""olafhe: encrypted CNN inference with layerwise-optimized polynomial activations."""
__version__ = "0.1.0"
