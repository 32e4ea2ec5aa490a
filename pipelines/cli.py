"""The ``cip`` command line: the product's front door.

The contract (tested by ``tests/test_cli_contract.py``, documented in the README,
"Exit codes"): whatever goes wrong, ``cip`` prints exactly one line on stderr.

- a usage error (unknown command or option, bad or missing value): exit 2;
- an error the user can fix (:class:`~cip.profiles.errors.CIPError`): the
  class's ``exit_code`` (3 config/data, 4 not found, 5 privacy, 75 busy, 1 other);
- anything else is a bug: the traceback goes to a log file, the line names the
  exception type and that file, exit 70.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import typer
from cip.pipelines import (  # noqa: F401  (each module registers its commands)
    _cli_app,
    cmd_core,
    cmd_data,
    cmd_demo,
    cmd_features,
    cmd_identity,
    cmd_measure,
    cmd_models,
    cmd_privacy,
    cmd_recommend,
    cmd_recommender,
    cmd_report,
    cmd_retention,
    cmd_run,
    cmd_segments,
    cmd_serve,
    cmd_simulate,
    cmd_triggers,
)
from cip.pipelines._cli_app import app, state
from cip.profiles.errors import CIPError

# typer bundles its own copy of click: these are the classes its parser raises
# (the `click` distribution that MLflow/BentoML install is a different module).
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

# `cip train recommender` joins `cip train churn|propensity` (same function as `train-recommender`)
cmd_models.train_app.command("recommender")(cmd_recommender.train_recommender)

__all__ = ["app", "main", "EXIT_USAGE", "EXIT_INTERNAL", "EXIT_INTERRUPTED"]

EXIT_USAGE = 2  # click's own code for usage errors
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, see the log
EXIT_INTERRUPTED = 130  # 128 + SIGINT

log = logging.getLogger("cip.pipelines.cli")


def _show_version(value: bool) -> None:
    if value:
        from cip import __version__

        typer.echo(f"cip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (default: $CIP_WORKSPACE, else ./cip-workspace).",
            envvar="CIP_WORKSPACE",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print `cip <version>` and exit.",
        ),
    ] = False,
) -> None:
    state.workspace = workspace
    state.verbose = verbose


def _one_line(text: str) -> str:
    """``text`` on one line (a multi-line message would break the one-line contract)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _usage_line(exc: UsageError) -> str:
    # typer validates values with pydantic, whose messages start with "Value error, "
    message = _one_line(exc.format_message()).replace(": Value error, ", ": ")
    line = f"Error: {message}" + ("" if message.endswith((".", "?", "!", ")")) else ".")
    ctx = exc.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        line += f" Try '{ctx.command_path} {ctx.help_option_names[0]}'."
    return line


def _writable(path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError:
        return False
    return True


def crash_log_path() -> Path:
    """Where an unexpected error's traceback goes.

    The log the command already writes to; else ``<workspace>/logs/cip.log``
    when the workspace exists; else ``$XDG_STATE_HOME/cip/cip.log`` (default
    ``~/.local/state/cip/cip.log``); else ``<tmp>/cip-<uid>/cip.log``.
    """
    current = _cli_app.log_path()
    candidates = [current] if current is not None else []
    try:
        root = _cli_app.workspace_path()
        if (root / "cip.yaml").exists():
            candidates.append(root / "logs" / "cip.log")
    except Exception:  # noqa: BLE001 - a broken workspace setting must not hide the error
        pass
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    candidates.append(Path(state_home) / "cip" / "cip.log")
    candidates.append(Path(tempfile.gettempdir()) / f"cip-{os.getuid()}" / "cip.log")
    for path in candidates:
        if _writable(path):
            return path.resolve()
    return candidates[-1]


def _internal_error(exc: BaseException) -> int:
    path = crash_log_path()
    try:
        _cli_app._log_to(path)
        log.error("unexpected error", exc_info=exc)
        where = f"traceback in {path}"
    except OSError as log_exc:  # the log cannot be written: say so rather than point at nothing
        where = f"no log written: {log_exc}"
    typer.echo(f"Internal error: {type(exc).__name__}: {_one_line(str(exc))} ({where})", err=True)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cip`` script: run one command and return its exit status."""
    # third-party deprecation chatter is not for the operator's terminal (it stays in tests)
    warnings.filterwarnings("ignore", module=r"(mlflow|sklearn|lightgbm|pandas|pydantic)(\..*)?$")
    state.workspace, state.verbose = None, False  # main() may run many times in one process
    try:
        rv = app(args=argv, prog_name="cip", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `cip`, `cip train`: the help text, as click does
        exc.show()
        return EXIT_USAGE
    except UsageError as exc:
        typer.echo(_usage_line(exc), err=True)
        return EXIT_USAGE
    except ClickException as exc:  # e.g. a file that cannot be opened
        typer.echo(f"Error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    except CIPError as exc:
        if _cli_app.log_path() is not None:
            log.error("%s: %s", type(exc).__name__, exc)
        typer.echo(f"Error: {_one_line(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: one line, traceback to the log
        return _internal_error(exc)
    finally:
        _cli_app.close_log()  # the next main() in this process picks its own log
    # standalone_mode=False returns the exit status of `ctx.exit(n)` / `typer.Exit(n)`
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
