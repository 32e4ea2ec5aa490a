"""Tables of the trigger engine, with primary keys (the idempotency guarantees live here).

* ``trigger_events`` - the events the engine has seen (only the types some
  trigger reads), one row per ``event_id``: the memory ``unless`` checks,
  cart contents and catalog interest read.
* ``trigger_timers`` - one durable journey per (trigger, person, window key):
  the next step to run, when (``due_at``), the journey's start (``anchor_ts``)
  and its state (``waiting`` | ``done`` | ``cancelled``).
* ``messages`` - one row per message id (hash of trigger, person, window key
  and step): the policy's decision, control flag, items, reason, times.
* ``product_history`` - versioned catalog facts (``valid_from`` / ``valid_to``;
  the open version has ``valid_to`` null) and ``product_changes`` the changes
  derived from it (price drops, restocks, ...).
* ``message_suppressions`` - suppression lists: keyed hashes of contact
  identifiers per channel (``*`` = every channel).

The DDL is plain SQL both DuckDB and PostgreSQL accept.
"""

from __future__ import annotations

from cip.profiles.store import Store

__all__ = [
    "EVENTS",
    "TIMERS",
    "MESSAGES",
    "HISTORY",
    "CHANGES",
    "SUPPRESSIONS",
    "ensure_trigger_tables",
]

EVENTS = "trigger_events"
TIMERS = "trigger_timers"
MESSAGES = "messages"
HISTORY = "product_history"
CHANGES = "product_changes"
SUPPRESSIONS = "message_suppressions"

_DDL: dict[str, str] = {
    EVENTS: (
        "event_id VARCHAR PRIMARY KEY, ts TIMESTAMP NOT NULL, event_type VARCHAR NOT NULL, "
        "unified_id VARCHAR NOT NULL, item_id VARCHAR, properties VARCHAR, received_at TIMESTAMP"
    ),
    TIMERS: (
        '"trigger" VARCHAR NOT NULL, unified_id VARCHAR NOT NULL, window_key VARCHAR NOT NULL, '
        "step BIGINT NOT NULL, due_at TIMESTAMP NOT NULL, anchor_ts TIMESTAMP NOT NULL, "
        "state VARCHAR NOT NULL, reason VARCHAR, context VARCHAR, created_at TIMESTAMP, "
        'updated_at TIMESTAMP, PRIMARY KEY ("trigger", unified_id, window_key)'
    ),
    MESSAGES: (
        'message_id VARCHAR PRIMARY KEY, "trigger" VARCHAR NOT NULL, unified_id VARCHAR NOT NULL, '
        "window_key VARCHAR NOT NULL, step BIGINT NOT NULL, channel VARCHAR NOT NULL, "
        "destination VARCHAR, purpose VARCHAR, decision VARCHAR NOT NULL, control BOOLEAN, "
        "reason VARCHAR, items VARCHAR, context VARCHAR, model_versions VARCHAR, "
        "decided_at TIMESTAMP NOT NULL, deferred_until TIMESTAMP, sent_at TIMESTAMP"
    ),
    HISTORY: (
        "item_id VARCHAR NOT NULL, title VARCHAR, category VARCHAR, price DOUBLE, "
        "in_stock BOOLEAN, valid_from TIMESTAMP NOT NULL, valid_to TIMESTAMP, "
        "PRIMARY KEY (item_id, valid_from)"
    ),
    CHANGES: (
        "item_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, "
        "old_price DOUBLE, new_price DOUBLE, pct DOUBLE, PRIMARY KEY (item_id, ts, kind)"
    ),
    SUPPRESSIONS: (
        "channel VARCHAR NOT NULL, identifier_type VARCHAR NOT NULL, "
        "identifier_hash VARCHAR NOT NULL, reason VARCHAR, added_at TIMESTAMP, "
        "PRIMARY KEY (channel, identifier_type, identifier_hash)"
    ),
}
_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS ix_{EVENTS}_person ON {EVENTS} (unified_id, ts)",
    f"CREATE INDEX IF NOT EXISTS ix_{EVENTS}_item ON {EVENTS} (item_id, ts)",
    f"CREATE INDEX IF NOT EXISTS ix_{TIMERS}_due ON {TIMERS} (state, due_at)",
    f"CREATE INDEX IF NOT EXISTS ix_{MESSAGES}_person ON {MESSAGES} (unified_id, channel)",
)


def ensure_trigger_tables(store: Store) -> None:
    """Create the engine's tables (and their indexes) when missing."""
    with store.transaction():
        for name, cols in _DDL.items():
            if store.dialect == "postgres":
                cols = cols.replace("DOUBLE", "DOUBLE PRECISION")
            store.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")
        for ddl in _INDEXES:
            store.execute(ddl)
