"""``cip recommend``: top-N of a recommendation block per person for campaigns;
``cip recommend fit-blocks``: fit the named blocks of ``cip.yaml`` (work in
:mod:`cip.pipelines.workflows.blocks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cip.activation import ExportFormat
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from cip.profiles.errors import ConfigError

__all__ = ["recommend_app"]

recommend_app = typer.Typer(
    help="Recommendation blocks: a top-N per person for campaigns, or fit the blocks.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(recommend_app, name="recommend")


@recommend_app.callback()
def recommend(
    ctx: typer.Context,
    segment: Annotated[
        str | None, typer.Option("--segment", help="Only the members of this built segment.")
    ] = None,
    all_people: Annotated[
        bool, typer.Option("--all", help="Every person with a profile (instead of --segment).")
    ] = False,
    block: Annotated[
        str,
        typer.Option("--block", help="A block name from `blocks:` in cip.yaml (e.g. personal)."),
    ] = "personal",
    n: Annotated[
        int | None,
        typer.Option("--n", min=1, max=100, help="Items per person (default: the block's k)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write the rows here: .parquet, .csv or .jsonl (atomically)."
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option("--format", help="File format (default: from the --out extension)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Write one row per person: unified_id, customer_id, items, scores, sources, block,
    fallback, model_version.

    Only persons whose profile consents to personalisation (consent_personalization
    true) and who are not erased get a row. Fit the blocks first with
    `cip recommend fit-blocks`.
    """
    if ctx.invoked_subcommand is not None:
        return
    if out_file is None:
        raise ConfigError("give --out FILE (.parquet, .csv or .jsonl)")
    ws = workspace()
    with console.status(f"Recommending with block {block} ..."):
        res, _ = ws.recommend(
            block, segment=segment, all_people=all_people, n=n, out=out_file, fmt=fmt
        )
    if as_json:
        emit_json(res.as_dict())
        return
    who = f"segment {segment}" if segment else "everyone"
    out.print(
        f"{res.rows:,} rows ({block}, top {res.n}) for {who} -> {res.path} in {res.seconds:.1f}s; "
        f"{res.no_consent:,} without personalisation consent left out, {res.empty:,} with no "
        f"item under the rules; model {res.model_version}"
    )


@recommend_app.command("fit-blocks")
def fit_blocks(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", callback=check_as_of, help="Only use order lines and views before this date."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Fit the blocks of `blocks:` in cip.yaml on the store, save them for serving and
    campaigns, and log the fit to MLflow (experiment cip-blocks).

    The personal kind uses the champion of cip-recommender when there is one.
    """
    ws = workspace()
    with console.status("Fitting the recommendation blocks ..."):
        res = ws.fit_blocks(as_of)
    if as_json:
        emit_json(res.as_dict())
        return
    out.print(
        f"blocks {res.version}: {', '.join(f'{n} ({k})' for n, k in res.blocks.items())} on "
        f"{res.people:,} people x {res.items:,} items ({res.order_lines:,} order lines) "
        f"in {res.seconds:.1f}s -> {res.path}"
    )
