"""The segments shipped with CIP, and checks of a whole set of definitions.

Used when ``cip.yaml`` declares no segments: the 11 RFM segments, four
predictive segments (``high_value_at_risk``, ``likely_buyers`` and, once a CLV
champion scored, ``high_clv`` and ``replenishment_due``) and two recent-event
rules (``abandoned_cart``, ``abandoned_browse``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from cip.activation.definitions import (
    RFM_SEGMENT_NAMES,
    Condition,
    EventRule,
    SegmentDefinition,
    slug,
)
from cip.activation.signing import check_webhook_name
from cip.profiles.errors import ConfigError

__all__ = ["default_definitions", "check_definitions", "select_definitions"]


def default_definitions() -> list[SegmentDefinition]:
    """The default segment definitions (all with purpose ``email``)."""
    rfm = [
        SegmentDefinition(
            name=slug(n),
            kind="rfm",
            rfm_segments=[n],
            score="monetary",
            purpose="email",
            description=f"RFM segment {n}; score: monetary value",
        )
        for n in RFM_SEGMENT_NAMES
    ]
    return rfm + [
        SegmentDefinition(
            name="high_value_at_risk",
            kind="predictive",
            conditions=[
                Condition(field="churn_probability", op=">=", value=0.7),
                Condition(field="monetary_365d", op="top_pct", value=20),
            ],
            score="churn_probability",
            purpose="email",
            description="churn_probability >= 0.7 and monetary_365d in the top 20%",
        ),
        SegmentDefinition(
            name="likely_buyers",
            kind="predictive",
            conditions=[Condition(field="purchase_probability", op="top_pct", value=10)],
            score="purchase_probability",
            purpose="email",
            description="purchase_probability in the top 10%",
        ),
        SegmentDefinition(
            name="high_clv",
            kind="predictive",
            conditions=[Condition(field="clv", op="top_pct", value=10)],
            score="clv",
            purpose="email",
            description="clv (predicted net revenue in the CLV horizon) in the top 10%",
        ),
        SegmentDefinition(
            name="replenishment_due",
            kind="predictive",
            conditions=[
                Condition(field="next_order_date", op="within_days", value=7),
                Condition(field="p_alive", op=">=", value=0.5),
            ],
            score="p_alive",
            purpose="email",
            description="next_order_date within the next 7 days and p_alive >= 0.5; score: p_alive",
        ),
        SegmentDefinition(
            name="abandoned_cart",
            kind="rule",
            events=EventRule(event_type="add_to_cart", within_hours=24, without=["purchase"]),
            purpose="email",
            description="add_to_cart in the last 24 h and no purchase since; "
            "score: add_to_cart events in the window",
        ),
        SegmentDefinition(
            name="abandoned_browse",
            kind="rule",
            events=EventRule(
                event_type="product_view",
                within_hours=7 * 24,
                min_count=3,
                by="category",
                without=["purchase"],
                without_since="window_start",
            ),
            purpose="email",
            description="viewed one category 3+ times in the last 7 days and no purchase; "
            "score: views of the most viewed category",
        ),
    ]


def check_definitions(
    definitions: Sequence[SegmentDefinition], webhooks: Iterable[str] = ()
) -> None:
    """Names unique; every ``webhook`` names a configured destination; destination names valid.

    Raises:
        ConfigError: naming the segment and the problem.
    """
    seen: set[str] = set()
    for d in definitions:
        if d.name in seen:
            raise ConfigError(f"segments: duplicate segment name {d.name!r}")
        seen.add(d.name)
    known = {check_webhook_name(n) for n in webhooks}  # also its secret's file name
    for d in definitions:
        if d.webhook and d.webhook not in known:
            close = difflib.get_close_matches(d.webhook, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"segment {d.name!r}: webhook {d.webhook!r} is not a configured destination "
                f"(segments.webhooks: {', '.join(sorted(known)) or 'none'}){hint}"
            )


def select_definitions(
    definitions: Sequence[SegmentDefinition], names: Iterable[str] | None
) -> list[SegmentDefinition]:
    """The definitions named in ``names`` (all when None); unknown names are errors."""
    if names is None:
        return list(definitions)
    by_name: Mapping[str, SegmentDefinition] = {d.name: d for d in definitions}
    out = []
    for n in names:
        if n not in by_name:
            close = difflib.get_close_matches(n, sorted(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"no segment named {n!r}{hint}")
        out.append(by_name[n])
    return out
