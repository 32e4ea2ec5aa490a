"""``cip recommend``: top-N of a recommendation block per person for campaigns;
``cip recommend fit-blocks``: fit the named blocks of ``cip.yaml``;
``cip recommend evaluate-blocks``: each block against its baseline on a time
split, logged to MLflow (work in :mod:`cip.pipelines.workflows.blocks`)."""

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


@recommend_app.command("evaluate-blocks")
def evaluate_blocks(
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            callback=check_as_of,
            help="First day of the test period (default: the last 20% of the data's time span).",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--end", callback=check_as_of, help="End of the test period (excluded; default: all)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="Cut-off of the metrics.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampled queries and items.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Evaluate the blocks of `blocks:` in cip.yaml on a time split, each against its
    baseline, and log the metrics and a bar chart to MLflow (experiment cip-blocks).

    Fits on order lines before --split and judges on the test period:
    buy_again vs P-TopFreq (next basket), bought_together vs co-occurrence count
    (leave one out), similar vs popular in category (items with hidden history),
    personal vs popular (new items). Other kinds are listed as skipped.
    """
    ws = workspace()
    with console.status("Evaluating the recommendation blocks ..."):
        res = ws.evaluate_blocks(split, end, k=k, seed=seed)
    if as_json:
        emit_json(res.as_dict())
        return
    from rich.table import Table

    t = Table(title=f"blocks at k={res.k}, test from {res.split} (run {res.run_id})")
    for c in ("block", "kind", "baseline", "queries", "recall", "nDCG", "hit rate"):
        t.add_column(c)

    def pair(r: dict, m: str) -> str:
        return f"{r[m]:.4f} vs {r['baseline_' + m]:.4f}"

    for r in res.rows:
        if r["skipped"]:
            t.add_row(r["block"], r["kind"], "-", "-", r["skipped"], "", "")
        else:
            t.add_row(
                r["block"],
                r["kind"],
                r["baseline"],
                f"{r['queries']:,}",
                pair(r, "recall"),
                pair(r, "ndcg"),
                pair(r, "hit_rate"),
            )
    out.print(t)
