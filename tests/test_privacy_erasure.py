"""``cip forget`` end to end on a simulated shop: no trace left anywhere, and none coming back.

One person with an e-mail, a phone, a customer id, anonymous ids, scores and
segments is erased through the CLI by one spelling of their e-mail. Then every
column of every table (cast to text), every byte of every workspace file
outside the upstream ``sources/`` folder (the DuckDB file, its WAL, logs, the
MLflow store and artifacts, exports), the in-process and Redis session stores
and the service's answers are searched for every spelling of every identifier
(as the source files have them and normalised) and for the unified id.
Finally the original source files are ingested again: the person stays gone
and the ingest report counts the suppressed rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cip.pipelines.cli import main
from cip.pipelines.workflows.setup import serving_settings
from cip.pipelines.workspace import Workspace
from cip.profiles.privacy import hash_identifier, load_salt

from tests._privacy_world import Person, pick_person
from tests._scan import file_hits, pattern, table_hits
from tests.conftest import REDIS_URL

pytest_plugins = ["tests._privacy_world"]
pytestmark = pytest.mark.slow

LATE_ANON = "late-visitor-0001"
OTHER_ANON = "someone-else-0001"


def cli(*args: str) -> tuple[int, str]:
    """Run ``cip`` in-process; returns (exit code, stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(args))
    return code, buf.getvalue()


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Erased:
    ws: Workspace
    person: Person
    needles: list[str]
    before_tables: dict[str, int]
    before_files: dict[str, int]
    result: dict[str, Any]
    services: dict[str, Any] = field(default_factory=dict)
    redis_prefix: str | None = None
    segments: list[str] = field(default_factory=list)


def _late_source(ws: Workspace, p: Person) -> list[str]:
    """Events ingested after the last unify (one valid with a new anonymous id, two bad).

    Returns the spellings used (they must vanish too).
    """
    path = ws.sources_dir / "late_events.csv"
    spelled = "  " + p.email.upper() + " "
    local = "0044 " + p.phone[3:7] + " " + p.phone[7:]
    path.write_text(
        "id,at,kind,mail,tel,cookie\n"
        f"L1,2025-12-30 10:00:00,page_view,{spelled},,{LATE_ANON}\n"
        f"L2,not a time,page_view,,{local},\n"
        f"L3,not a time,page_view,,,{OTHER_ANON}\n"
    )
    from cip.pipelines.workflows.setup import register_sources

    register_sources(
        ws,
        [
            {
                "name": "late_events",
                "table": "events",
                "path": "sources/late_events.csv",
                "columns": {
                    "event_id": "id",
                    "ts": "at",
                    "event_type": "kind",
                    "email": "mail",
                    "phone": "tel",
                    "anonymous_id": "cookie",
                },
            }
        ],
    )
    ws.reload()
    return [spelled.strip(), local]


def _services(ws: Workspace, p: Person, prefix: str | None) -> dict[str, Any]:
    from cip.serving.schemas import EventIn, EventsRequest
    from cip.serving.service import CIPService

    base = serving_settings(ws).model_copy(
        update={"session_store": "memory", "reload_interval_seconds": 0}
    )
    svcs = {"memory": CIPService.inner(settings=base, watch=False)}
    if prefix:
        r = base.model_copy(
            update={"session_store": "redis", "redis_url": REDIS_URL, "redis_prefix": prefix}
        )
        svcs["redis"] = CIPService.inner(settings=r, watch=False)
    items = [str(x) for x in svcs["memory"].holder.state.snapshot.item_ids[:2]]
    for svc in svcs.values():
        ev = [
            EventIn(event_type="product_view", anonymous_id=a, customer_id=c, item_id=i)
            for a, c in ((p.anonymous_ids[0], p.customer_id), (OTHER_ANON, None))
            for i in items
        ]
        assert svc.events(EventsRequest(events=ev)).accepted == len(ev)
        svc.holder.sink.close()  # publish the events file (as a rotation would)
    return svcs


@pytest.fixture(scope="module")
def erased(privacy_world: Workspace) -> Any:
    ws = privacy_world
    p = pick_person(ws)
    prefix = f"cip-test-{uuid.uuid4().hex[:8]}:" if _redis_up() else None
    if prefix:
        cfg = yaml.safe_load(ws.config_path.read_text())
        cfg["serving"] = {"session_store": "redis", "redis_url": REDIS_URL, "redis_prefix": prefix}
        ws.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        ws.reload()
    spellings = _late_source(ws, p)
    code, _ = cli("-w", str(ws.root), "ingest", "--json")
    assert code == 0
    with ws.open_store(read_only=True) as store:
        segs = store.sql(
            "SELECT DISTINCT segment FROM segment_members WHERE unified_id = ?", [p.unified_id]
        )
        as_of = str(store.sql("SELECT max(as_of) AS a FROM scores")["a"].iloc[0])[:10]
    assert (
        cli(
            "-w",
            str(ws.root),
            "score",
            "--as-of",
            as_of,
            "--out",
            str(ws.exports_dir / "scores.parquet"),
            "--json",
        )[0]
        == 0
    )
    needles = p.needles + [LATE_ANON, *spellings]
    svcs = _services(ws, p, prefix)
    before_tables = table_hits(ws, needles)
    before_files = file_hits(ws.root, needles)
    code, text = cli(
        "-w", str(ws.root), "forget", "-i", f"email:{p.raw['email'][0]}", "--actor", "dpo", "--json"
    )
    assert code == 0, text
    for svc in svcs.values():
        svc.holder.tick()  # the watcher's step: journal -> erasures, reload stamp -> new snapshot
    e = Erased(ws, p, needles, before_tables, before_files, json.loads(text), svcs, prefix)
    e.segments = list(segs["segment"])
    yield e
    for svc in svcs.values():
        svc.holder.stop()
    if prefix:
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{prefix}*"))
        if keys:
            r.delete(*keys)
        r.close()


def test_the_person_was_everywhere_before(erased: Erased) -> None:
    t = erased.before_tables
    for table in ("customers", "events", "order_lines", "identity_map", "profiles", "quarantine"):
        assert t.get(table), f"the test person has no rows in {table}"
    for table in ("features_default", "scores", "segment_members", "record_map"):
        assert t.get(table), table
    assert erased.before_files.get("cip.duckdb"), "the values must be visible in the file bytes"
    assert erased.before_files.get("exports/scores.parquet")
    assert any("recommender" in f for f in erased.before_files)  # its user ids
    assert erased.segments


def test_forget_reports_counts_and_no_identifiers(erased: Erased) -> None:
    r = erased.result
    assert r["persons"] == 1 and r["warnings"] == [] and r["leftovers"] == {}
    assert r["unify_before"] == "incremental"  # the late events were linked first
    assert r["identifiers"]["email"] == 1 and r["identifiers"]["anonymous_id"] >= 2
    for t in ("customers", "events", "order_lines", "quarantine", "identity_map", "profiles"):
        assert r["rows_deleted"].get(t), t
    for t in ("features_default", "scores", "segment_members", "record_map"):
        assert r["rows_deleted"].get(t), t
    assert r["tombstones_added"] >= 5 and r["store_rewrite"]["seconds"] >= 0
    assert r["online"]["journal_entries"] >= 5
    assert not pattern(erased.needles).search(json.dumps(r).lower().encode())


def test_no_trace_in_any_table(erased: Erased) -> None:
    assert table_hits(erased.ws, erased.needles) == {}
    # precision: another person's quarantined row and records stay
    assert table_hits(erased.ws, [OTHER_ANON]) == {"quarantine": 1}


def test_no_trace_in_any_workspace_file(erased: Erased) -> None:
    """cip.duckdb (and a WAL), logs, mlflow.db, MLflow artifacts, exports, the model cache."""
    root = erased.ws.root
    assert not Path(f"{erased.ws.store_path}.wal").exists()
    assert (root / "mlflow.db").exists() and any((root / "mlartifacts").rglob("model.json"))
    assert file_hits(root, erased.needles) == {}
    # the service's own events log lives under sources/ but is CIP's: clean too
    events = root / "sources" / "_http_events"
    assert file_hits(events, erased.needles) == {}
    assert file_hits(events, [OTHER_ANON])  # other visitors' events stay


def test_online_sessions_are_forgotten_in_process(erased: Erased) -> None:
    s = erased.services["memory"].holder.sessions
    p = erased.person
    assert s.recent_items([("anonymous_id", p.anonymous_ids[0])], 10) == []
    assert s.recent_items([("customer_id", p.customer_id)], 10) == []
    assert s.recent_items([("anonymous_id", OTHER_ANON)], 10)  # others keep theirs


def test_redis_sessions_are_deleted(erased: Erased, redis_url: str) -> None:
    import redis

    assert erased.redis_prefix, "Redis was not reachable when the workspace was built"
    salt = load_salt(erased.ws.root / "secrets" / "salt")
    r = redis.Redis.from_url(redis_url)
    try:
        keys = {k.decode() for k in r.scan_iter(f"{erased.redis_prefix}*")}
    finally:
        r.close()
    p = erased.person
    gone = {
        hash_identifier(k, v, salt)
        for k, v in (("anonymous_id", p.anonymous_ids[0]), ("customer_id", p.customer_id))
    }
    assert keys and not any(h in k for k in keys for h in gone)
    assert any(hash_identifier("anonymous_id", OTHER_ANON, salt) in k for k in keys)
    assert erased.result["online"]["redis_sessions_deleted"] >= 1


def test_the_service_no_longer_serves_the_person(erased: Erased) -> None:
    from cip.serving.schemas import (
        EventIn,
        EventsRequest,
        RecommendRequest,
        ScoreRequest,
        SegmentMembersRequest,
    )

    p = erased.person
    for svc in erased.services.values():
        rec = asyncio.run(svc.recommend(RecommendRequest(customer_id=p.customer_id, n=3)))
        assert rec.strategy == "popular"
        sc = asyncio.run(svc.score(ScoreRequest(customer_ids=[p.customer_id])))
        assert sc.scores == [] and sc.unknown == [p.customer_id]
        for seg in erased.segments:
            page = svc.segment_members(SegmentMembersRequest(segment=seg, limit=1000))
            assert p.unified_id not in {m.unified_id for m in page.members}
        ev = svc.events(
            EventsRequest(events=[EventIn(event_type="page_view", anonymous_id=p.anonymous_ids[1])])
        )
        assert ev.accepted == 0 and "erased" in ev.rejected[0].reason


def test_audit_log_holds_counts_only(erased: Erased) -> None:
    with erased.ws.open_store(read_only=True) as store:
        rows = store.sql("SELECT actor, action, detail FROM _audit_log ORDER BY ts")
    assert list(rows["action"]) == ["forget"] and list(rows["actor"]) == ["dpo"]
    detail = json.loads(rows["detail"].iloc[0])
    assert detail["persons"] == 1 and detail["rows_deleted"]["customers"] >= 1
    assert detail["cleanup"]["online"]["journal_entries"] >= 5
    assert detail["cleanup"]["files"]["recommenders"]
    assert not pattern(erased.needles).search(" ".join(rows["detail"]).lower().encode())


def test_the_next_training_data_has_no_trace(erased: Erased) -> None:
    from cip.models import interactions_from_store

    with erased.ws.open_store(read_only=True) as store:
        inter = interactions_from_store(store)
    assert len(inter) and erased.person.unified_id not in set(inter["user_id"])
    code, _ = cli("-w", str(erased.ws.root), "features", "--as-of", "2025-12-01", "--json")
    assert code == 0
    assert table_hits(erased.ws, erased.needles) == {}


def test_forgetting_again_says_already_erased(erased: Erased) -> None:
    code, text = cli(
        "-w",
        str(erased.ws.root),
        "forget",
        "-i",
        f"customer_id:{erased.person.customer_id}",
        "--json",
    )
    assert code == 0
    r = json.loads(text)
    assert r["persons"] == 0 and r["already_erased"] == 1 and r["rows_total"] == 0


def test_unknown_or_invalid_identifiers_are_one_line_errors(erased: Erased, capsys) -> None:
    w = ["-w", str(erased.ws.root)]
    for args, expect, code in (
        (["forget", "-i", "email:nobody.at.all@example.org"], "is not known", 4),
        (["forget", "-i", "phone:not-a-number"], "not a valid phone", 3),
        (["forget", "-i", "fax:123"], "must be TYPE:VALUE", 3),
        (["forget"], "give the person", 3),
        (["export-person", "-u", "u_0000000000000000"], "is not known", 4),
    ):
        capsys.readouterr()
        assert main(w + args) == code, args
        err = capsys.readouterr().err.strip()
        assert expect in err and "\n" not in err, err
        assert "nobody.at.all" not in err  # the value is not echoed (terminals get logged)


def test_reingesting_the_old_files_does_not_bring_the_person_back(erased: Erased) -> None:
    ws = erased.ws
    code, text = cli("-w", str(ws.root), "ingest", "--json")
    assert code == 0
    reports = json.loads(text)
    for r in reports:  # every row read is accounted for
        accounted = (
            r["rows_loaded"]
            + r["rows_already_present"]
            + r["rows_quarantined"]
            + r["rows_suppressed"]
            + r["rows_filtered"]
        )
        assert accounted == r["rows_read"], r
    suppressed = {r["source"]: r["rows_suppressed"] for r in reports}
    deleted = erased.result["rows_deleted"]
    assert suppressed["crm_customers"] >= 1 and suppressed["late_events"] == 2
    assert sum(suppressed.values()) >= deleted["customers"] + deleted["events"]
    assert cli("-w", str(ws.root), "unify", "--json")[0] == 0
    assert table_hits(ws, erased.needles) == {}
    with ws.open_store(read_only=True) as store:
        runs = store.sql("SELECT sum(rows_suppressed) AS n FROM _ingest_runs")["n"].iloc[0]
    assert int(runs) == sum(suppressed.values())
