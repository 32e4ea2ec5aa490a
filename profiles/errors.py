"""The small exception hierarchy of CIP.

Every error a user can cause derives from :class:`CIPError`. The CLI prints the
message as one line and exits with the class's :attr:`~CIPError.exit_code`
(documented in the README, "Exit codes"); the HTTP service maps the subclasses
to status codes (see ``serving``). Messages name the file, row, column or key
that is wrong, so the user can fix the input without reading a traceback.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CIPError",
    "ConfigError",
    "SourceError",
    "DataError",
    "NotFoundError",
    "ConflictError",
    "PrivacyError",
    "exit_codes",
]


class CIPError(Exception):
    """Base class of every error CIP raises on purpose."""

    #: the ``cip`` command's exit status for this kind of error
    exit_code: ClassVar[int] = 1


class ConfigError(CIPError):
    """The configuration (``cip.yaml``, a segment definition, ...) is invalid."""

    exit_code = 3  # config/data error


class SourceError(CIPError):
    """A source cannot be read as declared (missing file, unknown column, bad format).

    Raised before anything is written, so the store is unchanged.
    """

    exit_code = 3  # config/data error


class DataError(CIPError):
    """The data cannot support the request (e.g. a label horizon past the end of data)."""

    exit_code = 3  # config/data error


class NotFoundError(CIPError):
    """A named thing (table, model, segment, person) does not exist."""

    exit_code = 4  # not found


class ConflictError(CIPError):
    """The workspace or store is busy (e.g. a run holds its lock): try again later."""

    exit_code = 75  # busy: try again later (EX_TEMPFAIL)


class PrivacyError(CIPError):
    """The request would break consent or erasure rules."""

    exit_code = 5  # refused or incomplete for privacy reasons


def exit_codes() -> dict[str, int]:
    """The exit status of ``cip`` for each error class, by class name (for docs and tests)."""
    classes = [
        CIPError,
        *(globals()[n] for n in __all__ if n.endswith("Error") and n != "CIPError"),
    ]
    return {c.__name__: c.exit_code for c in classes}
