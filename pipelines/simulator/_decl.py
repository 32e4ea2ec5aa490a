"""The simulated sources' declarations for ``cip.yaml``: files, formats, column mappings.

Each source keeps its own column names; the mapping (plain values, constants and
DuckDB SQL expressions) is the only thing that makes them canonical. Expressions
cast to VARCHAR first so they work whether a CSV reader infers types or not.
"""

from __future__ import annotations

from typing import Any

from cip.pipelines.simulator._src_orders import APP_NAMES
from cip.pipelines.simulator._src_people import CONSENT_SPELLING
from cip.profiles.sql import quote_ident

#: file name of every source (in the simulator's output folder)
FILES: dict[str, str] = {
    "products": "products.csv",
    "crm_customers": "crm_customers.csv",
    "web_events": "web_events.parquet",
    "app_events": "app_events.parquet",
    "email_events": "email_events.csv",
    "online_orders": "online_orders.parquet",
    "store_purchases": "store_purchases.csv",
    "reviews": "reviews.jsonl",
}
TARGETS: dict[str, str] = {
    "products": "products",
    "crm_customers": "customers",
    "web_events": "events",
    "app_events": "events",
    "email_events": "events",
    "online_orders": "order_lines",
    "store_purchases": "order_lines",
    "reviews": "events",
}
_APP_CANONICAL = (
    "app_install", "page_view", "login", "search", "product_view", "add_to_cart",
    "remove_from_cart", "checkout", "purchase",
)  # fmt: skip


def _text(col: str) -> str:
    return f"lower(trim(CAST({quote_ident(col)} AS VARCHAR)))"


def bool_expr(col: str, yes: str, no: str) -> dict[str, str]:
    """``true``/``false``/null from a column holding e.g. ``Y``/``N``/blank."""
    v = _text(col)
    return {
        "expr": f"CASE WHEN {v} = '{yes.lower()}' THEN true WHEN {v} = '{no.lower()}' THEN false END"
    }


def _case(col: str, mapping: dict[str, str]) -> dict[str, str]:
    whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return {"expr": f"CASE {quote_ident(col)} {whens} END"}


def declarations(prefix: str = "sources") -> list[dict[str, Any]]:
    """Source declarations (dicts valid for :class:`pipelines.config.SourceConfig`)."""
    pre = prefix.rstrip("/") + "/" if prefix else ""
    consent = {
        f"consent_{purpose}": bool_expr(col, yes, no)
        for purpose, (col, (yes, no)) in zip(
            ("email", "sms", "push", "personalization", "profiling"),
            CONSENT_SPELLING.items(),
            strict=True,
        )
    }
    columns: dict[str, dict[str, Any]] = {
        "products": {
            "item_id": "sku",
            "title": "name",
            "category": "category",
            "price": "price_gbp",
            "in_stock": {"expr": f"{_text('stock_status')} = 'in stock'"},
        },
        "crm_customers": {
            "source_record_id": "RecordID",
            "ts": "UpdatedAt",
            "customer_id": "CustomerNo",
            "email": "EMail",
            "phone": "Mobile",
            "first_name": "FirstName",
            "last_name": "LastName",
            "date_of_birth": "BirthDate",
            "address": "Street",
            "city": "City",
            "postcode": "PostCode",
            "country": "Country",
            **consent,
        },
        "web_events": {
            "source_record_id": "hit_id",
            "event_id": "hit_id",
            "ts": "client_ts",
            "event_type": "event",
            "anonymous_id": "cookie_id",
            "session_id": "session",
            "customer_id": "account_id",
            "email": "user_email",
            "item_id": "sku",
            "order_id": "order_ref",
            "channel": {"value": "web"},
            "properties": "props",
        },
        "app_events": {
            "source_record_id": "id",
            "event_id": "id",
            "ts": "event_time",
            "event_type": _case("name", dict(zip(APP_NAMES, _APP_CANONICAL, strict=True))),
            "anonymous_id": "device_id",
            "customer_id": "user_id",
            "item_id": "product_id",
            "order_id": "order_id",
            "channel": {"value": "app"},
            "properties": {
                "expr": "CASE WHEN search_term IS NOT NULL "
                "THEN '{\"q\": \"' || search_term || '\"}' END"
            },
        },
        "email_events": {
            "source_record_id": "message_event_id",
            "event_id": "message_event_id",
            "ts": "occurred_at",
            "event_type": {"expr": f"'email_' || {_text('event_kind')}"},
            "email": "recipient",
            "properties": {"expr": "'{\"campaign\": \"' || campaign_id || '\"}'"},
        },
        "online_orders": {
            "source_record_id": "line_id",
            "order_id": "order_no",
            "ts": "created_at",
            "customer_id": "account_id",
            "email": "customer_email",
            "phone": "delivery_phone",
            "item_id": "sku",
            "quantity": "qty",
            "unit_price": "price",
            "currency": "currency",
            "status": _case(
                "order_status",
                {"COMPLETE": "completed", "CANCELLED": "cancelled", "RETURNED": "returned"},
            ),
            "channel": "platform",
        },
        "store_purchases": {
            "source_record_id": "TxnLineID",
            "order_id": "ReceiptNo",
            "ts": "TxnDate",
            "loyalty_id": "LoyaltyCard",
            "phone": "CustomerPhone",
            "item_id": "ProductCode",
            "quantity": "Qty",
            "unit_price": "UnitPrice",
            "currency": {"value": "GBP"},
            "status": {
                "expr": f"CASE WHEN {_text('Refund')} = 'y' THEN 'returned' ELSE 'completed' END"
            },
            "channel": {"value": "store"},
        },
        "reviews": {
            "source_record_id": "review_id",
            "event_id": "review_id",
            "ts": "submitted",
            "event_type": {"value": "review"},
            "customer_id": {"expr": "CASE WHEN customer_ref NOT LIKE '%@%' THEN customer_ref END"},
            "email": {"expr": "CASE WHEN customer_ref LIKE '%@%' THEN customer_ref END"},
            "order_id": "order_ref",
            "item_id": "product",
            "rating": "stars",
            "properties": "meta",
        },
    }
    out = []
    for name, file in FILES.items():
        decl: dict[str, Any] = {
            "name": name,
            "table": TARGETS[name],
            "path": pre + file,
            "format": file.rsplit(".", 1)[1],
            "columns": columns[name],
        }
        if name == "store_purchases":
            decl["timestamp_format"] = "%d/%m/%Y %H:%M:%S"
        out.append(decl)
    return out
