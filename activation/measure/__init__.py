"""Measuring what works: message facts, attribution and incremental lift.

* :mod:`~cip.activation.measure.facts` - the ``message_events`` table (fed by
  the trigger log and providers' exports) read per person, machine opens flagged;
* :mod:`~cip.activation.measure.attribution` - orders (web, app, store)
  credited to the messages before them: last touch, first touch, messages
  before conversion;
* :mod:`~cip.activation.measure.lift` - treatment vs control per campaign with
  95 % intervals (Newcombe for conversion, Welch for means) and the minimum
  detectable effect;
* :mod:`~cip.activation.measure.preferences` - best channel and send hour per
  person from their clicks and purchases (the shop's default below 5 responses).
"""

from cip.activation.measure.attribution import (
    ATTRIBUTION_DIMENSIONS,
    Attribution,
    attribute_orders,
    person_orders,
    summarise_attribution,
)
from cip.activation.measure.facts import (
    MACHINE_OPEN_SECONDS,
    ensure_message_events,
    message_facts,
    sync_trigger_log,
)
from cip.activation.measure.lift import (
    CONVERSION_METHOD,
    MEAN_METHOD,
    CampaignLift,
    MetricLift,
    campaign_outcomes,
    lift,
    mde_proportion,
    newcombe_interval,
    welch_interval,
    wilson_interval,
)
from cip.activation.measure.preferences import (
    SHOP_DEFAULT,
    Preference,
    best_channel_and_hour,
    load_preferences,
    write_preferences,
)

__all__ = [
    "ATTRIBUTION_DIMENSIONS",
    "Attribution",
    "attribute_orders",
    "person_orders",
    "summarise_attribution",
    "MACHINE_OPEN_SECONDS",
    "ensure_message_events",
    "message_facts",
    "sync_trigger_log",
    "CONVERSION_METHOD",
    "MEAN_METHOD",
    "CampaignLift",
    "MetricLift",
    "campaign_outcomes",
    "lift",
    "mde_proportion",
    "newcombe_interval",
    "welch_interval",
    "wilson_interval",
    "best_channel_and_hour",
    "SHOP_DEFAULT",
    "Preference",
    "load_preferences",
    "write_preferences",
]
