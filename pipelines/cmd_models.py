"""Model commands: ``cip train churn|propensity|clv``, ``cip score``, ``cip models list|promote|rollback``.

``train_app`` is the ``cip train`` group; other model families (the
recommender) add their own commands to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from cip.pipelines._cli_app import app, check_as_of, console, emit_json, out, workspace
from rich.table import Table

__all__ = ["train_app", "models_app"]

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

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        callback=check_as_of,
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
Seed = Annotated[
    int, typer.Option("--seed", min=0, help="Random seed (same seed + data = same metrics).")
]
Every = Annotated[
    int | None, typer.Option("--snapshot-every-days", min=1, help="Days between snapshots.")
]
NSnap = Annotated[int | None, typer.Option("--snapshots", min=2, help="Labelled snapshots.")]
Holdout = Annotated[
    Literal["auto", "as_of", "latest_labelled"] | None,
    typer.Option(
        "--holdout",
        help="Evaluate on D itself (as_of, a backtest: D + H must be in the data) or on the "
        "latest labelled snapshot D - H; auto: as_of when it can (default: cip.yaml).",
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
        result = ws.train(
            kind,
            as_of,
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
    if kind == "clv":
        _print_clv_result(result)
    else:
        _print_result(result)


#: the CLV candidates, in the order they are shown
_CLV_CANDIDATES = ("two_part", "btyd", "last_period")
_CLV_METRICS = ("normalized_gini", "total_ratio", "spearman", "decile_mae")


def _print_clv_result(r: Any) -> None:
    """The CLV run: every candidate and the champion on the same holdout, the winner, the gate."""
    names = [c for c in _CLV_CANDIDATES if c in r.candidates]
    names += [c for c in r.candidates if c not in names]
    champ = ["champion"] if r.champion_metrics else []
    t = Table("metric", *[f"{n}{' (winner)' if n == r.winner else ''}" for n in names], *champ)
    t.title = f"clv: holdout {r.holdout_as_of} (fit on {', '.join(r.fit_as_ofs)})"
    for k in _CLV_METRICS:
        row = [_fmt(r.candidates[n].get(k)) for n in names]
        if r.champion_metrics:
            row.append(_fmt(r.champion_metrics.get(k)))
        t.add_row(k, *row)
    out.print(t)
    verdict = "[green]promoted to champion[/]" if r.promoted else "[yellow]not promoted[/]"
    out.print(f"cip-clv version {r.version} ({r.winner}, run {r.run_id}): {verdict}: {r.decision}")


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


@train_app.command("clv")
def train_clv(
    as_of: AsOf = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(
            "--horizon-days",
            min=1,
            help="CLV horizon H in days: predict net revenue in [D, D + H) "
            "(default: cip.yaml models.clv.horizon_days, else models.horizon_days, 90).",
        ),
    ] = None,
    tune_trials: Annotated[
        int | None,
        typer.Option(
            "--tune-trials",
            min=1,
            help="Tune the two-part LightGBM with Optuna for N trials (default: cip.yaml, none).",
        ),
    ] = None,
    tune_minutes: Minutes = None,
    seed: Seed = 0,
    snapshot_every_days: Every = None,
    snapshots: NSnap = None,
    holdout: Holdout = None,
    as_json: Json = False,
) -> None:
    """Train the CLV model: each person's net revenue in the next H days, plus P(alive) and next order.

    BG/NBD x Gamma-Gamma, last period's spend and a two-part LightGBM are compared on
    the same holdout (normalized Gini); the winner is registered as cip-clv and
    promoted when it beats the current champion.
    """
    _train(
        "clv", as_of, horizon_days, tune_trials, tune_minutes, seed,
        snapshot_every_days, snapshots, holdout, as_json,
    )  # fmt: skip


@app.command("score")
def score_cmd(
    as_of: Annotated[
        str,
        typer.Option("--as-of", callback=check_as_of, help="Score as of this date (YYYY-MM-DD)."),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Also write a file (.csv or .parquet) with customer_id."),
    ] = None,
    reasons: Annotated[
        Literal["path", "shap"] | None,
        typer.Option(
            "--reasons", help="path: fast; shap: exact TreeSHAP, slower (default: cip.yaml, path)."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Score every profile with the champion models into the scores table (and --out)."""
    ws = workspace()
    with _status("scoring") as status:
        res = ws.score(as_of, out=out_file, reasons=reasons, progress=status.update)
    if as_json:
        emit_json(res.as_dict())
        return
    models = ", ".join(f"{k} v{v}" for k, v in res.models.items())
    out.print(
        f"Scored {res.profiles_scored:,} profiles as of {res.as_of} with {models} "
        f"in {res.seconds:.1f} s ({res.excluded_no_consent:,} without profiling consent skipped)"
    )
    for column, why in res.skipped.items():
        out.print(f"[yellow]{column} not scored (left null)[/]: {why}")
    if res.clv_horizon_days:
        out.print(f"clv, expected_orders: the next {res.clv_horizon_days} days after {res.as_of}")
    if res.out:
        out.print(f"Wrote {res.out_rows:,} rows to {res.out}")


@models_app.command("list")
def models_list(as_json: Json = False) -> None:
    """List every registered model version, its holdout metric and the champion.

    The holdout metric is the ROC AUC for churn and propensity, the normalized
    Gini for cip-clv (with its kind: two_part, btyd or last_period).
    """
    rows = [v.as_dict() for v in workspace().models.list().versions]
    if as_json:
        emit_json(rows)
        return
    t = Table("name", "version", "champion", "holdout", "holdout as of", "run", title="Models")
    for r in rows:
        tags = r["tags"]
        if "holdout_normalized_gini" in tags:
            metric = f"Gini {tags['holdout_normalized_gini']} ({tags.get('kind', '?')})"
        elif "holdout_roc_auc" in tags:
            metric = f"AUC {tags['holdout_roc_auc']}"
        else:
            metric = "-"
        t.add_row(
            r["name"],
            r["version"],
            "[green]champion[/]" if r["champion"] else "",
            metric,
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
    change = workspace().models.promote(name, version)
    if as_json:
        emit_json(change.as_dict())
        return
    out.print(f"{change.name}: version {change.champion} is now the champion")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model (cip-churn, or just churn).")],
    as_json: Json = False,
) -> None:
    """Restore the previous champion of NAME."""
    change = workspace().models.rollback(name)
    if as_json:
        emit_json(change.as_dict())
        return
    out.print(f"{change.name}: rolled back, version {change.champion} is the champion again")
