"""Model commands: ``cip train churn|propensity``, ``cip score``, ``cip models list|promote|rollback``.

``train_app`` is the ``cip train`` group; other model families (the
recommender) add their own commands to it.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from cip.pipelines._cli_app import app, console, emit_json, out, workspace
from cip.pipelines.workspace import Workspace
from cip.profiles.contracts import REGISTERED_MODELS
from rich.table import Table

__all__ = ["train_app", "models_app", "run_train", "run_score"]

# MLflow's per-file download bars would clutter the terminal; our status line says enough.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

train_app = typer.Typer(
    help="Train a model on the workspace's data (tracked in MLflow, promoted only if it wins).",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="The model registry: list versions, promote a version, roll back.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")

_KIND_NAMES = {k: REGISTERED_MODELS[k] for k in ("churn", "propensity")}

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="As-of date D (YYYY-MM-DD); labels used for fitting end on or before D "
        "(default: the last day with data).",
    ),
]
Horizon = Annotated[
    int | None,
    typer.Option("--horizon-days", min=1, help="Label horizon H in days (default: cip.yaml, 90)."),
]
Trials = Annotated[
    int | None,
    typer.Option("--tune-trials", min=1, help="Tune with Optuna up to N trials (resumable)."),
]
Minutes = Annotated[
    float | None, typer.Option("--tune-minutes", min=0.1, help="Tune with Optuna for M minutes.")
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (same seed + data = same metrics).")]
Every = Annotated[
    int | None, typer.Option("--snapshot-every-days", min=1, help="Days between snapshots.")
]
NSnap = Annotated[int | None, typer.Option("--snapshots", min=2, help="Labelled snapshots.")]
Holdout = Annotated[
    str | None,
    typer.Option(
        "--holdout",
        help="auto | as_of | latest_labelled: evaluate on D itself when D + H is in the data "
        "(a backtest), else on the latest labelled snapshot D - H.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class _Quiet:
    """A no-op status line where no terminal is attached (notebooks, pipes)."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, message: str) -> None:
        return None


def _status(message: str) -> Any:
    """A rich status spinner on a terminal; silent elsewhere."""
    return console.status(message) if console.is_terminal else _Quiet()


def _date(value: str | None, option: str = "--as-of") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None


def run_train(
    ws: Workspace,
    kind: str,
    as_of: date | None = None,
    *,
    horizon_days: int | None = None,
    tune_trials: int | None = None,
    tune_minutes: float | None = None,
    seed: int = 0,
    snapshot_every_days: int | None = None,
    n_snapshots: int | None = None,
    holdout: str | None = None,
    progress: Any = None,
) -> Any:
    """Train ``kind`` on the workspace (options default to ``cip.yaml``'s ``models:``).

    Returns a :class:`models.TrainResult`; used by ``cip train`` and pipeline steps.
    """
    from cip.models.training import train_model

    cfg = ws.config.models
    with ws.open_store() as store:
        return train_model(
            store,
            kind,
            as_of,
            horizon_days or cfg.horizon_days,
            ws.mlflow_tracking_uri,
            ws.mlflow_artifact_location,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            seed=seed,
            snapshot_every_days=snapshot_every_days or cfg.snapshot_every_days,
            n_snapshots=n_snapshots or cfg.n_snapshots,
            holdout=holdout or cfg.holdout,
            study_dir=ws.models_dir,
            min_delta=cfg.min_delta,
            progress=progress,
        )


def run_score(
    ws: Workspace,
    as_of: date,
    *,
    out: Path | None = None,
    reasons: str | None = None,
    progress: Any = None,
) -> Any:
    """Score every profile at ``as_of`` with the champions; returns a :class:`models.ScoreResult`."""
    from cip.models.scoring import score

    method = reasons or ws.config.models.reasons
    if method not in ("path", "shap"):
        raise typer.BadParameter("must be path or shap", param_hint="--reasons")
    with ws.open_store() as store:
        return score(
            store, as_of, ws.mlflow_tracking_uri, out=out, reasons=method, progress=progress
        )


def _train(
    kind: str,
    as_of: str | None,
    horizon_days: int | None,
    tune_trials: int | None,
    tune_minutes: float | None,
    seed: int,
    every: int | None,
    n_snapshots: int | None,
    holdout: str | None,
    as_json: bool,
) -> None:
    if tune_trials is not None and tune_minutes is not None:
        raise typer.BadParameter("give --tune-trials or --tune-minutes, not both")
    ws = workspace()
    with _status(f"training {kind}") as status:
        result = run_train(
            ws,
            kind,
            _date(as_of),
            horizon_days=horizon_days,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            seed=seed,
            snapshot_every_days=every,
            n_snapshots=n_snapshots,
            holdout=holdout,
            progress=lambda msg: status.update(f"{kind}: {msg}"),
        )
    if as_json:
        emit_json(result.as_dict())
        return
    _print_result(result)


def _print_result(r: Any) -> None:
    t = Table("metric", "model", *r.baselines, *(["champion"] if r.champion_metrics else []))
    t.title = f"{r.kind}: holdout {r.holdout_as_of} (fit on {', '.join(r.fit_as_ofs)})"
    for k in ("roc_auc", "pr_auc", "lift_top10", "capture_top10", "brier", "log_loss", "ece"):
        row = [_fmt(r.metrics.get(k))] + [_fmt(b.get(k)) for b in r.baselines.values()]
        if r.champion_metrics:
            row.append(_fmt(r.champion_metrics.get(k)))
        t.add_row(k, *row)
    out.print(t)
    verdict = "[green]promoted to champion[/]" if r.promoted else "[yellow]not promoted[/]"
    out.print(f"version {r.version} (run {r.run_id}): {verdict}: {r.decision}")


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.4f}"


@train_app.command("churn")
def train_churn(
    as_of: AsOf = None,
    horizon_days: Horizon = None,
    tune_trials: Trials = None,
    tune_minutes: Minutes = None,
    seed: Seed = 0,
    snapshot_every_days: Every = None,
    snapshots: NSnap = None,
    holdout: Holdout = None,
    as_json: Json = False,
) -> None:
    """Train the churn model (active customers who will not buy within the horizon)."""
    _train(
        "churn", as_of, horizon_days, tune_trials, tune_minutes, seed,
        snapshot_every_days, snapshots, holdout, as_json,
    )  # fmt: skip


@train_app.command("propensity")
def train_propensity(
    as_of: AsOf = None,
    horizon_days: Horizon = None,
    tune_trials: Trials = None,
    tune_minutes: Minutes = None,
    seed: Seed = 0,
    snapshot_every_days: Every = None,
    snapshots: NSnap = None,
    holdout: Holdout = None,
    as_json: Json = False,
) -> None:
    """Train the purchase-propensity model (customers who will buy within the horizon)."""
    _train(
        "propensity", as_of, horizon_days, tune_trials, tune_minutes, seed,
        snapshot_every_days, snapshots, holdout, as_json,
    )  # fmt: skip


@app.command("score")
def score_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="Score as of this date (YYYY-MM-DD).")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Also write a file (.csv or .parquet) with customer_id."),
    ] = None,
    reasons: Annotated[
        str | None,
        typer.Option("--reasons", help="path (fast, default) or shap (exact TreeSHAP, slower)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Score every profile with the champion models into the scores table (and --out)."""
    d = _date(as_of)
    ws = workspace()
    with _status("scoring") as status:
        res = run_score(ws, d, out=out_file, reasons=reasons, progress=status.update)
    if as_json:
        emit_json(res.__dict__)
        return
    models = ", ".join(f"{k} v{v}" for k, v in res.models.items())
    out.print(
        f"Scored {res.profiles_scored:,} profiles as of {res.as_of} with {models} "
        f"in {res.seconds:.1f} s ({res.excluded_no_consent:,} without profiling consent skipped)"
    )
    if res.out:
        out.print(f"Wrote {res.out_rows:,} rows to {res.out}")


def _registry(ws: Workspace) -> Any:
    from cip.models import registry

    registry.configure_mlflow(ws.mlflow_tracking_uri, ws.mlflow_artifact_location)
    return registry


def _name(name: str) -> str:
    return _KIND_NAMES.get(name, name)


@models_app.command("list")
def models_list(as_json: Json = False) -> None:
    """List every registered model version, its holdout AUC and the champion."""
    rows = _registry(workspace()).list_models()
    if as_json:
        emit_json(rows)
        return
    t = Table("name", "version", "champion", "holdout AUC", "holdout as of", "run", title="Models")
    for r in rows:
        tags = r["tags"]
        t.add_row(
            r["name"],
            r["version"],
            "[green]champion[/]" if r["champion"] else "",
            tags.get("holdout_roc_auc", "-"),
            tags.get("holdout_as_of", "-"),
            r["run_id"] or "-",
        )
    out.print(t)


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model (cip-churn, or just churn).")],
    version: Annotated[str, typer.Argument(help="Version to make the champion.")],
    as_json: Json = False,
) -> None:
    """Make VERSION the champion of NAME by hand (bypasses the promotion gate)."""
    reg = _registry(workspace())
    reg.set_champion(_name(name), version)
    if as_json:
        emit_json({"name": _name(name), "champion": version})
        return
    out.print(f"{_name(name)}: version {version} is now the champion")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model (cip-churn, or just churn).")],
    as_json: Json = False,
) -> None:
    """Restore the previous champion of NAME."""
    reg = _registry(workspace())
    version = reg.rollback(_name(name))
    if as_json:
        emit_json({"name": _name(name), "champion": version})
        return
    out.print(f"{_name(name)}: rolled back, version {version} is the champion again")
