"""The ``cip`` command line: the product's front door.

Errors a user can cause (:class:`profiles.errors.CIPError`) print one line and
exit with status 1; unexpected failures print one line, log the traceback to
the workspace log, and exit with status 2.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from cip.pipelines import (  # noqa: F401  (each module registers its commands)
    cmd_core,
    cmd_data,
    cmd_demo,
    cmd_features,
    cmd_identity,
    cmd_models,
    cmd_privacy,
    cmd_recommender,
    cmd_retention,
    cmd_run,
    cmd_segments,
    cmd_serve,
    cmd_simulate,
)
from cip.pipelines._cli_app import app, state
from cip.profiles.errors import CIPError

# `cip train recommender` joins `cip train churn|propensity` (same function as `train-recommender`)
cmd_models.train_app.command("recommender")(cmd_recommender.train_recommender)

__all__ = ["app", "main"]

log = logging.getLogger("cip.pipelines.cli")


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
) -> None:
    state.workspace = workspace
    state.verbose = verbose


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cip`` script."""
    # third-party deprecation chatter is not for the operator's terminal (it stays in tests)
    warnings.filterwarnings("ignore", module=r"(mlflow|sklearn|lightgbm|pandas|pydantic)(\..*)?$")
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CIPError as exc:
        typer.echo(f"Error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # the last line of defence: one line, traceback to the log
        log.exception("unexpected error")
        typer.echo(
            f"Internal error: {type(exc).__name__}: {exc} (details in the workspace log)", err=True
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
