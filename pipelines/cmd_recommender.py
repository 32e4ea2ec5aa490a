"""``cip train-recommender`` (also ``cip train recommender``): train, evaluate and register
the recommender of a workspace (the work is :meth:`cip.Workspace.train`)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["train_recommender"]


@app.command("train-recommender")
def train_recommender(
    algorithm: Annotated[
        Literal["als", "bpr", "itemknn", "ease", "spark_als", "blend", "popular", "auto"] | None,
        typer.Option(
            help="Algorithm; auto tunes and picks the best, a blend of its two best "
            "algorithms included; blend: EASE + ALS defaults (default: cip.yaml)."
        ),
    ] = None,
    tune_trials: Annotated[
        int | None, typer.Option("--tune-trials", min=1, help="Tune with this many Optuna trials.")
    ] = None,
    tune_minutes: Annotated[
        float | None, typer.Option("--tune-minutes", min=0.1, help="Tune for this many minutes.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", callback=check_as_of, help="Only use interactions before this date."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Train the recommender on the store's interactions, log it to MLflow and register it.

    The alias `champion` of `cip-recommender` moves to the new version only when it
    beats both the popularity baseline and the current champion on the same
    validation split.
    """
    ws = workspace()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        progress.add_task("training the recommender", total=None)
        result = ws.train(
            "recommender",
            as_of,
            algorithm=algorithm,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
        )
    if as_json:
        emit_json(result.as_dict())
        return
    m, k = result.metrics, ws.config.recommender.k
    t = Table("metric", "model", "popularity", title=f"Validation (top {k})")
    for name in ("ndcg", "recall", "map", "precision", "hit_rate", "coverage"):
        t.add_row(name, f"{m[f'{name}_at_{k}']:.4f}", f"{m[f'popular_{name}_at_{k}']:.4f}")
    out.print(t)
    status = "promoted to champion" if result.promoted else "not promoted"
    out.print(
        f"{result.algorithm} on {result.users:,} people x {result.items:,} items: "
        f"cip-recommender v{result.version} ({status}), run {result.run_id}"
    )
