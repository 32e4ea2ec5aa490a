"""The same segment logic on PostgreSQL as on DuckDB (the store's two backends)."""

from __future__ import annotations

import json

import pytest
from _segment_data import A1, A2, load, new_store
from cip.activation import (
    SegmentDefinition,
    WebhookDestination,
    build_segments,
    default_definitions,
    deliver_webhooks,
    export_segment,
    segment_page,
)
from cip.profiles.store import open_store

pytestmark = pytest.mark.postgres


def _snapshot(store) -> dict:
    m = store.sql(
        "SELECT segment, unified_id, as_of, score, reasons, model_version FROM segment_members"
    )
    c = store.sql("SELECT segment, unified_id, as_of, change, previous_as_of FROM segment_changes")
    b = store.sql("SELECT segment, as_of, members, entered, exited FROM segment_builds")
    return {
        "members": sorted(
            (
                r.segment,
                r.unified_id,
                str(r.as_of),
                None if r.score != r.score else r.score,
                tuple(json.loads(r.reasons)),
                r.model_version if isinstance(r.model_version, str) else None,
            )
            for r in m.itertuples()
        ),
        "changes": sorted(
            (r.segment, r.unified_id, str(r.as_of), r.change, str(r.previous_as_of))
            for r in c.itertuples()
        ),
        "builds": sorted(
            tuple(
                int(x) if not isinstance(x, str) else x
                for x in (r.segment, r.members, r.entered, r.exited)
            )
            for r in b.itertuples()
        ),
    }


def test_postgres_builds_the_same_segments_as_duckdb(pg_url, pg_schema, tmp_path):
    hook = SegmentDefinition(
        name="hooked", kind="rfm", rfm_segments=["Champions"], purpose="email", webhook="none"
    )
    defs = [*default_definitions(), hook]
    pg = load(open_store("postgres", url=pg_url, schema=pg_schema))
    duck = new_store()
    for store in (pg, duck):
        build_segments(store, defs, A1)
        build_segments(store, defs, A2)
        build_segments(store, defs, A2)  # idempotent on both
    got, want = _snapshot(pg), _snapshot(duck)
    assert got == want and len(got["members"]) > 20 and got["changes"]
    for store in (pg, duck):
        rep = export_segment(store, "loyal", tmp_path / f"{store.backend}.csv", "csv")
        assert rep.exported == 2 and rep.no_consent == 0
        rows, cur = segment_page(store, "lost", limit=1)  # u3 (NULL consent) and u5 (no e-mail)
        assert rows == [] and cur is None
        # a destination nobody listens on: delivery fails but is logged the same way
        dest = {"none": WebhookDestination(url="http://127.0.0.1:9/x", max_attempts=1)}
        reps = deliver_webhooks(
            store, defs, dest, secrets_dir=tmp_path / "secrets", sleep=lambda s: None
        )
        assert [(r.batches, r.failed) for r in reps] == [(1, 1)]
    assert (tmp_path / "postgres.csv").read_text() == (tmp_path / "duckdb.csv").read_text()
    pg.close()
