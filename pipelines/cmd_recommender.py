"""``cip train-recommender``: train, evaluate and register the recommender of a workspace.

The logic lives in :func:`run_train_recommender` so that ``cip train recommender``
can call the same function.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError, DataError
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["run_train_recommender"]

ALGORITHMS = ("als", "bpr", "itemknn", "ease", "popular", "auto")


def run_train_recommender(
    ws: Workspace,
    algorithm: str | None = None,
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    """Read interactions from the workspace store, train, log to MLflow, register.

    ``algorithm`` defaults to ``recommender.algorithm`` of ``cip.yaml``. Returns a
    JSON-able summary: run id, model version, whether it was promoted to
    ``champion``, validation metrics of the model and of the popularity baseline.
    """
    from cip.models import interactions_from_store
    from cip.models.recommender.tracking import train_recommender_run

    cfg = ws.config.recommender
    algo = algorithm or cfg.algorithm
    if algo not in ALGORITHMS:
        raise ConfigError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, not {algo!r}")
    if tune_trials is not None and tune_minutes is not None:
        raise ConfigError("give --tune-trials or --tune-minutes, not both")
    with ws.open_store(read_only=True) as store:
        interactions = interactions_from_store(
            store, weights=cfg.event_weights, half_life_days=cfg.half_life_days, as_of=as_of
        )
    if interactions.empty:
        raise DataError(
            "no interactions in the store (completed order lines or weighted events with an "
            "item); run `cip ingest` first"
        )
    from implicit.recommender_base import ModelFitError

    try:
        model, run_id, metrics = train_recommender_run(
            interactions,
            algorithm=algo,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            tracking_uri=ws.mlflow_tracking_uri,
            artifact_location=ws.mlflow_artifact_location,
            k=cfg.k,
            validation=cfg.validation,
            as_of=as_of,
        )
    except ModelFitError as exc:  # e.g. BPR's factors diverging to NaN
        raise DataError(
            f"{algo} did not converge on these interactions ({exc}); nothing was registered. "
            "Try another --algorithm or tune it (--tune-trials)"
        ) from None
    return {
        "run_id": run_id,
        "algorithm": metrics["algorithm"],
        "version": metrics["version"],
        "promoted": metrics["promoted"],
        "users": model.n_users_,
        "items": model.n_items_,
        "interactions": int(model.user_items_.nnz),
        "metrics": {
            k: v for k, v in metrics.items() if k not in ("version", "promoted", "algorithm")
        },
    }


@app.command("train-recommender")
def train_recommender(
    algorithm: Annotated[
        Literal["als", "bpr", "itemknn", "ease", "popular", "auto"] | None,
        typer.Option(help="Algorithm; auto tunes and picks the best (default: cip.yaml)."),
    ] = None,
    tune_trials: Annotated[
        int | None, typer.Option("--tune-trials", min=1, help="Tune with this many Optuna trials.")
    ] = None,
    tune_minutes: Annotated[
        float | None, typer.Option("--tune-minutes", min=0.1, help="Tune for this many minutes.")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Only use interactions before this date.")
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
        result = run_train_recommender(ws, algorithm, tune_trials, tune_minutes, as_of)
    if as_json:
        emit_json(result)
        return
    m, k = result["metrics"], ws.config.recommender.k
    t = Table("metric", "model", "popularity", title=f"Validation (top {k})")
    for name in ("ndcg", "recall", "map", "precision", "hit_rate", "coverage"):
        t.add_row(name, f"{m[f'{name}_at_{k}']:.4f}", f"{m[f'popular_{name}_at_{k}']:.4f}")
    out.print(t)
    status = "promoted to champion" if result["promoted"] else "not promoted"
    out.print(
        f"{result['algorithm']} on {result['users']:,} people x {result['items']:,} items: "
        f"cip-recommender v{result['version']} ({status}), run {result['run_id']}"
    )
