"""Trigger definitions (``triggers:`` and ``destinations:`` in ``cip.yaml``), validated.

A trigger is a *source* (``when``) and a journey of *steps*. The short form ::

    - name: abandoned_cart
      when: {event: add_to_cart}
      wait: 30m
      unless: {event: [checkout, purchase]}
      channel: email
      content: {cart: true, recommend: 4}
      destination: crm
      control_pct: 10

is the journey ``wait 30m -> unless checkout/purchase -> send``. Longer
journeys list their steps (each a one-key mapping); a ``send`` step inherits
the trigger's ``channel``, ``content`` and ``destination`` unless it sets its
own::

      steps:
        - send: {}
        - wait: 2d
        - unless: {event: purchase}
        - send: {channel: sms}

Sources (``when``): an event type with optional property filters; a catalog
change (``price_drop`` with ``min_pct``, ``back_in_stock``) matched against
persons who showed interest in the item in the last ``lookback_days`` days and
did not buy it; a segment ``entered`` / ``exited``; a score crossing ``above``
/ ``below`` a threshold; a prediction (``next_order_due``).

Unknown keys are rejected; :func:`validate_triggers` names the trigger and the
key in every error. Durations are ``<n>s|m|h|d|w`` (``30m``, ``2h``, ``2d``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from cip.activation.policy import CHANNELS, Channel, Duration, parse_duration
from cip.activation.webhooks import WebhookDestination
from cip.profiles.errors import ConfigError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "CHANNELS",
    "Channel",
    "Duration",
    "parse_duration",
    "EventWhen",
    "CatalogWhen",
    "SegmentWhen",
    "ScoreWhen",
    "PredictedWhen",
    "When",
    "Unless",
    "Content",
    "SendSpec",
    "SendChannel",
    "SendAt",
    "BestChannel",
    "SendStep",
    "WaitStep",
    "UnlessStep",
    "Step",
    "Trigger",
    "Destination",
    "validate_triggers",
    "check_triggers",
]

#: A webhook destination (the same shape as ``segments.webhooks`` receivers).
Destination = WebhookDestination

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EVENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
Scalar = str | int | float | bool


def _event_list(v: Any) -> list[str]:
    items = [v] if isinstance(v, str) else list(v or [])
    if not items:
        raise ValueError("needs at least one event type")
    bad = [e for e in items if not isinstance(e, str) or not _EVENT.match(e)]
    if bad:
        raise ValueError(f"invalid event types {bad}")
    return items


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventWhen(_Model):
    """Fires on an event of one of ``event`` types whose properties match ``properties``.

    ``properties`` maps a property name to a value or a list of allowed values;
    ``item_id`` is matched like a property.
    """

    event: list[str]
    properties: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _events(cls, v: Any) -> list[str]:
        return _event_list(v)


class CatalogWhen(_Model):
    """Fires on a catalog change for persons interested in the item and who did not buy it.

    Interest: an event of ``interest`` types on the item within ``lookback_days``
    before the change; a purchase of the item after that interest excludes the person.
    """

    catalog: Literal["price_drop", "back_in_stock"]
    min_pct: float = Field(10.0, gt=0, le=100)
    lookback_days: int = Field(30, ge=1, le=3650)
    interest: list[str] = Field(
        default_factory=lambda: ["product_view", "add_to_cart", "add_to_wishlist"]
    )

    @field_validator("interest", mode="before")
    @classmethod
    def _interest(cls, v: Any) -> list[str]:
        return _event_list(v)


class SegmentWhen(_Model):
    """Fires when a person enters (or exits) a segment at a build."""

    segment: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    change: Literal["entered", "exited"] = "entered"


class ScoreWhen(_Model):
    """Fires when a score crosses a threshold (``above`` or ``below``, exactly one)."""

    score: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one(self) -> ScoreWhen:
        if (self.above is None) == (self.below is None):
            raise ValueError("a score source needs exactly one of above / below")
        return self


class PredictedWhen(_Model):
    """Fires when a prediction comes due (``next_order_due``: the predicted next order date
    is within ``within_days`` days)."""

    predicted: Literal["next_order_due"]
    within_days: int = Field(0, ge=0, le=365)


def _kind_of(*keys: str) -> Any:
    """A discriminator: the one of ``keys`` a mapping (or a model's fields) has, else None."""

    def kind(v: Any) -> str | None:
        have = v.keys() if isinstance(v, Mapping) else type(v).model_fields
        found = [k for k in keys if k in have]
        return found[0] if len(found) == 1 else None

    return kind


When = Annotated[
    Annotated[EventWhen, Tag("event")]
    | Annotated[CatalogWhen, Tag("catalog")]
    | Annotated[SegmentWhen, Tag("segment")]
    | Annotated[ScoreWhen, Tag("score")]
    | Annotated[PredictedWhen, Tag("predicted")],
    Discriminator(
        _kind_of("event", "catalog", "segment", "score", "predicted"),
        custom_error_type="when",
        custom_error_message="needs exactly one of event, catalog, segment, score, predicted",
    ),
]


class Unless(_Model):
    """Cancels the journey when the person had one of these events since it started."""

    event: list[str]

    @field_validator("event", mode="before")
    @classmethod
    def _events(cls, v: Any) -> list[str]:
        return _event_list(v)


class Content(_Model):
    """What a message carries: the cart's items, the catalog item, ``recommend`` recommendations."""

    cart: bool = False
    item: bool = True  # catalog triggers: the item that changed
    recommend: int = Field(0, ge=0, le=50)


#: A send's channel: one channel, or ``best`` (the person's best, see :mod:`.best`).
SendChannel = Literal["email", "sms", "push", "webhook", "best"]
#: When a send goes: ``now`` (as soon as the journey reaches it) or ``best`` (the person's
#: best send hour, within a day).
SendAt = Literal["now", "best"]
#: Channels ``channel: best`` may choose from (a webhook has no person to prefer it).
BestChannel = Literal["email", "sms", "push"]


class SendSpec(_Model):
    """A send step's own channel / content / destination / send_at (each defaults to the
    trigger's)."""

    channel: SendChannel | None = None
    content: Content | None = None
    destination: str | None = None
    send_at: SendAt | None = None


class SendStep(_Model):
    send: SendSpec

    @field_validator("send", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return {} if v is None or v is True else v


class WaitStep(_Model):
    wait: Duration

    @property
    def delta(self) -> dt.timedelta:
        return parse_duration(self.wait)


class UnlessStep(_Model):
    unless: Unless


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[UnlessStep, Tag("unless")],
    Discriminator(
        _kind_of("send", "wait", "unless"),
        custom_error_type="step",
        custom_error_message="a step is one of {send: ...}, {wait: 2d}, {unless: {event: ...}}",
    ),
]


class Trigger(_Model):
    """One trigger: a source (``when``) and a journey (short form or ``steps``).

    ``reentry``: how long after a journey's start the same person cannot start
    another journey of this trigger (``never``: once per person). ``control_pct``:
    the share of persons held out (deterministic by person; see ``activation.policy``).
    ``purpose``: the consent purpose gating the messages (default: the channel;
    ``personalization`` for the webhook channel).

    ``channel: best`` sends on the person's best channel (``cip measure
    preferences``; the shop's default for persons with too few responses) among
    ``channels``, falling back, in the person's order, to the next channel they
    consented to and can be reached on. ``send_at: best`` defers a send to the
    person's best hour (UTC) within the next day, unless that hour is in quiet
    hours (then it goes now, the policy deciding as usual).
    """

    name: str
    when: When
    wait: Duration | None = None
    unless: Unless | None = None
    steps: list[Step] | None = None
    channel: SendChannel = "email"
    channels: list[BestChannel] = Field(default_factory=lambda: ["email", "sms", "push"])
    send_at: SendAt = "now"
    content: Content = Field(default_factory=Content)
    destination: str | None = None
    control_pct: float = Field(0.0, ge=0, le=100)
    purpose: Literal["email", "sms", "push", "personalization", "profiling"] | None = None
    reentry: Duration | Literal["never"] = "1d"
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"invalid trigger name {v!r}: lowercase letters, digits and _")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Trigger:
        if self.steps is not None:
            if self.wait is not None or self.unless is not None:
                raise ValueError("use either wait/unless or steps, not both")
            if not any(isinstance(s, SendStep) for s in self.steps):
                raise ValueError("steps: a journey needs at least one send step")
        w = self.when
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: list each of email, sms, push at most once")
        if (
            isinstance(w, CatalogWhen)
            and w.catalog == "back_in_stock"
            and "min_pct" in w.model_fields_set
        ):
            raise ValueError("when.min_pct applies to price_drop only")
        return self

    def plan(self) -> list[SendStep | WaitStep | UnlessStep]:
        """The journey as steps, send steps resolved against the trigger's defaults."""
        raw: list[Any] = list(self.steps) if self.steps is not None else []
        if self.steps is None:
            if self.wait is not None:
                raw.append(WaitStep(wait=self.wait))
            if self.unless is not None:
                raw.append(UnlessStep(unless=self.unless))
            raw.append(SendStep(send=SendSpec()))
        out: list[SendStep | WaitStep | UnlessStep] = []
        for s in raw:
            if isinstance(s, SendStep):
                spec = SendSpec(
                    channel=s.send.channel or self.channel,
                    content=s.send.content or self.content,
                    destination=s.send.destination or self.destination,
                    send_at=s.send.send_at or self.send_at,
                )
                s = SendStep(send=spec)
            out.append(s)
        return out

    def purpose_of(self, channel: str) -> str:
        """The consent purpose a message of this trigger on ``channel`` needs."""
        if self.purpose is not None:
            return self.purpose
        return "personalization" if channel == "webhook" else channel

    @property
    def reentry_delta(self) -> dt.timedelta | None:
        """``None`` for ``never`` (once per person)."""
        return None if self.reentry == "never" else parse_duration(self.reentry)

    def event_types(self) -> set[str]:
        """Event types this trigger reads (source, unless, interest, cart content)."""
        types: set[str] = set()
        if isinstance(self.when, EventWhen):
            types.update(self.when.event)
        if isinstance(self.when, CatalogWhen):
            types.update(self.when.interest)
            types.add("purchase")
        for s in self.plan():
            if isinstance(s, UnlessStep):
                types.update(s.unless.event)
            if isinstance(s, SendStep) and s.send.content and s.send.content.cart:
                types.update(("add_to_cart", "remove_from_cart", "purchase", "checkout"))
        return types


def _loc(err: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for p in (str(x) for x in err["loc"] if not str(x).startswith("function-")):
        if not parts or parts[-1] != p:  # a step's tag repeats its key: steps.1.send.send
            parts.append(p)
    return ".".join(parts)


def validate_triggers(
    raw: Sequence[Any], destinations: Mapping[str, Any] | None = None
) -> list[Trigger]:
    """Validate ``triggers:`` (a list of mappings or :class:`Trigger`) into triggers.

    Raises:
        ConfigError: one line naming the trigger (by name, else by position) and the key.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ConfigError("triggers: must be a list of trigger definitions")
    out: list[Trigger] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
        label = f"trigger {name!r}" if isinstance(name, str) else f"trigger #{i + 1}"
        try:
            out.append(item if isinstance(item, Trigger) else Trigger.model_validate(item))
        except ValidationError as exc:
            msgs = []
            for err in exc.errors():
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key"
                loc = _loc(err)
                msgs.append(f"{loc}: {msg}" if loc else msg)
            raise ConfigError(f"{label}: " + "; ".join(msgs)) from None
    check_triggers(out, destinations)
    return out


def check_triggers(triggers: Sequence[Trigger], destinations: Mapping[str, Any] | None) -> None:
    """Cross-checks: unique names; webhooks have a destination; with ``destinations``
    (None: not checked), every destination named is configured."""
    names = [t.name for t in triggers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"triggers: duplicate trigger names {dup}")
    known = set(destinations or {})
    for t in triggers:
        for i, s in enumerate(t.plan()):
            if not isinstance(s, SendStep):
                continue
            key = "destination" if t.steps is None else f"steps.{i}.send.destination"
            dest = s.send.destination
            if destinations is not None and dest is not None and dest not in known:
                raise ConfigError(
                    f"trigger {t.name!r}: {key}: unknown destination {dest!r} "
                    f"(destinations: {', '.join(sorted(known)) or 'none'})"
                )
            if s.send.channel == "webhook" and dest is None:
                raise ConfigError(f"trigger {t.name!r}: {key}: channel webhook needs a destination")
