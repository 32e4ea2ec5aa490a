"""The small exception hierarchy of CIP.

Every error a user can cause derives from :class:`CIPError`. The CLI prints the
message as one line and exits non-zero; the HTTP service maps the subclasses to
status codes (see ``serving``). Messages name the file, row, column or key that
is wrong, so the user can fix the input without reading a traceback.
"""

from __future__ import annotations

__all__ = [
    "CIPError",
    "ConfigError",
    "SourceError",
    "DataError",
    "NotFoundError",
    "ConflictError",
    "PrivacyError",
]


class CIPError(Exception):
    """Base class of every error CIP raises on purpose."""


class ConfigError(CIPError):
    """The configuration (``cip.yaml``, a segment definition, ...) is invalid."""


class SourceError(CIPError):
    """A source cannot be read as declared (missing file, unknown column, bad format).

    Raised before anything is written, so the store is unchanged.
    """


class DataError(CIPError):
    """The data cannot support the request (e.g. a label horizon past the end of data)."""


class NotFoundError(CIPError):
    """A named thing (table, model, segment, person) does not exist."""


class ConflictError(CIPError):
    """The request conflicts with the current state (e.g. a run already holds the lock)."""


class PrivacyError(CIPError):
    """The request would break consent or erasure rules."""
