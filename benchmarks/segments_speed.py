"""Segment build and export speed on 1 M synthetic profiles.

Targets (issue G): ``build_segments`` for 1 M profiles in under 60 s; an export
of a 100 k-member segment in under 10 s.

    python -m benchmarks.segments_speed [--profiles 1000000] [--events 2000000]

DuckDB SQL generates, into a temporary DuckDB store, two snapshots (as_of
2024-05-01 and 2024-06-01) of ``features_default`` and ``scores`` for N
profiles (about 10 % change RFM segment between the two), ``profiles`` with
e-mail consent (80 % yes, 10 % no, 10 % no statement), and for the event rules
``events`` in the 8 days before the second snapshot, ``products`` and
``record_map``. The timed part runs in a fresh process: the first build
(every member "entered"), the second build (changes against the first), and
exports of ``likely_buyers`` (purchase_probability top 10 % = N/10 members) as
Parquet and CSV, all with the 15 default segments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import duckdb

from benchmarks._util import load_average, machine, run_child, stamp

CHILD = r"""
import json, sys, time
from pathlib import Path
from cip.activation import build_segments, default_definitions, export_segment
from cip.profiles.store import open_store
d = Path(sys.argv[1])
store = open_store("duckdb", path=d / "store.duckdb", memory_limit=sys.argv[2])
defs = default_definitions()
res = {}
t0 = time.perf_counter(); r1 = build_segments(store, defs, "2024-05-01"); t1 = time.perf_counter()
r2 = build_segments(store, defs, "2024-06-01"); t2 = time.perf_counter()
res["build_first_s"] = round(t1 - t0, 2)
res["build_second_s"] = round(t2 - t1, 2)
res["segments"] = len(r2.segments)
res["members_second"] = sum(s.members for s in r2.segments)
res["changes_second"] = sum(s.entered + s.exited for s in r2.segments)
res["sizes_second"] = {s.segment: s.members for s in r2.segments}
for fmt in ("parquet", "csv"):
    t = time.perf_counter()
    e = export_segment(store, "likely_buyers", d / f"likely_buyers.{fmt}", fmt)
    res[f"export_{fmt}_s"] = round(time.perf_counter() - t, 2)
    res["export_candidates"] = e.candidates
    res["export_rows"] = e.exported
t = time.perf_counter()
e = export_segment(store, "at_risk", d / "at_risk_entered.parquet", "parquet", changes="entered")
res["export_changes_parquet_s"] = round(time.perf_counter() - t, 2)
res["export_changes_rows"] = e.exported
print(json.dumps(res))
"""

SEGS = (
    "['Champions','Loyal','Potential Loyalist','New Customers','Promising','Need Attention',"
    "'About to Sleep','At Risk','Cannot Lose Them','Hibernating','Lost']"
)


def generate(path: Path, n: int, n_events: int) -> None:
    """Write the synthetic store (DuckDB SQL only)."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    uid = "'u' || lpad(CAST(i AS VARCHAR), 7, '0')"
    snap = []
    for k, as_of in enumerate(("2024-05-01", "2024-06-01")):
        # ~10 % of persons move to another RFM segment between the snapshots
        seg = f"list_extract({SEGS}, 1 + CAST((hash(i) + (CASE WHEN hash(i * 31) % 10 = 0 THEN {k} ELSE 0 END)) % 11 AS INTEGER))"
        snap.append(
            f"""SELECT {uid} AS unified_id, TIMESTAMP '{as_of}' AS as_of,
              CAST(hash(i * 3 + {k}) % 365 AS DOUBLE) AS recency_days,
              CAST(1 + hash(i * 5) % 20 AS DOUBLE) AS frequency,
              round((hash(i * 7) % 500000) / 100.0, 2) AS monetary,
              round((hash(i * 11 + {k}) % 200000) / 100.0, 2) AS monetary_365d,
              round((hash(i * 13) % 20000) / 100.0, 2) AS avg_order_value,
              CAST(hash(i * 17) % 2000 AS DOUBLE) AS tenure_days,
              CAST(hash(i * 19 + {k}) % 5 AS DOUBLE) AS add_to_cart_7d,
              {seg} AS rfm_segment,
              CAST(1 + hash(i * 23) % 5 AS INTEGER) AS r_score,
              CAST(1 + hash(i * 29) % 5 AS INTEGER) AS f_score,
              CAST(1 + hash(i * 37) % 5 AS INTEGER) AS m_score
            FROM range({n}) t(i)"""
        )
    con.execute("CREATE TABLE features_default AS " + " UNION ALL ".join(snap))
    con.execute(
        """CREATE TABLE scores AS SELECT unified_id, as_of, 'churn+propensity' AS model,
              'churn:1,propensity:1' AS model_version,
              (hash(unified_id || CAST(as_of AS VARCHAR)) % 10000) / 10000.0 AS churn_probability,
              (hash(unified_id || 'p' || CAST(as_of AS VARCHAR)) % 10000) / 10000.0 AS purchase_probability,
              '["recency_days is high","frequency is low"]' AS reasons, rfm_segment
            FROM features_default"""
    )
    con.execute(
        f"""CREATE TABLE profiles AS SELECT {uid} AS unified_id, 'c' || CAST(i AS VARCHAR) AS customer_id,
              {uid} || '@example.com' AS email, '+4470' || lpad(CAST(i AS VARCHAR), 8, '0') AS phone,
              CASE WHEN hash(i * 41) % 10 < 8 THEN TRUE WHEN hash(i * 41) % 10 = 8 THEN FALSE END AS consent_email,
              CAST(NULL AS BOOLEAN) AS consent_sms, CAST(NULL AS BOOLEAN) AS consent_push,
              TRUE AS consent_personalization, TRUE AS consent_profiling,
              TIMESTAMP '2022-01-01' AS first_seen, TIMESTAMP '2024-05-30' AS last_seen
            FROM range({n}) t(i)"""
    )
    con.close()
    # events, products and record_map through the store's own schema
    from cip.profiles.store import open_store

    store = open_store("duckdb", path=path)
    store.execute(
        "INSERT INTO products (source, record_id, item_id, category, ingested_at) "
        "SELECT 'cat', 'p' || i, 'i' || i, 'cat' || (i % 50), TIMESTAMP '2024-01-01' "
        "FROM range(10000) t(i)"
    )
    store.execute(
        f"""INSERT INTO events (source, record_id, ts, event_type, customer_id, item_id)
            SELECT 'web', 'e' || i,
              TIMESTAMP '2024-06-01' - to_seconds(CAST(hash(i * 3) % (8 * 86400) AS BIGINT) + 1),
              CASE WHEN hash(i * 5) % 10 < 7 THEN 'product_view'
                   WHEN hash(i * 5) % 10 < 9 THEN 'add_to_cart' ELSE 'purchase' END,
              'c' || CAST(hash(i * 7) % {max(n // 5, 1)} AS VARCHAR),
              'i' || CAST(hash(i * 11) % 10000 AS VARCHAR)
            FROM range({n_events}) t(i)"""
    )
    store.execute(
        "CREATE TABLE record_map AS SELECT 'events' AS source_table, record_id, "
        "'u' || lpad(substr(customer_id, 2), 7, '0') AS unified_id FROM events"
    )
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit for the store")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="cip-bench-segments-"))
    try:
        generate(d / "store.duckdb", args.profiles, args.events)
        res = run_child(CHILD, str(d), args.memory_limit)
        res.update(
            profiles=args.profiles,
            events=args.events,
            machine=machine(),
            when=stamp(),
            load=load_average(),
        )
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
