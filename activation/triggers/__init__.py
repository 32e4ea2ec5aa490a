"""Real-time triggers: definitions, journey starts, durable timers, decided messages.

Typical use (the ``cip triggers`` commands will do the same)::

    from cip.activation.triggers import TriggerEngine, validate_triggers
    engine = TriggerEngine(store, validate_triggers(cfg_triggers), secret=salt, policy=policy)
    report = engine.process(now, events=batch)      # events with unified_id resolved

Tables written: ``trigger_events``, ``trigger_timers``, ``messages``,
``product_history``, ``product_changes``, ``message_suppressions``.
"""

from cip.activation.triggers._people import add_suppression, load_people, recent_sends
from cip.activation.triggers._tables import ensure_trigger_tables
from cip.activation.triggers.catalog import (
    catalog_changes_since,
    current_catalog,
    diff_catalog,
    products_snapshot,
    record_catalog,
    snapshot_catalog,
)
from cip.activation.triggers.content import (
    ContentProvider,
    ContentRequest,
    ContentResult,
    ContentUnavailable,
)
from cip.activation.triggers.definitions import (
    CatalogWhen,
    Content,
    Destination,
    EventWhen,
    PredictedWhen,
    ScoreWhen,
    SegmentWhen,
    Trigger,
    check_triggers,
    validate_triggers,
)
from cip.activation.triggers.engine import BatchReport, TriggerEngine, message_id, process_batch
from cip.activation.triggers.report import explain, message_log, trigger_status
from cip.activation.triggers.sources import events_from_store, normalise_events

__all__ = [
    "BatchReport",
    "CatalogWhen",
    "Content",
    "ContentProvider",
    "ContentRequest",
    "ContentResult",
    "ContentUnavailable",
    "Destination",
    "EventWhen",
    "PredictedWhen",
    "ScoreWhen",
    "SegmentWhen",
    "Trigger",
    "TriggerEngine",
    "add_suppression",
    "catalog_changes_since",
    "check_triggers",
    "current_catalog",
    "diff_catalog",
    "ensure_trigger_tables",
    "events_from_store",
    "explain",
    "load_people",
    "message_id",
    "message_log",
    "normalise_events",
    "process_batch",
    "products_snapshot",
    "recent_sends",
    "record_catalog",
    "snapshot_catalog",
    "trigger_status",
    "validate_triggers",
]
