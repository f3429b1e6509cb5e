"""Exception and warning types. Every user-facing failure is an :class:`OlafheError` with a one-line message.

The CLI prints ``str(error)`` and exits non-zero, so messages must name the offending thing
(the config key, the file, the plugin name, the shape) and, where possible, what to do instead.
"""


class OlafheError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, unknown name)."""


class ConfigError(OlafheError):
    """A config file or ``--set`` override is invalid (unknown key, wrong type, bad value)."""


class PluginError(OlafheError):
    """A plugin name is unknown, or a plugin is broken."""


class DataError(OlafheError):
    """A dataset, checkpoint, calibration or plan file is missing or corrupt."""


class ShapeError(OlafheError):
    """An array or tensor has the wrong shape."""


class UnsupportedLayerError(OlafheError):
    """A model contains a layer the graph importer cannot express."""


class ApproximationError(OlafheError):
    """An approximation request is invalid (degree, interval, statistics)."""


class OutOfLevelsError(OlafheError):
    """A CKKS program needs more multiplicative levels than the ciphertext has left."""


class CapabilityError(OlafheError):
    """A backend cannot run a plan (no bootstrapping, not enough depth, too few slots)."""


class SecurityError(OlafheError):
    """HE parameters are below 128-bit security without an explicit opt-in."""


class InfeasibleError(OlafheError):
    """An optimizer cannot meet the requested error budget or depth limit."""


class UnsafePlanError(OlafheError):
    """A plan's values leave the range CKKS evaluates them correctly in (checked before key generation)."""


class MismatchError(OlafheError):
    """An artefact (keys, ciphertext) belongs to another plan, key set, backend or CKKS configuration."""


class OlafheWarning(UserWarning):
    """Base class of warnings the CLI prints as one ``olafhe: warning: ...`` line."""


class CostTableWarning(OlafheWarning):
    """Plans are priced, or were priced, with a cost table measured on another machine."""
