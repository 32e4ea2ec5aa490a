"""Request and response models of the HTTP API (pydantic; they are the OpenAPI spec).

Inputs are bounded (``n <= 100``, id lists <= 1,000, strings <= 256 characters)
and reject unknown keys, so bad input is a 400 naming the field, never a 500.
Nullable fields are published as OpenAPI 3.0 ``nullable`` (BentoML keeps only
the first member of an ``anyOf``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

__all__ = [
    "MAX_IDS",
    "MAX_N",
    "MAX_EVENTS",
    "BlockRules",
    "RecommendRequest",
    "RecommendResponse",
    "ScoredItem",
    "SimilarItemsRequest",
    "SimilarItemsResponse",
    "ScoreRequest",
    "ScoreResponse",
    "CustomerScore",
    "SegmentsRequest",
    "SegmentsResponse",
    "SegmentInfo",
    "SegmentMembersRequest",
    "SegmentMembersResponse",
    "SegmentMember",
    "EventIn",
    "EventsRequest",
    "EventsResponse",
    "RejectedEvent",
    "ReloadRequest",
    "ReloadResponse",
    "ForgetRequest",
    "ForgetResponse",
    "ErrorResponse",
]

MAX_N = 100
MAX_IDS = 1000
MAX_EVENTS = 1000
MAX_LEN = 256


def _nullable(schema: dict[str, Any]) -> None:
    """Rewrite ``anyOf: [X, null]`` as OpenAPI 3.0 ``X`` + ``nullable: true``."""
    for prop in (schema.get("properties") or {}).values():
        alts = prop.get("anyOf")
        if alts and any(a.get("type") == "null" for a in alts):
            rest = [a for a in alts if a.get("type") != "null"]
            if len(rest) == 1:
                prop.pop("anyOf")
                prop.update(rest[0])
                prop["nullable"] = True


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_nullable)


class _Out(BaseModel):
    model_config = ConfigDict(json_schema_extra=_nullable)


def _id_text(v: Any) -> Any:
    """Ids may arrive as JSON numbers; they are ids, not quantities."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return v


Id = Annotated[str, BeforeValidator(_id_text), Field(min_length=1, max_length=MAX_LEN)]
Text = Annotated[str, Field(max_length=MAX_LEN)]


Names = Annotated[list[Text], Field(max_length=MAX_IDS)]


class BlockRules(_In):
    """Business rules of one request, merged over the block's rules from ``cip.yaml``.

    A field given here replaces the block's (``exclude_items`` lists are joined).
    """

    include_tags: Names | None = None
    exclude_tags: Names | None = None
    include_brands: Names | None = None
    exclude_brands: Names | None = None
    include_categories: Names | None = None
    exclude_categories: Names | None = None
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    in_stock_only: bool | None = None
    exclude_purchased: bool | None = None
    exclude_items: Annotated[list[Id], Field(max_length=MAX_IDS)] | None = None
    max_per_category: int | None = Field(None, ge=1, le=MAX_N)
    boost_field: Text | None = None
    #: > -1 (checked below: pydantic's ``gt`` would write a numeric exclusiveMinimum, which
    #: OpenAPI 3.0 does not allow; the document says it in 3.0's form)
    boost_weight: float | None = Field(
        None, json_schema_extra={"minimum": -1, "exclusiveMinimum": True}
    )

    @field_validator("boost_weight")
    @classmethod
    def _above_minus_one(cls, v: float | None) -> float | None:
        if v is not None and not v > -1:
            raise ValueError("boost_weight must be greater than -1")
        return v


class RecommendRequest(_In):
    """Who to recommend for; nothing known gives popular items.

    With ``block`` (a block name from ``blocks:`` in ``cip.yaml``) the block
    answers: ``items`` are the page's context items (product page, cart), ``k``
    the number wanted (default: the block's ``k``; ``n`` when given) and
    ``rules`` apply on top of the block's rules. Without ``block``, ``items``,
    ``k`` and ``rules`` are not accepted.
    """

    customer_id: Id | None = None
    anonymous_id: Id | None = None
    recent_items: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    n: int = Field(10, ge=1, le=MAX_N)
    exclude_purchased: bool = True
    category: Text | None = None
    in_stock_only: bool = True
    block: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    items: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    k: int | None = Field(None, ge=1, le=MAX_N)
    rules: BlockRules | None = None


class ScoredItem(_Out):
    item_id: str
    score: float
    #: block answers only: the tier that scored the item (the block's kind or a fallback)
    source: str | None = None


class RecommendResponse(_Out):
    items: list[ScoredItem]
    strategy: Literal["personalized", "session", "popular", "block"]
    model_version: str | None = None
    #: block answers only: the block asked for
    block: str | None = None
    #: block answers only: the first fallback that filled a place
    #: (``popular_category``, ``popular``, ``catalogue``), null when the block filled all
    fallback: str | None = None


class SimilarItemsRequest(_In):
    item_id: Id
    n: int = Field(10, ge=1, le=MAX_N)
    in_stock_only: bool = True


class SimilarItemsResponse(_Out):
    item_id: str
    items: list[ScoredItem]
    strategy: Literal["similar", "popular"]
    model_version: str | None = None


class ScoreRequest(_In):
    customer_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS)


class CustomerScore(_Out):
    customer_id: str
    unified_id: str
    churn_probability: float | None = None
    purchase_probability: float | None = None
    rfm_segment: str | None = None
    #: Predicted net revenue in the CLV champion's horizon (null: no CLV champion).
    clv: float | None = None
    #: Expected orders in that horizon.
    expected_orders: float | None = None
    #: Probability that the customer is still active.
    p_alive: float | None = None
    #: Expected date of the next order if the customer is alive (YYYY-MM-DD).
    next_order_date: str | None = None
    clv_model_version: str | None = None
    reasons: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    model_version: str | None = None
    as_of: str | None = None


class ScoreResponse(_Out):
    scores: list[CustomerScore]
    #: Ids without a score (never seen, not scored, or erased).
    unknown: list[str]
    #: Ids of people who refused profiling: never scored.
    no_consent: list[str] = Field(default_factory=list)
    as_of: str | None = None


class SegmentsRequest(_In):
    as_of: Text | None = None


class SegmentInfo(_Out):
    segment: str
    as_of: str
    members: int
    entered: int | None = None
    exited: int | None = None
    kind: str | None = None
    purpose: str | None = None
    description: str | None = None


class SegmentsResponse(_Out):
    segments: list[SegmentInfo]


class SegmentMembersRequest(_In):
    segment: Text = Field(min_length=1)
    limit: int = Field(100, ge=1, le=MAX_IDS)
    cursor: Annotated[str, Field(max_length=2048)] | None = None
    purpose: Literal["email", "sms", "push"] | None = None


class SegmentMember(_Out):
    unified_id: str
    customer_id: str | None = None
    email: str | None = None
    phone: str | None = None
    score: float | None = None
    reasons: list[Any] = Field(default_factory=list)
    model_version: str | None = None


class SegmentMembersResponse(_Out):
    segment: str
    as_of: str
    members: list[SegmentMember]
    next_cursor: str | None = None


class EventIn(BaseModel):
    """One event; semantic problems reject the event (not the batch) with a reason."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_nullable)

    event_type: Text
    ts: Text | None = None
    event_id: Id | None = None
    customer_id: Id | None = None
    anonymous_id: Id | None = None
    session_id: Id | None = None
    item_id: Id | None = None
    order_id: Id | None = None
    channel: Text | None = None
    rating: float | None = None
    properties: dict[str, Any] | None = None


class EventsRequest(_In):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class RejectedEvent(_Out):
    index: int
    reason: str


class EventsResponse(_Out):
    accepted: int
    rejected: list[RejectedEvent]


class ReloadRequest(_In):
    force: bool = True


class ReloadResponse(_Out):
    reloaded: bool
    model_version: str | None = None
    store_changed: bool = False
    model_changed: bool = False
    seconds: float
    #: Problems met while reloading (the previous state keeps serving).
    warnings: list[str] = Field(default_factory=list)


class ForgetRequest(_In):
    unified_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    customer_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    anonymous_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)

    @field_validator("unified_ids", "customer_ids", "anonymous_ids")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))


class ForgetResponse(_Out):
    identifiers: int
    sessions_deleted: int


class ErrorResponse(_Out):
    error: str
