"""Data contracts: the canonical tables, their columns and types, in one place.

Every other module refers to column names through this module. User data
arrives in the user's own column names; a source's ``columns`` mapping in
``cip.yaml`` maps them onto these contracts (see ``profiles.ingest``).

Conventions
-----------
* Timestamps are UTC, stored as naive ``TIMESTAMP`` values.
* ``amount``, ``quantity`` and ``unit_price`` are non-negative; the ``status``
  column tells the direction: ``completed`` (a sale), ``returned`` (money given
  back, e.g. an Online Retail credit note ``C...``) or ``cancelled`` (never paid).
  Net revenue = completed - returned; cancelled orders carry no revenue.
* Every raw table carries lineage columns: ``source`` (the source name from
  ``cip.yaml``), ``record_id`` (an MD5 of the record's canonical content, the
  key that makes re-ingestion idempotent), ``source_record_id`` (the record's id
  in the user's system when mapped, else ``record_id``) and ``ingested_at``.
* ``identifiers`` are the columns in :data:`IDENTIFIER_COLUMNS`; a raw record
  (customers, orders, order_lines, events) needs at least one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cip.profiles.sql import quote_ident

__all__ = [
    "Column",
    "TableSchema",
    "IDENTIFIER_COLUMNS",
    "CONSENT_PURPOSES",
    "CONSENT_COLUMNS",
    "ORDER_STATUSES",
    "CHANNELS",
    "EVENT_TYPES",
    "LINEAGE_COLUMNS",
    "SCHEMAS",
    "MESSAGE_EVENTS",
    "MESSAGE_EVENT_TYPES",
    "RAW_TABLES",
    "SOURCE_TABLES",
    "QUARANTINE",
    "INGEST_RUNS",
    "schema",
    "CHURN_MODEL",
    "PROPENSITY_MODEL",
    "RECOMMENDER_MODEL",
    "CLV_MODEL",
    "DEFAULT_MIN_AUC",
    "REGISTERED_MODELS",
]

#: Names of the models in the MLflow registry (serving loads ``models:/<name>@champion``).
CHURN_MODEL = "cip-churn"
PROPENSITY_MODEL = "cip-propensity"
RECOMMENDER_MODEL = "cip-recommender"
CLV_MODEL = "cip-clv"
#: The default of ``models.min_auc``: a churn or propensity candidate (LightGBM or a
#: baseline) is promoted only when its holdout ROC AUC is above this (0.5: a coin flip).
DEFAULT_MIN_AUC = 0.55
#: Model kind -> registered model name.
REGISTERED_MODELS: dict[str, str] = {
    "churn": CHURN_MODEL,
    "propensity": PROPENSITY_MODEL,
    "recommender": RECOMMENDER_MODEL,
    "clv": CLV_MODEL,
}

#: Identifier columns, in order of trust (a shop account id is the strongest).
IDENTIFIER_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "email",
    "phone",
    "loyalty_id",
    "anonymous_id",
)
#: Consent purposes; each has a nullable BOOLEAN column ``consent_<purpose>``.
CONSENT_PURPOSES: tuple[str, ...] = ("email", "sms", "push", "personalization", "profiling")
CONSENT_COLUMNS: tuple[str, ...] = tuple(f"consent_{p}" for p in CONSENT_PURPOSES)
ORDER_STATUSES: tuple[str, ...] = ("completed", "returned", "cancelled")
CHANNELS: tuple[str, ...] = ("web", "app", "store", "phone", "other")
#: Known event types (others are accepted and kept; features use these).
EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "search",
    "login",
    "email_send",
    "email_open",
    "email_click",
    "review",
    "app_install",
    "consent",
)


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    type: str  # DuckDB / SQL type name: VARCHAR, TIMESTAMP, DOUBLE, BIGINT, BOOLEAN, DATE
    description: str
    required: bool = False  # must be mapped by a source targeting the table


@dataclass(frozen=True)
class TableSchema:
    """A canonical table: its columns, in storage order."""

    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ("record_id",)
    needs_identifier: bool = False
    _index: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def mappable(self) -> list[str]:
        """Columns a source may map (everything but the computed lineage columns)."""
        return [c.name for c in self.columns if c.name not in _COMPUTED]

    def column(self, name: str) -> Column:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def ddl(self, table_name: str | None = None, *, dialect: str = "duckdb") -> str:
        """``CREATE TABLE IF NOT EXISTS`` statement for this schema."""
        cols = ",\n  ".join(
            f"{quote_ident(c.name)} {sql_type(c.type, dialect)}" for c in self.columns
        )
        return f"CREATE TABLE IF NOT EXISTS {quote_ident(table_name or self.name)} (\n  {cols}\n)"


def sql_type(t: str, dialect: str) -> str:
    """The SQL type of a contract column type in ``dialect`` (``duckdb`` or ``postgres``)."""
    if dialect == "postgres":
        return {"DOUBLE": "DOUBLE PRECISION", "VARCHAR": "TEXT"}.get(t, t)
    return t


def _c(name: str, type_: str, description: str, required: bool = False) -> Column:
    return Column(name, type_, description, required)


LINEAGE_COLUMNS: tuple[Column, ...] = (
    _c("source", "VARCHAR", "Name of the source (from cip.yaml) the record came from."),
    _c("record_id", "VARCHAR", "MD5 of the record's canonical content; the idempotency key."),
    _c("source_record_id", "VARCHAR", "The record's id in the user's system, else record_id."),
    _c("ingested_at", "TIMESTAMP", "When the record was loaded (UTC)."),
)
_COMPUTED = frozenset({"source", "record_id", "ingested_at"})

_IDENTIFIERS: tuple[Column, ...] = (
    _c("customer_id", "VARCHAR", "Shop account id."),
    _c("email", "VARCHAR", "E-mail address as given by the source (normalised by identity)."),
    _c(
        "phone", "VARCHAR", "Phone number as given by the source (normalised to E.164 by identity)."
    ),
    _c("loyalty_id", "VARCHAR", "Loyalty or store card number."),
    _c("anonymous_id", "VARCHAR", "Cookie or device id."),
)

CUSTOMERS = TableSchema(
    "customers",
    LINEAGE_COLUMNS
    + _IDENTIFIERS
    + (
        _c("ts", "TIMESTAMP", "When the source last updated the record (drives survivorship)."),
        _c("first_name", "VARCHAR", "Given name."),
        _c("last_name", "VARCHAR", "Family name."),
        _c("date_of_birth", "DATE", "Date of birth."),
        _c("address", "VARCHAR", "Street address."),
        _c("city", "VARCHAR", "City."),
        _c("postcode", "VARCHAR", "Postal code."),
        _c("country", "VARCHAR", "Country (name or ISO code)."),
    )
    + tuple(
        _c(f"consent_{p}", "BOOLEAN", f"Consent for {p} (null: no statement in this record).")
        for p in CONSENT_PURPOSES
    ),
    "One row per source record about a person (CRM export, account table, loyalty sign-up); "
    "not one row per person.",
    needs_identifier=True,
)

ORDERS = TableSchema(
    "orders",
    LINEAGE_COLUMNS
    + (
        _c("order_id", "VARCHAR", "Order (invoice) id.", required=True),
        _c("ts", "TIMESTAMP", "Order time (UTC).", required=True),
    )
    + _IDENTIFIERS
    + (
        _c("amount", "DOUBLE", "Order value, non-negative; direction given by status.", True),
        _c("currency", "VARCHAR", "ISO currency code."),
        _c("status", "VARCHAR", "completed | returned | cancelled."),
        _c("channel", "VARCHAR", "web | app | store | phone | other."),
        _c("delivery_days", "DOUBLE", "Days from order to delivery, when known."),
    ),
    "One row per order. Sources with order lines derive their orders automatically "
    "(the `orders` view unions orders-only sources and orders aggregated from lines).",
    needs_identifier=False,
)

ORDER_LINES = TableSchema(
    "order_lines",
    LINEAGE_COLUMNS
    + (
        _c("order_id", "VARCHAR", "Order (invoice) id.", required=True),
        _c("ts", "TIMESTAMP", "Order time (UTC).", required=True),
    )
    + _IDENTIFIERS
    + (
        _c("item_id", "VARCHAR", "Product id (SKU, StockCode).", required=True),
        _c("quantity", "DOUBLE", "Units, non-negative; direction given by status.", True),
        _c("unit_price", "DOUBLE", "Price per unit, non-negative.", required=True),
        _c("currency", "VARCHAR", "ISO currency code."),
        _c("status", "VARCHAR", "completed | returned | cancelled."),
        _c("channel", "VARCHAR", "web | app | store | phone | other."),
    ),
    "One row per order line, with the order-level columns repeated (the usual shop export).",
)

EVENTS = TableSchema(
    "events",
    LINEAGE_COLUMNS
    + (
        _c("event_id", "VARCHAR", "Event id in the source system."),
        _c("ts", "TIMESTAMP", "Event time (UTC).", required=True),
        _c("event_type", "VARCHAR", "page_view, product_view, add_to_cart, ...", required=True),
    )
    + _IDENTIFIERS
    + (
        _c("session_id", "VARCHAR", "Session id, when the source has one."),
        _c("item_id", "VARCHAR", "Product the event is about."),
        _c("order_id", "VARCHAR", "Order the event is about (purchase, review)."),
        _c("channel", "VARCHAR", "web | app | store | phone | other."),
        _c("rating", "DOUBLE", "Review score (1-5) for review events."),
        _c("properties", "VARCHAR", "Other properties as a JSON object."),
    ),
    "Behavioural events from web, app, e-mail and store systems.",
    needs_identifier=True,
)

PRODUCTS = TableSchema(
    "products",
    LINEAGE_COLUMNS
    + (
        _c("item_id", "VARCHAR", "Product id.", required=True),
        _c("title", "VARCHAR", "Product name."),
        _c("category", "VARCHAR", "Category."),
        _c("price", "DOUBLE", "List price."),
        _c("in_stock", "BOOLEAN", "Whether the item can be bought now."),
    ),
    "The product catalog.",
)

#: Message event types of ``message_events`` (``control`` marks a held-out person).
MESSAGE_EVENT_TYPES: tuple[str, ...] = (
    "send",
    "delivered",
    "open",
    "click",
    "unsubscribe",
    "bounce",
    "complaint",
    "control",
)

MESSAGE_EVENTS = TableSchema(
    "message_events",
    LINEAGE_COLUMNS
    + (
        _c("event_id", "VARCHAR", "Event id in the provider's export (or the message id)."),
        _c("message_id", "VARCHAR", "The message the event is about."),
        _c("ts", "TIMESTAMP", "Event time (UTC).", required=True),
        _c(
            "event_type",
            "VARCHAR",
            "send | delivered | open | click | unsubscribe | bounce | complaint | control.",
            required=True,
        ),
        _c("channel", "VARCHAR", "Message channel: email | sms | push | ..."),
        _c("campaign", "VARCHAR", "Campaign or trigger name (the unit lift is measured for)."),
        _c("unified_id", "VARCHAR", "The person, when the feed knows it (the trigger log)."),
    )
    + _IDENTIFIERS
    + (
        _c("machine_open", "BOOLEAN", "Provider's flag: an open made by a mail proxy or scanner."),
        _c("properties", "VARCHAR", "Other properties as a JSON object."),
    ),
    "Message facts: sends, deliveries, opens, clicks, unsubscribes, bounces, complaints and "
    "control-group assignments, from the trigger engine's log or a provider's export.",
    needs_identifier=True,
)

QUARANTINE = TableSchema(
    "quarantine",
    (
        _c("record_id", "VARCHAR", "MD5 of source, file, row and raw record (idempotency key)."),
        _c("source", "VARCHAR", "Source name."),
        _c("target_table", "VARCHAR", "Canonical table the row was meant for."),
        _c("file", "VARCHAR", "File the row came from (or the PostgreSQL query)."),
        _c("row_number", "BIGINT", "1-based data row number in the file."),
        _c("reason", "VARCHAR", "Why the row was rejected; several reasons joined by '; '."),
        _c("raw_record", "VARCHAR", "The raw row as JSON, exactly as read."),
        _c("ingested_at", "TIMESTAMP", "When the row was rejected (UTC)."),
    ),
    "Rows that failed validation; kept, never silently dropped.",
)

INGEST_RUNS = TableSchema(
    "_ingest_runs",
    (
        _c("run_id", "VARCHAR", "Run id."),
        _c("source", "VARCHAR", "Source name."),
        _c("target_table", "VARCHAR", "Canonical table."),
        _c("started_at", "TIMESTAMP", "Start (UTC)."),
        _c("finished_at", "TIMESTAMP", "End (UTC)."),
        _c("rows_read", "BIGINT", "Rows read from the files."),
        _c("rows_loaded", "BIGINT", "New rows written."),
        _c("rows_already_present", "BIGINT", "Rows skipped because they were loaded before."),
        _c("rows_quarantined", "BIGINT", "Rows sent to quarantine."),
        _c("rows_suppressed", "BIGINT", "Rows of erased persons, not loaded again."),
    ),
    "One row per ingest of one source.",
    key=("run_id",),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in (
        CUSTOMERS,
        ORDERS,
        ORDER_LINES,
        EVENTS,
        PRODUCTS,
        MESSAGE_EVENTS,
        QUARANTINE,
        INGEST_RUNS,
    )
}
#: Canonical tables a source may target.
SOURCE_TABLES: tuple[str, ...] = (
    "customers",
    "orders",
    "order_lines",
    "events",
    "products",
    "message_events",
)
#: Tables holding raw person-linked records.
RAW_TABLES: tuple[str, ...] = ("customers", "orders", "order_lines", "events")


def schema(table: str) -> TableSchema:
    """The schema of a canonical table, with a clear error for unknown names."""
    try:
        return SCHEMAS[table]
    except KeyError:
        from cip.profiles.errors import ConfigError

        raise ConfigError(
            f"unknown table {table!r}; expected one of {', '.join(SOURCE_TABLES)}"
        ) from None
