"""Segment definitions: typed, validated, never evaluated as code.

Three kinds of segment share one model, :class:`SegmentDefinition`:

* ``rfm``: members of named RFM segments (the ``rfm_segment`` column of the
  feature table, e.g. ``Champions``);
* ``predictive``: conditions on model scores and features, e.g.
  ``churn_probability >= 0.7`` and ``monetary_365d`` in the top 20 %, ``clv``
  in the top 10 %, ``p_alive < 0.3``, ``next_order_date`` within the next 7 days;
* ``rule``: conditions on features and profile traits and/or one recent-event
  rule (:class:`EventRule`), e.g. an add-to-cart in the last 24 h with no
  purchase since.

Conditions form a tiny language (:class:`Condition`): a comparison
``{field, op, value}`` or a group ``{all: [...]}`` / ``{any: [...]}``. They are
compiled to SQL with bound parameters (see ``activation._compile``); user text
is never evaluated. Field names are checked against the real columns of the
input tables when a build starts (:func:`activation.validate_definitions`).
"""

from __future__ import annotations

import re
from typing import Literal

from cip.features.segments import SEGMENTS
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "RFM_SEGMENT_NAMES",
    "OPS",
    "Condition",
    "EventRule",
    "SegmentDefinition",
    "Purpose",
    "slug",
]

#: The 11 named RFM segments of the feature layer (``features_default.rfm_segment``).
RFM_SEGMENT_NAMES: tuple[str, ...] = SEGMENTS

#: Comparison operators of the condition language.
OPS: tuple[str, ...] = (
    ">=",
    "<=",
    ">",
    "<",
    "==",
    "!=",
    "in",
    "not_in",
    "top_pct",
    "bottom_pct",
    "is_null",
    "not_null",
    "within_days",
)
#: the widest ``within_days`` window (ten years)
MAX_WITHIN_DAYS = 3660
Purpose = Literal["email", "sms", "push"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
Scalar = float | int | str | bool


def slug(name: str) -> str:
    """``"Potential Loyalist"`` -> ``"potential_loyalist"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Model):
    """A comparison ``{field, op, value}`` or a group ``{all: [...]}`` / ``{any: [...]}``.

    Operators: ``>= <= > < == !=`` (a scalar), ``in`` / ``not_in`` (a list),
    ``top_pct`` / ``bottom_pct`` (a percentage in (0, 100]: the row's value is
    among the highest / lowest ``value`` % of the non-null values of the whole
    snapshot; ties at the boundary are all included), ``is_null`` / ``not_null``
    (no value), ``within_days`` (a whole number of days ``N`` for a date or time
    field: ``N > 0`` keeps values in ``[as_of, as_of + N days)``, e.g.
    ``next_order_date`` within the next 7 days, a replenishment due; ``N < 0``
    keeps values in ``[as_of - |N| days, as_of)``, e.g. ``first_seen`` within
    the last 30 days). NULL values never satisfy a comparison.
    """

    field: str | None = None
    op: str | None = None
    value: Scalar | list[Scalar] | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        groups = [g for g in (self.all, self.any) if g is not None]
        if groups:
            if len(groups) > 1 or self.field or self.op or self.value is not None:
                raise ValueError("a condition is either {field, op, value} or one of {all}/{any}")
            if not groups[0]:
                raise ValueError("an all/any group needs at least one condition")
            return self
        if not self.field or not self.op:
            raise ValueError("a condition needs 'field' and 'op' (or an all/any group)")
        if not _FIELD.match(self.field):
            raise ValueError(f"invalid field name {self.field!r}")
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r}; expected one of {', '.join(OPS)}")
        v = self.value
        if self.op in ("is_null", "not_null"):
            if v is not None:
                raise ValueError(f"op {self.op} takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(v, list) or not v:
                raise ValueError(f"op {self.op} needs a non-empty list value")
        elif self.op == "within_days":
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or v != int(v)
                or v == 0
                or abs(v) > MAX_WITHIN_DAYS
            ):
                raise ValueError(
                    f"op within_days needs a whole number of days, not 0, at most "
                    f"{MAX_WITHIN_DAYS} either way (7: the next 7 days, -30: the last 30), got {v!r}"
                )
        elif self.op in ("top_pct", "bottom_pct"):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 100:
                raise ValueError(f"op {self.op} needs a percentage in (0, 100], got {v!r}")
        elif v is None or isinstance(v, list):
            raise ValueError(f"op {self.op} needs a single value")
        return self

    def leaves(self) -> list[Condition]:
        """Every comparison in this condition tree."""
        if self.all is not None or self.any is not None:
            return [leaf for c in (self.all or self.any or []) for leaf in c.leaves()]
        return [self]

    def describe(self) -> str:
        """Readable text, e.g. ``monetary_365d in top 20%`` (used as a member's reason)."""
        if self.all is not None or self.any is not None:
            word = " and " if self.all is not None else " or "
            return "(" + word.join(c.describe() for c in (self.all or self.any or [])) + ")"
        v = self.value
        if self.op in ("top_pct", "bottom_pct"):
            return f"{self.field} in {self.op.split('_')[0]} {v:g}%"
        if self.op in ("is_null", "not_null"):
            return f"{self.field} {'is unknown' if self.op == 'is_null' else 'is known'}"
        if self.op == "within_days":
            n = int(v)  # type: ignore[arg-type]
            return f"{self.field} within the {'next' if n > 0 else 'last'} {abs(n)} days"
        if self.op in ("in", "not_in"):
            items = ", ".join(str(x) for x in v)  # type: ignore[union-attr]
            return f"{self.field} {'in' if self.op == 'in' else 'not in'} [{items}]"
        return (
            f"{self.field} {self.op} {v:g}"
            if isinstance(v, float)
            else f"{self.field} {self.op} {v}"
        )


class EventRule(_Model):
    """A recent-event rule of a ``rule`` segment.

    A person matches when, within ``[as_of - within_hours, as_of)``, they have at
    least ``min_count`` events of ``event_type`` (per product category when
    ``by: category``, per item when ``by: item``) and no event of the types in
    ``without`` after the last matching event (``without_since: last_match``)
    or anywhere in the window (``without_since: window_start``). A ``purchase``
    in ``without`` also counts completed orders.
    """

    event_type: str
    within_hours: float = Field(gt=0, le=24 * 366)
    min_count: int = Field(1, ge=1)
    by: Literal["any", "category", "item"] = "any"
    without: list[str] = Field(default_factory=lambda: ["purchase"])
    without_since: Literal["last_match", "window_start"] = "last_match"

    @field_validator("event_type")
    @classmethod
    def _event(cls, v: str) -> str:
        if not _EVENT.match(v):
            raise ValueError(f"invalid event type {v!r}")
        return v

    @field_validator("without")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for e in v:
            cls._event(e)
        return v

    def describe(self) -> str:
        hours = self.within_hours
        window = f"{hours / 24:g} days" if hours >= 48 and hours % 24 == 0 else f"{hours:g} h"
        what = self.event_type if self.min_count == 1 else f"{self.min_count}+ {self.event_type}"
        per = {"any": "", "category": " in one category", "item": " of one item"}[self.by]
        text = f"{what}{per} in the last {window}"
        if self.without:
            since = "since" if self.without_since == "last_match" else "in that window"
            text += f", no {' or '.join(self.without)} {since}"
        return text


class SegmentDefinition(_Model):
    """One segment: its kind, its rule, the export purpose and an optional webhook.

    ``score`` names the column whose value becomes each member's score (a
    feature or a score column; for a rule with events, the default is the
    number of matching events). ``purpose`` gates exports and webhooks by
    consent; ``webhook`` names a destination of ``segments.webhooks``.
    """

    name: str
    kind: Literal["rfm", "predictive", "rule"]
    description: str | None = None
    rfm_segments: list[str] | None = None
    conditions: list[Condition] = Field(default_factory=list)
    match: Literal["all", "any"] = "all"
    events: EventRule | None = None
    score: str | None = None
    purpose: Purpose | None = None
    webhook: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"segment name {v!r} must be lower case letters, digits and _ (e.g. {slug(v)!r})"
            )
        return v

    @field_validator("score")
    @classmethod
    def _score(cls, v: str | None) -> str | None:
        if v is not None and not _FIELD.match(v):
            raise ValueError(f"invalid score field {v!r}")
        return v

    @model_validator(mode="after")
    def _kind(self) -> SegmentDefinition:
        if self.kind == "rfm":
            if not self.rfm_segments:
                raise ValueError(f"segment {self.name!r}: kind rfm needs rfm_segments")
            if self.events is not None:
                raise ValueError(f"segment {self.name!r}: kind rfm takes no events rule")
            unknown = [s for s in self.rfm_segments if s not in RFM_SEGMENT_NAMES]
            if unknown:
                raise ValueError(
                    f"segment {self.name!r}: unknown RFM segment(s) {unknown}; "
                    f"expected some of {', '.join(RFM_SEGMENT_NAMES)}"
                )
        elif self.rfm_segments is not None:
            raise ValueError(f"segment {self.name!r}: rfm_segments is only for kind rfm")
        if self.kind == "predictive" and (not self.conditions or self.events is not None):
            raise ValueError(f"segment {self.name!r}: kind predictive needs conditions, no events")
        if self.kind == "rule" and not self.conditions and self.events is None:
            raise ValueError(f"segment {self.name!r}: kind rule needs conditions or events")
        if self.webhook and not self.purpose:
            raise ValueError(
                f"segment {self.name!r}: a webhook needs a purpose (email, sms or push) "
                "so that only consenting profiles are sent"
            )
        return self

    def leaves(self) -> list[Condition]:
        return [leaf for c in self.conditions for leaf in c.leaves()]

    def fields(self) -> list[str]:
        """Column names the definition reads (conditions and score)."""
        names = [leaf.field for leaf in self.leaves() if leaf.field]
        if self.kind == "rfm":
            names.append("rfm_segment")
        if self.score:
            names.append(self.score)
        return list(dict.fromkeys(names))

    def describe(self) -> str:
        """The definition as one readable line."""
        if self.description:
            return self.description
        parts = []
        if self.kind == "rfm":
            parts.append("RFM segment " + " or ".join(self.rfm_segments or []))
        conds = [c.describe() for c in self.conditions]
        if len(conds) > 1 and self.match == "any":
            conds = ["(" + " or ".join(conds) + ")"]
        parts += conds
        if self.events is not None:
            parts.append(self.events.describe())
        return " and ".join(parts)
