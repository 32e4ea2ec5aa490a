"""The Typer application object and helpers shared by the command modules.

Each command group lives in its own ``pipelines/cmd_*.py`` module that registers
on :data:`app`; ``pipelines.cli`` imports them all and provides ``main``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from cip.pipelines.api import Workspace
from cip.pipelines.workspace import resolve_workspace
from cip.profiles.privacy import RedactingFilter, redact
from rich.console import Console

app = typer.Typer(
    name="cip",
    help="CIP, the customer intelligence platform: unify customer data, build features, "
    "train and serve churn, propensity and recommendation models, activate segments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)  # no truncated tables in pipes


@dataclass
class State:
    workspace: Path | None = None
    verbose: bool = False


state = State()


def workspace() -> Workspace:
    """The workspace of this invocation (``--workspace``, ``$CIP_WORKSPACE`` or ./cip-workspace)."""
    ws = Workspace.open(state.workspace)
    log_to_workspace(ws)
    return ws


def log_to_workspace(ws: Workspace) -> None:
    """Send this invocation's logs to ``<workspace>/logs/cip.log`` (PII masked)."""
    _log_to(ws.logs_dir / "cip.log")


def workspace_path() -> Path:
    return resolve_workspace(state.workspace)


def check_as_of(value: str | None) -> str | None:
    """Option callback: a malformed ``--as-of`` is a usage error (one line, exit 2)."""
    from cip.pipelines.workflows.results import to_date
    from cip.profiles.errors import CIPError

    if value is None:
        return None
    try:
        to_date(value)
    except CIPError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None
    return value


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (for ``--json``)."""
    typer.echo(json.dumps(data, indent=2, default=str))


class _RedactingFormatter(logging.Formatter):
    """Masks e-mails and phones in the whole record, traceback included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_handler: logging.FileHandler | None = None


def log_path() -> Path | None:
    """The file this process logs to, or None before a command opened its workspace."""
    return Path(_handler.baseFilename) if _handler is not None else None


def close_log() -> None:
    """Stop logging to the file chosen by :func:`_log_to` (the end of one ``main()`` call)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = None


def _log_to(path: Path) -> None:
    """Send library logs to ``path`` (e-mails and phones masked), replacing an earlier target."""
    global _handler
    path = path.resolve()
    if _handler is not None and Path(_handler.baseFilename) == path:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # last line of defence: no e-mails or phones in logs
    root = logging.getLogger()
    if _handler is not None:  # one process, several workspaces (tests, notebooks)
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    _handler = handler
    root.setLevel(logging.DEBUG if state.verbose else logging.INFO)
    for noisy in ("alembic", "urllib3", "matplotlib", "numba", "httpx", "httpcore", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
