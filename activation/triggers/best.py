"""``channel: best`` and ``send_at: best``: a send's channel and hour chosen per person.

The preferences are those ``cip measure preferences`` stored in
``channel_preferences`` (:mod:`cip.activation.measure.preferences`): each
person's channels in order of their response rate and their best send hour
(UTC), and the shop's default for persons with too few responses (or none
stored).

* :func:`choose_channel` walks the person's ranking (then the shop's, then the
  trigger's ``channels`` in order) and takes the first channel the person can
  be sent on: not suppressed, consent for the trigger's purpose on it, a
  contact for it. When none is allowed the person's first channel is kept and
  the policy decides (``no_consent`` / ``no_contact`` / ``suppressed``) with a
  reason naming every channel tried.
* :func:`best_send_time` is the next time at the person's best hour (at most a
  day ahead), or None when it is now, unknown, or inside quiet hours (quiet hours
  win: the message goes now and the policy applies them as usual).
"""

from __future__ import annotations

import datetime as dt

from cip.activation.measure.preferences import Preference
from cip.activation.policy import CONTACT, PersonState, PolicyConfig, quiet_until
from cip.activation.triggers.definitions import Trigger

__all__ = ["allowed_on", "choose_channel", "best_hour", "best_send_time"]


def allowed_on(trigger: Trigger, person: PersonState, channel: str) -> bool:
    """Whether the policy's consent checks let ``trigger`` message the person on ``channel``."""
    if person.erased or not person.known:
        return False
    if "*" in person.suppressed or channel in person.suppressed:
        return False
    if person.consent.get(trigger.purpose_of(channel)) is not True:
        return False
    contact = CONTACT.get(channel)
    return contact is None or bool(person.contacts.get(contact))


def choose_channel(
    trigger: Trigger,
    person: PersonState,
    pref: Preference | None,
    shop: Preference | None,
) -> tuple[str, str]:
    """``(channel, note)``: the person's best allowed channel among ``trigger.channels``.

    ``note`` says why, for the message's reason: ``best channel sms (person)``,
    ``... (shop default)``, ``fallback email (sms not allowed)``, or that no
    channel is allowed (the first candidate is returned; the policy refuses it).
    """
    own = pref is not None and pref.basis == "person"
    ranking = [*(pref.ranking if own and pref else ()), *(shop.ranking if shop else ())]
    order = [c for c in dict.fromkeys([*ranking, *trigger.channels]) if c in trigger.channels]
    basis = "person" if own else "shop default" if shop is not None else "no preferences"
    for i, ch in enumerate(order):
        if allowed_on(trigger, person, ch):
            if i == 0:
                return ch, f"best channel {ch} ({basis})"
            return ch, f"fallback {ch} ({', '.join(order[:i])} not allowed; {basis})"
    return order[0], f"channel best: no allowed channel among {', '.join(order)}"


def best_hour(pref: Preference | None, shop: Preference | None) -> int | None:
    """The person's best send hour (UTC), else the shop's, else None."""
    if pref is not None and pref.basis == "person" and pref.hour is not None:
        return pref.hour
    if shop is not None and shop.hour is not None:
        return shop.hour
    return None


def best_send_time(
    now: dt.datetime,
    hour: int | None,
    person: PersonState,
    policy: PolicyConfig,
    channel: str,
) -> dt.datetime | None:
    """When a ``send_at: best`` message should go: the next ``hour``:00 UTC after ``now``
    (naive UTC), or None to send now (the hour is now or unknown, or it falls in the
    person's quiet hours on a channel that keeps them)."""
    if hour is None or now.hour == hour:
        return None
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= now:
        at += dt.timedelta(days=1)
    if policy.channel(channel).quiet_hours and (
        quiet_until(at, person.timezone, policy.quiet_hours, shop_tz=policy.timezone) is not None
    ):
        return None
    return at
