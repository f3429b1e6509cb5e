"""olafhe: encrypted CNN inference with layerwise-optimized polynomial activations."""
__version__ = "0.1.0"

import os as _os

# OpenMP threads that busy-wait make OpenFHE many times slower whenever anything else shares the cores;
# passive waiting costs nothing measurable when the machine is idle. Must be set before openfhe loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
