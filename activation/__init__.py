"""Activation: segments, segment transitions as triggers, exports and webhooks.

Typical use (``cip segments ...`` does the same)::

    from cip.activation import build_segments, default_definitions, export_segment
    report = build_segments(store, default_definitions(), as_of="2024-06-01")
    export_segment(store, "at_risk", "at_risk.csv", "csv", changes="entered")

Tables written: ``segment_members``, ``segment_changes``, ``segment_builds``,
``webhook_deliveries`` and ``webhook_batches``. Consent (per purpose) and
erasure are applied to every export, page and webhook batch. Webhook requests
are signed per the Standard Webhooks specification (:mod:`cip.activation.signing`).
"""

from cip.activation.build import BuildReport, SegmentResult, build_segments
from cip.activation.defaults import check_definitions, default_definitions, select_definitions
from cip.activation.definitions import (
    OPS,
    RFM_SEGMENT_NAMES,
    Condition,
    EventRule,
    SegmentDefinition,
)
from cip.activation.export import (
    CONTACT,
    EXPORT_SCORE_COLUMNS,
    ExportFormat,
    ExportReport,
    export_segment,
    segment_page,
)
from cip.activation.insights import (
    latest_as_of,
    segment_overlaps,
    segment_sizes,
    segment_transitions,
)
from cip.activation.signing import SignatureError, verify_signature, webhook_secret
from cip.activation.webhooks import (
    DeliveryReport,
    WebhookDestination,
    deliver_webhooks,
    idempotency_key,
    retry_after_seconds,
)

__all__ = [
    "BuildReport",
    "CONTACT",
    "Condition",
    "DeliveryReport",
    "EventRule",
    "ExportReport",
    "OPS",
    "RFM_SEGMENT_NAMES",
    "SegmentDefinition",
    "SegmentResult",
    "SignatureError",
    "WebhookDestination",
    "build_segments",
    "check_definitions",
    "default_definitions",
    "deliver_webhooks",
    "export_segment",
    "EXPORT_SCORE_COLUMNS",
    "ExportFormat",
    "idempotency_key",
    "retry_after_seconds",
    "latest_as_of",
    "segment_overlaps",
    "segment_page",
    "segment_sizes",
    "segment_transitions",
    "select_definitions",
    "verify_signature",
    "webhook_secret",
]
