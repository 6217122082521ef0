"""The project's exception family.

Every error groupnorm-bench raises on purpose derives from :class:`GroupNormBenchError`;
bad arguments are also ``ValueError`` / ``TypeError`` so callers can catch them the
usual way. Messages name the argument, the offending value and what is allowed.
"""


class GroupNormBenchError(Exception):
    """Base class of every error raised on purpose by groupnorm-bench."""


class InvalidArgumentError(GroupNormBenchError, ValueError):
    """An argument has an allowed type but a value outside what is allowed."""


class InvalidTypeError(GroupNormBenchError, TypeError):
    """An argument has a type that is not allowed."""


class RegistryError(GroupNormBenchError, ValueError):
    """A backend could not be registered or looked up (duplicate, unknown, malformed)."""


class BackendUnavailableError(GroupNormBenchError, RuntimeError):
    """A backend cannot run on the requested device; the message says why and the fix."""
