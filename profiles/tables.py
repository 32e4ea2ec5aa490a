"""The table registry: every store table CIP creates with a fixed schema, in one place.

The canonical tables that sources load (``customers``, ``orders``, ...) are the
data contracts of :mod:`profiles.contracts`; this module adds the tables the
other layers write (scores, segments, webhook deliveries, privacy and pipeline
bookkeeping) and keeps one registry of them all, :data:`TABLES`. Each layer
creates its tables with :func:`ensure_tables` from these schemas, so a table's
columns are written down once. (Tables whose columns follow the data, such as
``profiles``, ``record_map`` and the feature tables, are created from query
results and are not listed.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cip.profiles.contracts import SCHEMAS, Column, TableSchema, sql_type
from cip.profiles.sql import quote_ident

if TYPE_CHECKING:
    from cip.profiles.store import Store

__all__ = [
    "TABLES",
    "TOMBSTONES",
    "AUDIT_LOG",
    "SCORES",
    "UPLIFT_SCORES",
    "CHANNEL_PREFERENCES",
    "SEGMENT_MEMBERS",
    "SEGMENT_CHANGES",
    "SEGMENT_BUILDS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_BATCHES",
    "PIPELINE_STEPS",
    "SOURCE_WATERMARKS",
    "ensure_tables",
    "table",
]


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


# -- privacy (profiles) --------------------------------------------------------
TOMBSTONES = TableSchema(
    "_tombstones",
    (
        _c("identifier_type", "VARCHAR", "email | phone | customer_id | ..."),
        _c("identifier_hash", "VARCHAR", "Salted hash of the normalised identifier."),
        _c("erased_at", "TIMESTAMP", "When the person was erased (UTC)."),
    ),
    "What erasure keeps: salted hashes of erased identifiers, so re-ingestion skips them.",
    key=("identifier_type", "identifier_hash"),
)
AUDIT_LOG = TableSchema(
    "_audit_log",
    (
        _c("ts", "TIMESTAMP", "When (UTC)."),
        _c("actor", "VARCHAR", "Who ($CIP_ACTOR, else the OS user)."),
        _c("action", "VARCHAR", "What (forget, access, ...)."),
        _c("detail", "VARCHAR", "JSON of counts (never identifiers)."),
    ),
    "Who did what to personal data, when and how many rows.",
    key=(),
)

# -- ingestion (profiles) ------------------------------------------------------
SOURCE_WATERMARKS = TableSchema(
    "_source_watermarks",
    (
        _c("source", "VARCHAR", "Source name (from cip.yaml)."),
        _c("column_name", "VARCHAR", "The source's incremental column."),
        _c("value", "VARCHAR", "Largest value of that column loaded so far, as text."),
        _c("value_type", "VARCHAR", "int | decimal | float | datetime | date | text."),
        _c("run_id", "VARCHAR", "The ingest run that moved it (see _ingest_runs)."),
        _c("updated_at", "TIMESTAMP", "When it moved (UTC)."),
    ),
    "Per incremental database source, how far it was read; moved in the load's transaction.",
    key=("source",),
)

# -- scores (models) -----------------------------------------------------------
SCORES = TableSchema(
    "scores",
    (
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "Snapshot the scores were computed for."),
        _c("model", "VARCHAR", "Registered models used, joined by '+'."),
        _c("model_version", "VARCHAR", "Their champion versions, joined by '+'."),
        _c("churn_probability", "DOUBLE", "P(churn) from the churn champion."),
        _c("purchase_probability", "DOUBLE", "P(purchase) from the propensity champion."),
        _c("reasons", "VARCHAR", "JSON list of readable reasons."),
        _c("rfm_segment", "VARCHAR", "RFM segment at as_of."),
        _c(
            "clv",
            "DOUBLE",
            "Predicted net revenue in the CLV champion's horizon (null: no CLV champion).",
        ),
        _c("expected_orders", "DOUBLE", "Expected orders in that horizon (BG/NBD)."),
        _c("p_alive", "DOUBLE", "Probability the customer is still active (BG/NBD)."),
        _c(
            "next_order_date",
            "DATE",
            "Expected date of the next order if alive (null: no purchase yet).",
        ),
        _c("clv_model_version", "VARCHAR", "Version of the cip-clv champion used."),
    ),
    "Churn, purchase and CLV predictions per person per snapshot (`cip score`).",
    key=("as_of", "unified_id"),
)

UPLIFT_SCORES = TableSchema(
    "uplift_scores",
    (
        _c("campaign", "VARCHAR", "Campaign or trigger the uplift model was trained for."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "Snapshot of the features scored."),
        _c("model_version", "VARCHAR", "Version of cip-uplift-<campaign> used."),
        _c("uplift", "DOUBLE", "Predicted change in purchase probability if messaged."),
        _c("sleeping_dog", "BOOLEAN", "Uplift below minus the flag threshold: do not message."),
    ),
    "Uplift per person per campaign (`cip train uplift`): whom a message persuades.",
    key=("campaign", "as_of", "unified_id"),
)

CHANNEL_PREFERENCES = TableSchema(
    "channel_preferences",
    (
        _c("unified_id", "VARCHAR", "The person; '*' is the shop's default row."),
        _c("channel", "VARCHAR", "Best channel (the person's own, or the shop's default)."),
        _c("hour", "INTEGER", "Best send hour, UTC (null: no response to learn it from)."),
        _c("ranking", "VARCHAR", "Channels best first, comma-separated (the fallbacks)."),
        _c("responses", "DOUBLE", "Responses (clicks, purchases after a message) counted."),
        _c("basis", "VARCHAR", "person (enough responses of their own), default or shop."),
        _c("computed_at", "TIMESTAMP", "When the preferences were computed."),
    ),
    "Best channel and send hour per person (`cip measure preferences`); read by triggers "
    "with `channel: best` / `send_at: best`.",
    key=("unified_id",),
)

# -- segments and webhooks (activation) ----------------------------------------
SEGMENT_MEMBERS = TableSchema(
    "segment_members",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "Snapshot the membership was computed for."),
        _c("score", "DOUBLE", "The segment's score column for this member (may be null)."),
        _c("reasons", "VARCHAR", "JSON list of readable reasons."),
        _c("model_version", "VARCHAR", "Version of the models whose scores were used."),
    ),
    "Members of every segment per build (as_of).",
    key=("segment", "as_of", "unified_id"),
)
SEGMENT_CHANGES = TableSchema(
    "segment_changes",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("as_of", "TIMESTAMP", "The build in which the change was seen."),
        _c("change", "VARCHAR", "entered | exited."),
        _c("previous_as_of", "TIMESTAMP", "The build compared with (null: first build)."),
    ),
    "Entries and exits between a build and the previous build of the same segment.",
    key=("segment", "as_of", "unified_id"),
)
SEGMENT_BUILDS = TableSchema(
    "segment_builds",
    (
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Snapshot."),
        _c("kind", "VARCHAR", "rfm | predictive | rule."),
        _c("purpose", "VARCHAR", "Consent purpose of exports (email | sms | push), or null."),
        _c("description", "VARCHAR", "The definition as one readable line."),
        _c("members", "BIGINT", "Members."),
        _c("entered", "BIGINT", "Members that entered since the previous build."),
        _c("exited", "BIGINT", "Members that left since the previous build."),
        _c("previous_as_of", "TIMESTAMP", "The previous build of this segment (null: first)."),
        _c("digest", "VARCHAR", "MD5 of the build's changes (part of webhook batch keys)."),
        _c("built_at", "TIMESTAMP", "When the build ran (UTC)."),
    ),
    "One row per segment per build.",
    key=("segment", "as_of"),
)
WEBHOOK_DELIVERIES = TableSchema(
    "webhook_deliveries",
    (
        _c("destination", "VARCHAR", "Webhook destination name."),
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Build whose changes the batch carries."),
        _c("digest", "VARCHAR", "Digest of that build's changes."),
        _c("batch_index", "BIGINT", "0-based batch number."),
        _c("idempotency_key", "VARCHAR", "Sent as the Idempotency-Key header."),
        _c("n_changes", "BIGINT", "Changes planned in the batch."),
        _c("status", "VARCHAR", "pending | delivered | failed | empty | superseded."),
        _c("attempts", "BIGINT", "HTTP attempts so far."),
        _c("http_status", "BIGINT", "Status code of the last attempt (null: no response)."),
        _c("error", "VARCHAR", "Last error (no personal data)."),
        _c("updated_at", "TIMESTAMP", "Last change of this row (UTC)."),
    ),
    "Delivery log of webhook batches; a re-run sends only batches not delivered.",
    key=("idempotency_key",),
)
WEBHOOK_BATCHES = TableSchema(
    "webhook_batches",
    (
        _c("destination", "VARCHAR", "Webhook destination name."),
        _c("segment", "VARCHAR", "Segment name."),
        _c("as_of", "TIMESTAMP", "Build."),
        _c("digest", "VARCHAR", "Digest of the build's changes when planned."),
        _c("batch_index", "BIGINT", "Batch the change belongs to."),
        _c("unified_id", "VARCHAR", "The person."),
        _c("change", "VARCHAR", "entered | exited."),
    ),
    "The frozen plan of webhook batches (which change goes in which batch).",
    key=("destination", "segment", "as_of", "unified_id"),
)

# -- pipeline runs (pipelines) -------------------------------------------------
PIPELINE_STEPS = TableSchema(
    "_pipeline_steps",
    (
        _c("run_id", "VARCHAR", "Run id (a resumed run keeps its id)."),
        _c("step", "VARCHAR", "Step name."),
        _c("as_of", "DATE", "Snapshot date of the run."),
        _c("status", "VARCHAR", "running | done (a step that failed stays running)."),
        _c("started_at", "TIMESTAMP", "Start (UTC)."),
        _c("finished_at", "TIMESTAMP", "End (UTC)."),
        _c("summary", "VARCHAR", "The step's summary as JSON."),
    ),
    "One row per step of every `cip run`, so an interrupted run resumes where it stopped.",
    key=("run_id", "step"),
)

#: Every table with a fixed schema, by name: the canonical tables and the ones above.
TABLES: dict[str, TableSchema] = {
    **SCHEMAS,
    **{
        s.name: s
        for s in (
            TOMBSTONES,
            AUDIT_LOG,
            SCORES,
            UPLIFT_SCORES,
            CHANNEL_PREFERENCES,
            SEGMENT_MEMBERS,
            SEGMENT_CHANGES,
            SEGMENT_BUILDS,
            WEBHOOK_DELIVERIES,
            WEBHOOK_BATCHES,
            PIPELINE_STEPS,
            SOURCE_WATERMARKS,
        )
    },
}


def table(name: str) -> TableSchema:
    """The registered schema of table ``name`` (KeyError naming it if unknown)."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"table {name!r} is not in the table registry") from None


def ensure_tables(store: Store, *schemas: TableSchema) -> None:
    """Create the tables of ``schemas`` that do not exist yet, and add columns they lack.

    A table made by an older version of CIP (e.g. ``scores`` before the CLV
    columns) gets the schema's newer columns appended as nullable columns
    (``ALTER TABLE ... ADD COLUMN``), so its old rows read as null there.
    """
    for sch in schemas:
        store.execute(sch.ddl(dialect=store.dialect))
        have = set(store.sql(f"SELECT * FROM {quote_ident(sch.name)} WHERE FALSE").columns)
        for c in sch.columns:
            if c.name not in have:
                store.execute(
                    f"ALTER TABLE {quote_ident(sch.name)} ADD COLUMN {quote_ident(c.name)} "
                    f"{sql_type(c.type, store.dialect)}"
                )
