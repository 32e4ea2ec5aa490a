"""One messaging policy: consent, erasure, suppression, control groups, quiet hours, caps.

Every message (from a trigger, later from segment webhooks too) goes through
:func:`decide`, a pure function over explicit inputs: the message, the
person's state (consent per purpose, contacts, time zone, erased, suppressed
channels), their recent sends on the channel, the clock, the policy and the
workspace secret. The checks run in this order and the first that applies
is the decision:

1. ``suppressed`` - the person is erased, or on a suppression list for the channel;
2. ``no_consent`` - no consent for the message's purpose (no statement = no);
3. ``no_contact`` - consent, but no contact identifier for the channel;
4. ``held_out`` - in the global control group or the trigger's control group;
5. ``deferred`` - inside quiet hours in the person's time zone: to be decided
   again at the end of the quiet window (``deferred_until``), never dropped;
6. ``capped`` - the frequency cap of the channel is reached (across all triggers);
7. ``sent`` - the message may go.

Control groups are assigned by a keyed hash: ``HMAC-SHA256(secret, scope ||
":" || unified_id)`` read as a number in [0, 100) (the *bucket*); a person is
held out when the bucket is below the percentage. The same person always gets
the same bucket for a scope (``global``, ``trigger:<name>``), and anyone with
the secret can recompute it: stable and auditable. Held-out persons are checked
before caps and quiet hours, so the control group is drawn from exactly the
persons who could have received the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CHANNELS",
    "Channel",
    "Duration",
    "parse_duration",
    "CONTACT",
    "DECISIONS",
    "DecisionKind",
    "QuietHours",
    "ChannelPolicy",
    "PolicyConfig",
    "PersonState",
    "MessageRequest",
    "Decision",
    "control_bucket",
    "in_control",
    "quiet_until",
    "cap_reached",
    "decide",
]

#: Message channels; email, sms and push gate on the consent purpose of the same name.
CHANNELS: tuple[str, ...] = ("email", "sms", "push", "webhook")
Channel = Literal["email", "sms", "push", "webhook"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> dt.timedelta:
    """``"30m"`` -> 30 minutes; units ``s m h d w``; a bad value raises ``ValueError``."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"invalid duration {text!r}; expected a number and a unit: 30m, 2h, 2d")
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _duration(v: str) -> str:
    parse_duration(v)
    return v.strip()


#: A duration kept as written (``30m``); :func:`parse_duration` gives its ``timedelta``.
Duration = Annotated[str, AfterValidator(_duration)]

#: The contact identifier each channel needs (webhook: the shop's customer id or none).
CONTACT: dict[str, str | None] = {
    "email": "email",
    "sms": "phone",
    "push": "customer_id",
    "webhook": None,
}
DECISIONS: tuple[str, ...] = (
    "sent",
    "held_out",
    "capped",
    "deferred",
    "no_consent",
    "no_contact",
    "suppressed",
)
DecisionKind = Literal[
    "sent", "held_out", "capped", "deferred", "no_consent", "no_contact", "suppressed"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietHours(_Model):
    """A daily quiet window in local time, ``start`` to ``end`` (may span midnight)."""

    start: dt.time = dt.time(21, 0)
    end: dt.time = dt.time(8, 0)

    def contains(self, t: dt.time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class ChannelPolicy(_Model):
    """Frequency cap of one channel (``cap`` messages per ``per``; no cap when ``cap`` is
    null) and whether quiet hours apply to it."""

    cap: int | None = Field(1, ge=1)
    per: Duration = "16h"
    quiet_hours: bool = True

    @property
    def per_delta(self) -> dt.timedelta:
        return parse_duration(self.per)


def _default_channels() -> dict[str, ChannelPolicy]:
    return {
        "email": ChannelPolicy(cap=1, per="16h"),
        "sms": ChannelPolicy(cap=1, per="24h"),
        "push": ChannelPolicy(cap=2, per="24h"),
        "webhook": ChannelPolicy(cap=None, quiet_hours=False),
    }


class PolicyConfig(_Model):
    """The ``policy:`` section of ``cip.yaml``.

    ``timezone``: the shop's IANA time zone, used when a person has none.
    ``control_pct``: the global control group (held out of every trigger).
    ``channels``: per-channel caps and quiet-hours switch; channels not listed
    keep their defaults (email 1 per 16 h, sms 1 per 24 h, push 2 per 24 h,
    webhook uncapped and outside quiet hours).
    """

    timezone: str = "UTC"
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    control_pct: float = Field(0.0, ge=0, le=100)
    channels: dict[Channel, ChannelPolicy] = Field(default_factory=_default_channels)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name like Europe/London)") from None
        return v

    @field_validator("channels")
    @classmethod
    def _fill(cls, v: dict[str, ChannelPolicy]) -> dict[str, ChannelPolicy]:
        return {**_default_channels(), **v}

    def channel(self, name: str) -> ChannelPolicy:
        return self.channels.get(name) or ChannelPolicy(cap=None)


@dataclass(frozen=True)
class PersonState:
    """What the policy needs to know about a person (no profile: everything empty).

    ``consent`` maps a purpose to True/False (missing: no statement = no consent);
    ``contacts`` maps an identifier type to the person's value (or None);
    ``suppressed`` holds the channels the person is suppressed on (``*``: all).
    """

    unified_id: str
    consent: Mapping[str, bool] = field(default_factory=dict)
    contacts: Mapping[str, str | None] = field(default_factory=dict)
    timezone: str | None = None
    erased: bool = False
    suppressed: frozenset[str] = frozenset()
    known: bool = True  # False: no profile row (identity has not seen the person)


@dataclass(frozen=True)
class MessageRequest:
    """The message asking to go: which trigger, on which channel, for which purpose."""

    trigger: str
    channel: str
    purpose: str
    control_pct: float = 0.0


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one message, with the reason in words."""

    kind: DecisionKind
    reason: str
    control: bool = False  # True when held out (global or trigger control group)
    deferred_until: dt.datetime | None = None


def control_bucket(secret: bytes, unified_id: str, scope: str = "global") -> float:
    """The person's stable position in [0, 100) for ``scope`` (HMAC-SHA256 with ``secret``)."""
    digest = hmac.new(secret, f"{scope}:{unified_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def in_control(secret: bytes, unified_id: str, pct: float, scope: str = "global") -> bool:
    """Whether the person is in the ``pct`` % control group of ``scope``."""
    return pct > 0 and control_bucket(secret, unified_id, scope) < pct


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    for n in (name, fallback):
        if n:
            try:
                return ZoneInfo(n)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(
    now: dt.datetime, tz: str | None, quiet: QuietHours | None, *, shop_tz: str = "UTC"
) -> dt.datetime | None:
    """The end of the quiet window containing ``now`` (naive UTC in, naive UTC out), or None.

    ``tz`` is the person's IANA time zone (an unknown or missing zone falls back
    to ``shop_tz``). The window's end is a local wall-clock time, so DST changes
    are handled by the zone rules.
    """
    if quiet is None:
        return None
    zone = _zone(tz, shop_tz)
    local = now.replace(tzinfo=dt.UTC).astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    end_day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        end_day += dt.timedelta(days=1)
    end_local = dt.datetime.combine(end_day, quiet.end, tzinfo=zone)
    return end_local.astimezone(dt.UTC).replace(tzinfo=None)


def cap_reached(
    recent_sends: Iterable[dt.datetime], now: dt.datetime, policy: ChannelPolicy
) -> int | None:
    """The number of sends inside the cap window when the cap is reached, else None."""
    if policy.cap is None:
        return None
    start = now - policy.per_delta
    n = sum(1 for t in recent_sends if start < t <= now)
    return n if n >= policy.cap else None


def decide(
    request: MessageRequest,
    person: PersonState,
    recent_sends: Iterable[dt.datetime],
    now: dt.datetime,
    policy: PolicyConfig,
    secret: bytes,
) -> Decision:
    """The policy's decision for one message (see the module docstring for the order).

    Args:
        request: the message (trigger, channel, purpose, the trigger's control share).
        person: the person's consent, contacts, time zone, erasure and suppressions.
        recent_sends: when the person was sent a message on ``request.channel``
            (decision ``sent``, any trigger), naive UTC.
        now: the decision time, naive UTC.
        policy: the workspace's policy.
        secret: the workspace secret keying the control-group hash.
    """
    ch = request.channel
    if person.erased:
        return Decision("suppressed", "person erased")
    if "*" in person.suppressed or ch in person.suppressed:
        which = "all channels" if "*" in person.suppressed else ch
        return Decision("suppressed", f"on the suppression list for {which}")
    if not person.known:
        return Decision("no_consent", "no profile for the person (no consent statement)")
    if person.consent.get(request.purpose) is not True:
        return Decision("no_consent", f"no consent for {request.purpose}")
    contact = CONTACT.get(ch)
    if contact is not None and not person.contacts.get(contact):
        return Decision("no_contact", f"no {contact} for channel {ch}")
    for pct, scope, label in (
        (policy.control_pct, "global", "global control group"),
        (request.control_pct, f"trigger:{request.trigger}", f"control group of {request.trigger}"),
    ):
        if in_control(secret, person.unified_id, pct, scope):
            b = control_bucket(secret, person.unified_id, scope)
            return Decision("held_out", f"{label} ({pct:g} %, bucket {b:.2f})", control=True)
    chp = policy.channel(ch)
    if chp.quiet_hours:
        until = quiet_until(now, person.timezone, policy.quiet_hours, shop_tz=policy.timezone)
        if until is not None:
            zone = person.timezone or policy.timezone
            return Decision("deferred", f"quiet hours in {zone}", deferred_until=until)
    n = cap_reached(recent_sends, now, chp)
    if n is not None:
        return Decision("capped", f"{n} {ch} message(s) in the last {chp.per} (cap {chp.cap})")
    return Decision("sent", "eligible")
