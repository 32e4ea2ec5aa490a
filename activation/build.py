"""Build segments for one snapshot: members, changes against the previous build.

:func:`build_segments` runs inside one store transaction: for every segment it
builds, it replaces that segment's rows of ``as_of`` in ``segment_members``,
``segment_changes`` and ``segment_builds`` (re-running is idempotent; other
segments' rows are left alone, so one segment can be rebuilt on its own), and a
failure at any point leaves the previous state untouched. Changes of a segment are computed against
that segment's latest build before ``as_of``; when a build is inserted between
two existing builds (a backfill), the changes of the next build are recomputed
too, so ``segment_changes`` always describes consecutive builds.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cip.activation._compile import (
    Missing,
    SegmentSql,
    Thresholds,
    _Frag,
    base_select,
    compile_segment,
    discover,
    threshold_tables,
)
from cip.activation._events import event_reason, event_rule_select
from cip.activation._tables import BUILDS, CHANGES, MEMBERS, ensure_tables, not_erased, to_timestamp
from cip.activation.defaults import check_definitions
from cip.activation.definitions import SegmentDefinition
from cip.profiles.store import Store

__all__ = ["build_segments", "BuildReport", "SegmentResult"]

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    """Size of one segment in a build."""

    segment: str
    kind: str
    members: int
    entered: int
    exited: int
    previous_as_of: dt.datetime | None


@dataclass
class BuildReport:
    """What :func:`build_segments` did."""

    as_of: dt.datetime
    segments: list[SegmentResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        for s in d["segments"]:
            s["previous_as_of"] = s["previous_as_of"] and s["previous_as_of"].isoformat()
        return d


def build_segments(
    store: Store,
    definitions: Sequence[SegmentDefinition],
    as_of: str | dt.date | dt.datetime,
    *,
    features_table: str = "features_default",
) -> BuildReport:
    """Materialise ``segment_members`` and ``segment_changes`` for ``as_of``.

    Args:
        store: the profile store (reads ``features_table``, ``scores``,
            ``profiles``, ``events``, ``orders``, ``products``, ``record_map`` and
            ``erased`` when present).
        definitions: the segments to build (see :mod:`activation.definitions`).
        as_of: the snapshot; the feature table must have rows at exactly this as_of.
        features_table: the feature table to read.

    Returns:
        A :class:`BuildReport`; segments whose inputs are missing (e.g. a
        predictive segment before any scores exist) are listed in ``skipped``.

    Raises:
        ConfigError: a definition names an unknown field (the message names the
            segment and the field, with close matches) or a bad value.
        NotFoundError, DataError: the feature snapshot is missing.
    """
    t0 = time.perf_counter()
    ts = to_timestamp(as_of)
    check_definitions(definitions, {d.webhook for d in definitions if d.webhook})
    inputs = discover(store, features_table, ts)
    report = BuildReport(as_of=ts, notes=list(inputs.notes))
    thresholds: Thresholds = {}
    compiled: list[SegmentSql] = []
    fields: set[str] = set()
    for d in definitions:
        ev = None
        if d.events is not None:
            sql, params = event_reason(d.events)
            ev = _Frag(sql, params)
        trial = dict(thresholds)
        try:
            seg = compile_segment(d, inputs, trial, ev)
        except Missing as exc:
            report.skipped[d.name] = str(exc)
            continue
        thresholds.update(trial)
        compiled.append(seg)
        fields.update(d.fields())
    erased_f = not_erased(store, "f.unified_id")
    ensure_tables(store, (MEMBERS, CHANGES, BUILDS))
    built_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction():
        store.execute("DROP TABLE IF EXISTS _seg_base")
        store.execute(
            "CREATE TEMP TABLE _seg_base AS " + base_select(inputs, fields, erased_f), [ts]
        )
        threshold_tables(store, thresholds)
        names = [seg.definition.name for seg in compiled]
        in_names = ", ".join("?" for _ in names)
        for tbl in ("segment_members", "segment_changes", "segment_builds") if names else ():
            store.execute(
                f"DELETE FROM {tbl} WHERE as_of = CAST(? AS TIMESTAMP) AND segment IN ({in_names})",
                [ts, *names],
            )
        for i, seg in enumerate(compiled):
            _insert_members(store, seg, i, ts, inputs.has_record_map)
            _insert_build(store, seg, ts, built_at)
        if names:
            _recompute_changes(store, ts, names)
        for tbl in ["_seg_base", *thresholds.values()]:
            store.execute(f"DROP TABLE IF EXISTS {tbl}")
    rows = store.sql(
        "SELECT segment, kind, members, entered, exited, previous_as_of FROM segment_builds "
        "WHERE as_of = CAST(? AS TIMESTAMP)",
        [ts],
    )
    order = {s.definition.name: i for i, s in enumerate(compiled)}
    for r in sorted(rows.to_dict("records"), key=lambda r: order.get(r["segment"], 0)):
        prev = r["previous_as_of"]
        report.segments.append(
            SegmentResult(
                segment=r["segment"],
                kind=r["kind"],
                members=int(r["members"]),
                entered=int(r["entered"]),
                exited=int(r["exited"]),
                previous_as_of=None if prev is None or prev != prev else prev.to_pydatetime(),
            )
        )
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info(
        "built %d segments at %s in %.2fs (%d skipped)",
        len(report.segments),
        ts,
        report.seconds,
        len(report.skipped),
    )
    return report


def _insert_members(store: Store, seg: SegmentSql, i: int, ts: dt.datetime, rmap: bool) -> None:
    d = seg.definition
    head = (
        "INSERT INTO segment_members (segment, unified_id, as_of, score, reasons, model_version) "
        "SELECT CAST(? AS VARCHAR), {uid}, CAST(? AS TIMESTAMP), {score}, {reasons}, {mv} FROM "
    )
    if d.events is None:
        sql = head.format(
            uid="b.unified_id", score=seg.score, reasons=seg.reasons.sql, mv=seg.model_version
        )
        sql += f"_seg_base b WHERE {seg.where.sql}"
        store.execute(sql, [d.name, ts, *seg.reasons.params, *seg.where.params])
        return
    ev_sql, ev_params = event_rule_select(
        d.events, ts, has_record_map=rmap, erased_pred=not_erased(store, "m.unified_id")
    )
    tmp = f"_seg_ev{i}"
    store.execute(f"DROP TABLE IF EXISTS {tmp}")
    store.execute(f"CREATE TEMP TABLE {tmp} AS {ev_sql}", ev_params)
    # Without conditions a person with matching events is a member even without a
    # feature row (e.g. a new visitor); with conditions the feature row must exist.
    join = "JOIN" if d.conditions or d.kind == "rfm" else "LEFT JOIN"
    sql = head.format(
        uid="e.unified_id", score=seg.score, reasons=seg.reasons.sql, mv=seg.model_version
    )
    sql += f"{tmp} e {join} _seg_base b ON b.unified_id = e.unified_id WHERE {seg.where.sql}"
    store.execute(sql, [d.name, ts, *seg.reasons.params, *seg.where.params])
    store.execute(f"DROP TABLE IF EXISTS {tmp}")


def _insert_build(store: Store, seg: SegmentSql, ts: dt.datetime, built_at: dt.datetime) -> None:
    d = seg.definition
    store.execute(
        "INSERT INTO segment_builds (segment, as_of, kind, purpose, description, members, "
        "entered, exited, previous_as_of, digest, built_at) "
        "SELECT CAST(? AS VARCHAR), CAST(? AS TIMESTAMP), CAST(? AS VARCHAR), CAST(? AS VARCHAR), "
        "CAST(? AS VARCHAR), count(*), 0, 0, NULL, NULL, CAST(? AS TIMESTAMP) "
        "FROM segment_members WHERE segment = ? AND as_of = CAST(? AS TIMESTAMP)",
        [d.name, ts, d.kind, d.purpose, d.describe(), built_at, d.name, ts],
    )


def _recompute_changes(store: Store, ts: dt.datetime, names: list[str]) -> None:
    """Changes of the builds of ``names`` at ``ts`` and of their next build after ``ts``."""
    store.execute("DROP TABLE IF EXISTS _seg_pairs")
    store.execute(
        "CREATE TEMP TABLE _seg_pairs AS SELECT b.segment, b.as_of, "
        "(SELECT max(p.as_of) FROM segment_builds p WHERE p.segment = b.segment "
        "AND p.as_of < b.as_of) AS prev FROM segment_builds b WHERE (b.as_of = CAST(? AS TIMESTAMP) "
        "OR b.as_of = (SELECT min(n.as_of) FROM segment_builds n WHERE n.segment = b.segment "
        f"AND n.as_of > CAST(? AS TIMESTAMP))) AND b.segment IN ({', '.join('?' for _ in names)})",
        [ts, ts, *names],
    )
    store.execute(
        "DELETE FROM segment_changes WHERE EXISTS (SELECT 1 FROM _seg_pairs q "
        "WHERE q.segment = segment_changes.segment AND q.as_of = segment_changes.as_of)"
    )
    erased = not_erased(store, "p.unified_id")
    store.execute(
        "INSERT INTO segment_changes (segment, unified_id, as_of, change, previous_as_of) "
        "WITH cur AS (SELECT m.segment, m.unified_id, q.as_of, q.prev FROM segment_members m "
        "JOIN _seg_pairs q ON q.segment = m.segment AND q.as_of = m.as_of), "
        "prv AS (SELECT m.segment, m.unified_id, q.as_of, q.prev FROM segment_members m "
        "JOIN _seg_pairs q ON q.segment = m.segment AND q.prev = m.as_of) "
        "SELECT COALESCE(c.segment, p.segment), COALESCE(c.unified_id, p.unified_id), "
        "COALESCE(c.as_of, p.as_of), CASE WHEN p.unified_id IS NULL THEN 'entered' "
        "ELSE 'exited' END, COALESCE(c.prev, p.prev) "
        "FROM cur c FULL OUTER JOIN prv p ON c.segment = p.segment AND c.as_of = p.as_of "
        "AND c.unified_id = p.unified_id "
        f"WHERE p.unified_id IS NULL OR (c.unified_id IS NULL AND {erased})"
    )
    # digest of each build's changes (part of webhook batch keys): order-independent
    # XOR of row hashes on DuckDB, MD5 of the sorted rows on PostgreSQL
    row = "c.change || ':' || c.unified_id"
    digest = (
        f"md5(COALESCE(string_agg({row}, ',' ORDER BY c.change, c.unified_id), ''))"
        if store.dialect == "postgres"
        else f"CAST(count(*) AS VARCHAR) || '-' || CAST(COALESCE(bit_xor(hash({row})), 0) AS VARCHAR)"
    )
    store.execute("DROP TABLE IF EXISTS _seg_agg")
    store.execute(
        "CREATE TEMP TABLE _seg_agg AS SELECT q.segment, q.as_of, q.prev, "
        "COALESCE(m.n, 0) AS members, COALESCE(c.entered, 0) AS entered, "
        "COALESCE(c.exited, 0) AS exited, COALESCE(c.digest, 'none') AS digest FROM _seg_pairs q "
        "LEFT JOIN (SELECT m.segment, m.as_of, count(*) AS n FROM segment_members m "
        "JOIN _seg_pairs q ON q.segment = m.segment AND q.as_of = m.as_of "
        "GROUP BY m.segment, m.as_of) m ON m.segment = q.segment AND m.as_of = q.as_of "
        "LEFT JOIN (SELECT c.segment, c.as_of, "
        "sum(CASE WHEN c.change = 'entered' THEN 1 ELSE 0 END) AS entered, "
        f"sum(CASE WHEN c.change = 'exited' THEN 1 ELSE 0 END) AS exited, {digest} AS digest "
        "FROM segment_changes c JOIN _seg_pairs q ON q.segment = c.segment AND q.as_of = c.as_of "
        "GROUP BY c.segment, c.as_of) c ON c.segment = q.segment AND c.as_of = q.as_of"
    )
    store.execute(
        "UPDATE segment_builds SET members = a.members, entered = a.entered, exited = a.exited, "
        "previous_as_of = a.prev, digest = a.digest FROM _seg_agg a "
        "WHERE segment_builds.segment = a.segment AND segment_builds.as_of = a.as_of"
    )
    store.execute("DROP TABLE IF EXISTS _seg_agg")
    store.execute("DROP TABLE IF EXISTS _seg_pairs")
