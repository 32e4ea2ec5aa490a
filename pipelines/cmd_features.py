"""``cip features``: build a point-in-time feature snapshot; ``cip features describe``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cip.features import FEATURE_SET_VERSION, FeatureParams, catalog, catalog_markdown
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from cip.pipelines.workflows.data import feature_params
from cip.profiles.errors import ConfigError, NotFoundError
from rich.table import Table

__all__ = ["feature_params", "features_app"]

features_app = typer.Typer(
    help="Point-in-time features: build a snapshot (--as-of) or describe the catalog.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(features_app, name="features")


@features_app.callback()
def features(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            callback=check_as_of,
            help="Snapshot date (YYYY-MM-DD, midnight UTC; a timestamp counts as its day).",
        ),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write the snapshot to this Parquet file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Build the feature snapshot as of a date: every person with an order or event before it.

    Features only read records strictly before --as-of. The snapshot is written to the
    store table `features_default` (re-running the same --as-of replaces that snapshot
    atomically) and, with --out, to a Parquet file. `cip features describe` lists the catalog.
    """
    if ctx.invoked_subcommand is not None:
        return
    if as_of is None:
        raise ConfigError("give --as-of DATE (or run `cip features describe`)")
    ws = workspace()
    with console.status(f"Computing features as of {as_of} ..."):
        summary = ws.features(as_of, out=out_file).as_dict()
    if as_json:
        emit_json({k: v for k, v in summary.items() if k != "features"})
        return
    extra = f", Parquet {summary['out']}" if summary["out"] else ""
    out.print(
        f"Features as of [bold]{summary['as_of']}[/] ({summary['feature_set_version']}): "
        f"{summary['rows']:,} persons x {len(summary['features'])} features "
        f"-> table {summary['table']}{extra} in {summary['seconds']} s"
    )
    if not summary["event_features"]:
        out.print("No events in the store: event-based features are absent (orders only).")


@features_app.command()
def describe(
    as_json: Annotated[bool, typer.Option("--json", help="The catalog as JSON.")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="A README-ready markdown table.")
    ] = False,
) -> None:
    """List every feature: name, description, dtype, window and source table."""
    params = _params_or_default()
    specs = catalog(params)
    if as_json:
        emit_json(
            {
                "feature_set_version": FEATURE_SET_VERSION,
                "params": params.as_dict(),
                "features": [
                    {
                        "name": s.name,
                        "description": s.description,
                        "dtype": s.dtype,
                        "window": s.window,
                        "source_table": s.source_table,
                        "group": s.group,
                    }
                    for s in specs
                ],
            }
        )
        return
    if markdown:
        typer.echo(catalog_markdown(params), nl=False)
        return
    t = Table(
        "feature",
        "dtype",
        "window",
        "source",
        "description",
        title=f"Features ({FEATURE_SET_VERSION})",
    )
    for s in specs:
        t.add_row(s.name, s.dtype, str(s.window or "all"), s.source_table, s.description)
    out.print(t)


def _params_or_default() -> FeatureParams:
    """The workspace's feature params when a workspace exists, else the defaults."""
    try:
        return feature_params(workspace().config.features)
    except NotFoundError:  # no workspace: describe the default feature set
        return FeatureParams()
