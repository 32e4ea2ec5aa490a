"""The Python API: :class:`Workspace`, exported as ``cip.Workspace``.

A workspace is a folder holding ``cip.yaml``, the store, the MLflow store and
the sources. Every method runs one workflow of :mod:`cip.pipelines.workflows`
(the same code the ``cip`` command line runs) and returns a typed result with
``as_dict()``::

    import cip

    ws = cip.Workspace.init("my-shop")          # or cip.Workspace.open("my-shop")
    ws.simulate(customers=2000, days=365)
    ws.ingest()
    ws.unify()
    feats = ws.features("2025-06-01").frame     # a pandas DataFrame
    churn = ws.train("churn", as_of="2025-06-01")
    ws.score("2025-09-01")
    ws.segments.build("2025-09-01")

Every ``as_of`` is a ``date``, a ``datetime`` or ISO 8601 text, normalised once
by :func:`to_date`; a bad one raises :class:`cip.profiles.errors.ConfigError`.
This module imports no Typer, click or rich: pass ``progress`` callbacks to
follow long steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cip.pipelines.workflows import activation, blocks, data, modeling, privacy
from cip.pipelines.workflows.results import (
    AsOf,
    ChampionChange,
    DeliveryResult,
    FeaturesResult,
    ForgetResult,
    IngestResult,
    ModelList,
    PersonExport,
    RecommenderTrainResult,
    SegmentList,
    SimulateResult,
    WorkspaceStatus,
    to_date,
    to_datetime,
)
from cip.pipelines.workflows.setup import simulate_shop
from cip.pipelines.workspace import Workspace as _WorkspaceFolder
from cip.profiles.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    import threading

    import pandas as pd
    from cip.activation import BuildReport, ExportReport
    from cip.activation.measure import Attribution
    from cip.activation.triggers import ContentProvider
    from cip.models.clv import CLVTrainResult
    from cip.models.scoring import ScoreResult
    from cip.models.training import TrainResult
    from cip.pipelines.run import RunResult
    from cip.pipelines.workflows.measure import LiftReport, PreferencesResult, UpliftTrainResult
    from cip.pipelines.workflows.report import ReportResult
    from cip.pipelines.workflows.triggers import WorkerResult
    from cip.profiles.identity import UnifyResult
    from cip.profiles.retention import RetentionReport

__all__ = ["Workspace", "Segments", "Measure", "Models", "Triggers", "AsOf", "to_date"]

_SUPERVISED_ONLY = ("horizon_days", "snapshot_every_days", "n_snapshots", "holdout")


def _as_list(values: str | Sequence[str] | None) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else list(values)


@dataclass
class Workspace(_WorkspaceFolder):
    """An opened workspace folder and everything the product does with it.

    Create one with :meth:`init` (a new folder, or an existing one kept as it
    is) or :meth:`open`; then ``simulate``/``ingest`` data, ``unify`` identities,
    build ``features``, ``train`` and ``score`` models, build ``segments`` and
    export them, ``forget`` a person, or ``run`` the whole pipeline.
    """

    # -- data ------------------------------------------------------------------
    def simulate(
        self,
        *,
        customers: int = 2000,
        days: int = 365,
        seed: int = 0,
        end: AsOf | None = None,
        progress: Callable[[int, int], None] | None = None,
        campaigns: int = 0,
    ) -> SimulateResult:
        """Write a simulated shop's sources (``days`` ending on ``end``) and register them.

        ``campaigns`` adds that many randomised e-mail campaigns with a control
        group (their true effects in ``sources/_truth/campaign_truth.parquet``).
        """
        day = None if end is None else to_date(end, what="end")
        return simulate_shop(
            self, customers=customers, days=days, seed=seed, end=day, progress=progress,
            campaigns=campaigns,
        )  # fmt: skip

    def ingest(
        self,
        source: str | None = None,
        *,
        full: bool = False,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> IngestResult:
        """Ingest every declared source (or ``source``): idempotent, bad rows quarantined.

        Incremental database sources read only the rows past their watermark unless
        ``full=True`` (read everything again).
        """
        return data.ingest(self, source, full=full, progress=progress)

    def unify(
        self, full: bool = False, *, progress: Callable[[str], None] | None = None
    ) -> UnifyResult:
        """Resolve identities into persons and profiles (only new records unless ``full``)."""
        return data.unify(self, full=full, progress=progress)

    def features(self, as_of: AsOf, *, out: str | Path | None = None) -> FeaturesResult:
        """Build (and store) the point-in-time feature snapshot of ``as_of``.

        ``result.frame`` is the DataFrame; ``out`` also writes it to Parquet.
        """
        return data.build_feature_snapshot(self, as_of, None if out is None else Path(out))

    def retention(self, now: AsOf | None = None) -> RetentionReport:
        """Delete every row older than its table's maximum age (``retention:``)."""
        return data.apply_retention(self, None if now is None else to_datetime(now, what="now"))

    # -- models ----------------------------------------------------------------
    def train(
        self,
        kind: str,
        as_of: AsOf | None = None,
        *,
        horizon_days: int | None = None,
        tune_trials: int | None = None,
        tune_minutes: float | None = None,
        seed: int = 0,
        snapshot_every_days: int | None = None,
        n_snapshots: int | None = None,
        holdout: str | None = None,
        algorithm: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> TrainResult | CLVTrainResult | RecommenderTrainResult:
        """Train ``churn``, ``propensity``, ``clv`` or ``recommender``; promoted only if it wins.

        Options left out come from ``cip.yaml``. ``churn``/``propensity`` return a
        :class:`cip.models.TrainResult`, ``clv`` a :class:`cip.models.clv.CLVTrainResult`
        (``winner``: two_part, btyd or last_period; ``candidates``: each one's holdout
        normalized Gini and total predicted / actual), ``recommender`` a
        :class:`RecommenderTrainResult` (``algorithm`` applies to it only;
        ``horizon_days``, ``snapshot_every_days``, ``n_snapshots`` and ``holdout``
        to the other three only).
        """
        if kind == "recommender":
            given = {
                "horizon_days": horizon_days,
                "snapshot_every_days": snapshot_every_days,
                "n_snapshots": n_snapshots,
                "holdout": holdout,
            }
            wrong = [k for k in _SUPERVISED_ONLY if given[k] is not None]
            if wrong:
                raise ConfigError(f"{', '.join(wrong)} does not apply to the recommender")
            return modeling.train_recommender(
                self,
                algorithm,
                tune_trials=tune_trials,
                tune_minutes=tune_minutes,
                as_of=as_of,
            )
        if algorithm is not None:
            raise ConfigError(f"algorithm applies to the recommender only, not to {kind}")
        if kind == "clv":
            return modeling.train_clv(
                self,
                as_of,
                horizon_days=horizon_days,
                tune_trials=tune_trials,
                tune_minutes=tune_minutes,
                seed=seed,
                snapshot_every_days=snapshot_every_days,
                n_snapshots=n_snapshots,
                holdout=holdout,
                progress=progress,
            )
        return modeling.train(
            self,
            kind,
            as_of,
            horizon_days=horizon_days,
            tune_trials=tune_trials,
            tune_minutes=tune_minutes,
            seed=seed,
            snapshot_every_days=snapshot_every_days,
            n_snapshots=n_snapshots,
            holdout=holdout,
            progress=progress,
        )

    def score(
        self,
        as_of: AsOf,
        *,
        out: str | Path | None = None,
        reasons: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ScoreResult:
        """Score every profile with the champion models into ``scores`` (and ``out``)."""
        path = None if out is None else Path(out)
        return modeling.score(self, as_of, out=path, reasons=reasons, progress=progress)

    # -- recommendation blocks -----------------------------------------------------
    def fit_blocks(self, as_of: AsOf | None = None) -> blocks.FitBlocksResult:
        """Fit the named blocks of ``cip.yaml`` (``blocks:``) on the store and save them.

        The saved blocks serve ``/recommend`` with ``"block"`` and :meth:`recommend`;
        the fit is logged to MLflow (experiment ``cip-blocks``).
        """
        return blocks.fit_blocks(self, None if as_of is None else to_date(as_of))

    def evaluate_blocks(
        self,
        split: AsOf | None = None,
        end: AsOf | None = None,
        *,
        k: int = 10,
        seed: int = 0,
    ) -> blocks.EvaluateBlocksResult:
        """Each block of ``blocks:`` against its baseline on a time split, logged to MLflow.

        ``split`` starts the test period (default: the last 20 % of the data's
        time span), ``end`` ends it; the metrics at ``k`` go to a run of the
        ``cip-blocks`` experiment with the table and a bar chart.
        """
        return blocks.evaluate_blocks(
            self,
            None if split is None else to_date(split, what="split"),
            None if end is None else to_date(end, what="end"),
            k=k,
            seed=seed,
        )

    def recommend(
        self,
        block: str = "personal",
        *,
        segment: str | None = None,
        all_people: bool = False,
        n: int | None = None,
        out: str | Path | None = None,
        fmt: str | None = None,
    ) -> tuple[blocks.CampaignResult, pd.DataFrame]:
        """Top-``n`` of ``block`` per consenting person of ``segment`` (or ``all_people``).

        Returns the report and the rows (``unified_id, customer_id, items, scores,
        sources, block, fallback, model_version``); ``out`` (``.parquet``, ``.csv``,
        ``.jsonl``) also writes them, atomically.
        """
        return blocks.recommend(
            self, block, segment=segment, all_people=all_people, n=n, out=out, fmt=fmt
        )

    @property
    def models(self) -> Models:
        """The model registry of this workspace: ``list``, ``promote``, ``rollback``."""
        return Models(self)

    @property
    def triggers(self) -> Triggers:
        """Real-time triggers of this workspace: ``run``, ``list``, ``status``, ``log``, ``test``."""
        return Triggers(self)

    @property
    def measure(self) -> Measure:
        """Measuring what works: ``sync``, ``lift``, ``attribution``, ``preferences``,
        ``train_uplift``."""
        return Measure(self)

    @property
    def segments(self) -> Segments:
        """Segments of this workspace: ``build``, ``list``, ``export``, ``deliver``."""
        return Segments(self)

    # -- privacy ---------------------------------------------------------------
    def forget(
        self,
        identifiers: str | Sequence[str] | None = None,
        unified_ids: str | Sequence[str] | None = None,
        *,
        rewrite: bool = True,
        actor: str | None = None,
    ) -> ForgetResult:
        """Erase persons everywhere (store, sessions, files); ``TYPE:VALUE`` identifiers.

        An incomplete erasure is reported in ``result.warnings`` (the CLI turns
        them into an error).
        """
        return privacy.forget(
            self, _as_list(identifiers), _as_list(unified_ids), rewrite=rewrite, actor=actor
        )

    def export_person(
        self,
        identifiers: str | Sequence[str] | None = None,
        unified_ids: str | Sequence[str] | None = None,
        *,
        actor: str | None = None,
    ) -> PersonExport:
        """Access request: everything held on the persons (``result.document``)."""
        return privacy.export_person(
            self, _as_list(identifiers), _as_list(unified_ids), actor=actor
        )

    # -- the whole pipeline ------------------------------------------------------
    def report(
        self,
        out: str | Path | None = None,
        *,
        window_days: float = 7.0,
        effect: float = 0.10,
    ) -> ReportResult:
        """Write the self-contained HTML report (``cip report``) and return where and what.

        ``out`` defaults to ``reports/report.html`` in the workspace; sections:
        workspace, models, segments, triggers and messages, attribution, lift,
        uplift, best channel and hour (each says in one line when it has no data).
        """
        from cip.pipelines.workflows.report import build_report

        return build_report(self, out, window_days=window_days, effect=effect)

    def status(self) -> WorkspaceStatus:
        """Tables and row counts, quarantine, the last ingests and the last ``run``."""
        from cip.pipelines.workflows.status import collect_status

        return collect_status(self)

    def run(
        self,
        as_of: AsOf | None = None,
        *,
        on_step: Callable[[str, str], None] | None = None,
    ) -> RunResult:
        """Run (or resume) the whole pipeline under the workspace lock (``cip run``).

        ``as_of`` defaults to the day after the last order or event;
        ``on_step(name, "start" | "done")`` follows the steps.
        """
        from cip.pipelines.run import run_pipeline

        day = None if as_of is None else to_date(as_of)
        return run_pipeline(self, as_of=day, on_step=on_step)


@dataclass(frozen=True)
class Segments:
    """``ws.segments``: build, list, export and deliver the workspace's segments."""

    ws: Workspace

    def build(self, as_of: AsOf, names: Sequence[str] | None = None) -> BuildReport:
        """Build the segments (all, or ``names``) for ``as_of``: members, entries, exits."""
        return activation.build_segments(self.ws, as_of, list(names) if names else None)

    def list(self) -> SegmentList:
        """Every configured segment with its size at its latest build."""
        return activation.list_segments(self.ws)

    def export(
        self,
        name: str,
        out: str | Path,
        fmt: str = "csv",
        *,
        changes: str | None = None,
        purpose: str | None = None,
        as_of: AsOf | None = None,
        columns: Sequence[str] | None = None,
    ) -> ExportReport:
        """Write a segment's consented members (or entries/exits) to ``out`` (csv|parquet|jsonl).

        ``columns`` adds the members' score columns, any of ``churn_probability``,
        ``purchase_probability``, ``clv``, ``expected_orders``, ``p_alive``,
        ``next_order_date``, ``clv_model_version``.
        """
        return activation.export_segment(
            self.ws,
            name,
            out,
            fmt,
            changes=changes,
            purpose=purpose,
            as_of=as_of,
            columns=list(columns) if columns else None,
        )

    def deliver(self, as_of: AsOf | None = None) -> DeliveryResult:
        """Send pending segment changes to the configured webhooks (signed)."""
        return activation.deliver(self.ws, as_of)

    def webhook_secret(self, name: str) -> str:
        """The signing secret (``whsec_...``) a receiver verifies webhook ``name`` with.

        ``secret:`` of the destination in cip.yaml when given, else the workspace's
        ``secrets/webhooks/<name>.key`` (made on first use, owner-only).
        """
        dests = self.ws.config.segments.webhooks
        if name not in dests:
            known = ", ".join(sorted(dests)) or "none"
            raise NotFoundError(
                f"no webhook named {name!r} in cip.yaml (segments.webhooks: {known})"
            )
        return dests[name].secret or activation.webhook_secret(self.ws, name)


@dataclass(frozen=True)
class Triggers:
    """``ws.triggers``: the trigger worker and its views (``cip triggers ...``)."""

    ws: Workspace

    def run(
        self,
        *,
        once: bool = True,
        max_event_age: str | None = None,
        poll_seconds: float | None = None,
        from_ingest: bool = False,
        stop: threading.Event | None = None,
        content: ContentProvider | None = None,
    ) -> WorkerResult:
        """Run the worker: by default once (read the feed, run due timers, deliver, return);
        with ``once=False`` until ``stop`` is set. ``content`` replaces the service's
        ``/recommend`` (e.g. an in-process provider)."""
        from cip.pipelines.workflows import triggers

        return triggers.run_worker(
            self.ws, once=once, max_event_age=max_event_age, poll_seconds=poll_seconds,
            from_store=from_ingest, stop=stop, content=content,
        )  # fmt: skip

    def list(self) -> list[dict[str, Any]]:
        """The configured triggers."""
        from cip.pipelines.workflows import triggers

        return triggers.list_triggers(self.ws)

    def status(self) -> dict[str, Any]:
        """Journeys and messages per trigger, undelivered messages, the feed's lag."""
        from cip.pipelines.workflows import triggers

        return triggers.trigger_status(self.ws)

    def log(
        self, trigger: str | None = None, customer_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The latest messages, newest first."""
        from cip.pipelines.workflows import triggers

        return triggers.message_log(self.ws, trigger, customer_id, limit)

    def webhook_secret(self, name: str) -> str:
        """The signing secret (``whsec_...``) of trigger destination ``name``."""
        from cip.pipelines.workflows import triggers

        return triggers.destination_secret(self.ws, name)

    def test(self, name: str, customer_id: str, now: AsOf | None = None) -> dict[str, Any]:
        """A dry run of trigger ``name`` for the customer (nothing is sent)."""
        from cip.pipelines.workflows import triggers

        return triggers.test_trigger(self.ws, name, customer_id, now)


@dataclass(frozen=True)
class Measure:
    """``ws.measure``: message facts, attribution and incremental lift."""

    ws: Workspace

    def sync(self) -> int:
        """Copy new decisions of the trigger log into ``message_events``; rows added."""
        from cip.pipelines.workflows.measure import sync_messages

        return sync_messages(self.ws)

    def lift(
        self, campaign: str | None = None, *, window_days: float = 7.0, effect: float = 0.10
    ) -> LiftReport:
        """Treatment vs control per campaign (95 % intervals, MDE warning) and global control."""
        from cip.pipelines.workflows.measure import measure_lift

        return measure_lift(self.ws, campaign, window_days=window_days, effect=effect)

    def attribution(
        self,
        *,
        window_days: float = 7.0,
        model: str = "last",
        touch: str = "click",
        by: Sequence[str] = ("campaign", "channel"),
    ) -> Attribution:
        """Orders (web, app, store) credited to the messages before them, per ``by``."""
        from cip.pipelines.workflows.measure import measure_attribution

        return measure_attribution(
            self.ws, window_days=window_days, model=model, touch=touch, by=tuple(by)
        )

    def preferences(self, *, min_responses: int = 5, window_days: float = 3.0) -> PreferencesResult:
        """Best channel and send hour per person into ``channel_preferences``
        (``cip measure preferences``; read by ``channel: best`` / ``send_at: best``)."""
        from cip.pipelines.workflows.measure import compute_preferences

        return compute_preferences(self.ws, min_responses=min_responses, window_days=window_days)

    def train_uplift(
        self, campaign: str, *, window_days: float = 7.0, seed: int = 0
    ) -> UpliftTrainResult:
        """T- and X-learner uplift of ``campaign`` (``cip train uplift``): gated, scored."""
        from cip.pipelines.workflows.measure import train_uplift

        return train_uplift(self.ws, campaign, window_days=window_days, seed=seed)


@dataclass(frozen=True)
class Models:
    """``ws.models``: the MLflow model registry of the workspace."""

    ws: Workspace

    def list(self, names: Sequence[str] | None = None) -> ModelList:
        """Every registered version (``churn`` or ``cip-churn`` names) and the champions."""
        return modeling.list_models(self.ws, list(names) if names else None)

    def promote(self, name: str, version: str | int) -> ChampionChange:
        """Make ``version`` the champion of ``name`` (bypasses the promotion gate)."""
        return modeling.promote(self.ws, name, version)

    def rollback(self, name: str) -> ChampionChange:
        """Restore the previous champion of ``name``."""
        return modeling.rollback(self.ws, name)
