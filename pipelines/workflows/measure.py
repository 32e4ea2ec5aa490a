"""Measurement workflows: message facts, attribution and lift (``cip measure``, ``ws.measure``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cip.pipelines.workflows.activation import open_quiet
from cip.pipelines.workspace import Workspace
from cip.profiles.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from cip.activation.measure import Attribution, CampaignLift

__all__ = [
    "LiftReport",
    "UpliftTrainResult",
    "sync_messages",
    "measure_lift",
    "lift_report",
    "measure_attribution",
    "train_uplift",
    "PreferencesResult",
    "compute_preferences",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiftReport:
    """Lift of every campaign with a control group, and of the global control group."""

    window_days: float
    effect: float
    campaigns: list[CampaignLift]
    global_control: CampaignLift | None
    without_control: list[str]  # campaigns sent with nobody held out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "window_days": self.window_days,
            "effect": self.effect,
            "campaigns": [c.as_dict() for c in self.campaigns],
            "global_control": None
            if self.global_control is None
            else self.global_control.as_dict(),
            "without_control": self.without_control,
        }


def sync_messages(ws: Workspace) -> int:
    """Copy new decisions of the trigger log into ``message_events``; rows added."""
    from cip.activation.measure import sync_trigger_log

    with open_quiet(ws) as store:
        return sync_trigger_log(store)


def _check(window_days: float) -> None:
    if not window_days > 0:
        raise ConfigError(f"window must be a positive number of days (got {window_days})")


def measure_lift(
    ws: Workspace,
    campaign: str | None = None,
    *,
    window_days: float = 7.0,
    effect: float = 0.10,
) -> LiftReport:
    """Treatment vs control per campaign/trigger (or only ``campaign``) with 95 % intervals."""
    from cip.activation.measure import message_facts, person_orders, sync_trigger_log

    _check(window_days)
    if not effect > 0:
        raise ConfigError(f"effect must be a positive relative lift, e.g. 0.1 (got {effect})")
    with open_quiet(ws) as store:
        sync_trigger_log(store)
        facts = message_facts(store)
        orders = person_orders(store) if store.has_table("orders") else None
    return lift_report(facts, orders, campaign, window_days=window_days, effect=effect)


def lift_report(
    facts: Any,
    orders: Any,
    campaign: str | None = None,
    *,
    window_days: float = 7.0,
    effect: float = 0.10,
) -> LiftReport:
    """:func:`measure_lift` on message facts and person orders already read (``orders`` may be None)."""
    from cip.activation.measure import campaign_outcomes, lift

    if orders is None or facts.empty:
        facts = facts.iloc[0:0]
    groups = campaign_outcomes(facts, orders, window_days=window_days) if len(facts) else {}
    if campaign is not None:
        if campaign not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise NotFoundError(f"no messages of campaign {campaign!r} (campaigns: {known})")
        groups = {campaign: groups[campaign]}
    results, without = [], []
    for name, g in groups.items():
        if (~g["treated"]).sum() == 0:
            without.append(name)
            continue
        results.append(lift(g, name, effect=effect))
    glob = None
    if campaign is None and len(facts):
        gc = campaign_outcomes(facts, orders, window_days=window_days, global_control=True)
        g = gc.get("*")
        if g is not None and (~g["treated"]).sum() and g["treated"].sum():
            glob = lift(g, "*", effect=effect)
    return LiftReport(window_days, effect, results, glob, without)


def measure_attribution(
    ws: Workspace,
    *,
    window_days: float = 7.0,
    model: str = "last",
    touch: str = "click",
    by: tuple[str, ...] = ("campaign", "channel"),
) -> Attribution:
    """Orders attributed to the messages before them (``model`` last|first touch) per ``by``."""
    from cip.activation.measure import (
        ATTRIBUTION_DIMENSIONS,
        attribute_orders,
        message_facts,
        person_orders,
        summarise_attribution,
        sync_trigger_log,
    )

    _check(window_days)
    if model not in ("last", "first"):
        raise ConfigError(f"model must be last or first (got {model!r})")
    if touch not in ("click", "open", "send"):
        raise ConfigError(f"touch must be click, open or send (got {touch!r})")
    bad = [b for b in by if b not in ATTRIBUTION_DIMENSIONS]
    if bad:
        raise ConfigError(f"unknown --by {bad}; use {', '.join(ATTRIBUTION_DIMENSIONS)}")
    with open_quiet(ws) as store:
        sync_trigger_log(store)
        facts = message_facts(store)
        orders = person_orders(store) if store.has_table("orders") else None
    if orders is None:
        import pandas as pd

        orders = pd.DataFrame(columns=["unified_id", "order_id", "ts", "amount", "order_channel"])
    att = attribute_orders(facts, orders, window_days=window_days, touch=touch)  # type: ignore[arg-type]
    return summarise_attribution(
        att,
        model=model,
        by=by,
        orders=len(orders),
        touch=touch,
        window_days=window_days,  # type: ignore[arg-type]
    )


#: Predicted uplift below minus this flags a "sleeping dog" (a message would lose the sale).
SLEEPING_DOG_THRESHOLD = 0.05


@dataclass(frozen=True)
class UpliftTrainResult:
    """``cip train uplift``: holdout metrics vs baselines, promotion, scores written."""

    campaign: str
    registry_name: str
    version: str
    run_id: str
    result: dict[str, Any]
    features_as_of: str
    scored: int
    sleeping_dogs: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "campaign": self.campaign,
            "registry_name": self.registry_name,
            "version": self.version,
            "run_id": self.run_id,
            "features_as_of": self.features_as_of,
            "scored": self.scored,
            "sleeping_dogs": self.sleeping_dogs,
            **self.result,
        }


def _numeric(frame: Any) -> list[str]:
    import pandas as pd

    skip = {"unified_id", "as_of", "r_score", "f_score", "m_score"}
    return [
        c
        for c in frame.columns
        if c not in skip
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def train_uplift(
    ws: Workspace,
    campaign: str,
    *,
    window_days: float = 7.0,
    seed: int = 0,
    sleeping_dog_threshold: float = SLEEPING_DOG_THRESHOLD,
) -> UpliftTrainResult:
    """Train T- and X-learners on a campaign's randomised history; register, gate, score.

    Features are the feature set at the day of the campaign's first decision
    (nothing after it leaks in); the outcome is a completed order within
    ``window_days``. Every profile is then scored on today's features into
    ``uplift_scores`` with the registered version (the champion when promoted).
    """
    import pandas as pd
    from cip.activation.measure import (
        campaign_outcomes,
        message_facts,
        person_orders,
        sync_trigger_log,
    )
    from cip.features import build_features, data_end
    from cip.models.uplift import fit_uplift
    from cip.models.uplift.tracking import log_uplift_run, registry_name
    from cip.profiles.tables import UPLIFT_SCORES, ensure_tables

    _check(window_days)
    with open_quiet(ws) as store:
        sync_trigger_log(store)
        facts = message_facts(store)
        if not store.has_table("orders") or facts.empty:
            raise NotFoundError("no message events or orders: nothing to learn uplift from")
        orders = person_orders(store)
        groups = campaign_outcomes(facts, orders, window_days=window_days)
        if campaign not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise NotFoundError(f"no messages of campaign {campaign!r} (campaigns: {known})")
        g = groups[campaign]
        if g["treated"].all() or not g["treated"].any():
            raise ConfigError(
                f"campaign {campaign!r} needs a treatment and a control group (set control_pct)"
            )
        sent = facts[
            (facts["campaign"] == campaign) & facts["event_type"].isin(["send", "control"])
        ]
        start = pd.Timestamp(sent["ts"].min()).normalize()
        feats = build_features(store, start)
        cols = _numeric(feats)
        frame = g.merge(feats[["unified_id", *cols]], on="unified_id", how="left")
        res = fit_uplift(
            frame[cols].astype(float), frame["treated"].to_numpy(), frame["converted"].to_numpy(),
            seed=seed,
        )  # fmt: skip
        run_id, version = log_uplift_run(
            res,
            campaign,
            frame[cols].astype(float).head(5),
            tracking_uri=ws.mlflow_tracking_uri,
            artifact_location=ws.mlflow_artifact_location,
            params={"campaign": campaign, "window_days": window_days, "seed": seed,
                    "features_as_of": str(start.date()), "persons": len(frame)},
        )  # fmt: skip
        now = data_end(store).normalize() + pd.Timedelta(days=1)
        cur = build_features(store, now)
        up = res.model.predict(cur.reindex(columns=cols).astype(float))
        scores = pd.DataFrame(
            {
                "campaign": campaign,
                "unified_id": cur["unified_id"].astype(str),
                "as_of": now,
                "model_version": str(version),
                "uplift": up.astype(float),
                "sleeping_dog": up < -sleeping_dog_threshold,
            }
        )
        with store.transaction():
            ensure_tables(store, UPLIFT_SCORES)
            store.execute(
                "DELETE FROM uplift_scores WHERE campaign = ? AND as_of = ?",
                [campaign, now.to_pydatetime()],
            )
            store.load_arrow("uplift_scores", scores)
    return UpliftTrainResult(
        campaign,
        registry_name(campaign),
        str(version),
        run_id,
        res.as_dict(),
        str(start.date()),
        len(scores),
        int(scores["sleeping_dog"].sum()),
    )


@dataclass(frozen=True)
class PreferencesResult:
    """``cip measure preferences``: best channel and hour stored per person."""

    persons: int
    own: int  # persons with enough responses of their own
    default_channel: str | None
    default_hour: int | None
    channels: dict[str, int]  # best channel -> persons

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "persons": self.persons,
            "own": self.own,
            "default_channel": self.default_channel,
            "default_hour": self.default_hour,
            "channels": self.channels,
        }


def compute_preferences(
    ws: Workspace, *, min_responses: int = 5, window_days: float = 3.0
) -> PreferencesResult:
    """Best channel and send hour of every person messaged, into ``channel_preferences``.

    Read by triggers with ``channel: best`` / ``send_at: best``; persons with fewer
    than ``min_responses`` responses get the shop's default.
    """
    from cip.activation.measure import (
        best_channel_and_hour,
        message_facts,
        person_orders,
        sync_trigger_log,
        write_preferences,
    )

    _check(window_days)
    if min_responses < 1:
        raise ConfigError(f"min_responses must be at least 1 (got {min_responses})")
    with open_quiet(ws) as store:
        sync_trigger_log(store)
        facts = message_facts(store)
        orders = person_orders(store) if store.has_table("orders") else None
        best = best_channel_and_hour(
            facts, orders, window_days=window_days, min_responses=min_responses
        )
        write_preferences(store, best)
    ch, hour, _ = best.attrs.get("default", (None, None, ""))
    return PreferencesResult(
        len(best),
        int((best["basis"] == "person").sum()),
        ch,
        None if hour is None else int(hour),
        {str(k): int(v) for k, v in best.groupby("channel").size().items()},
    )
