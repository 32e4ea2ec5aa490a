"""``cip export-person``: everything held on one person, and nothing of anyone else."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from cip.pipelines.cli import main
from cip.pipelines.workflows.setup import register_sources
from cip.pipelines.workspace import Workspace

from tests._privacy_world import Person, pick_person

pytest_plugins = ["tests._privacy_world"]
pytestmark = pytest.mark.slow


def cli(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(args))
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def person(privacy_world: Workspace) -> Person:
    ws = privacy_world
    p = pick_person(ws)
    # one quarantined row of the person (their e-mail in capitals) and one of someone else
    (ws.sources_dir / "bad_events.csv").write_text(
        "id,at,kind,mail,cookie\n"
        f"B1,not a time,page_view,{p.email.upper()},\n"
        "B2,not a time,page_view,,someone-else-0002\n"
    )
    register_sources(
        ws,
        [
            {
                "name": "bad_events",
                "table": "events",
                "path": "sources/bad_events.csv",
                "columns": {
                    "event_id": "id",
                    "ts": "at",
                    "event_type": "kind",
                    "email": "mail",
                    "anonymous_id": "cookie",
                },
            }
        ],
    )
    ws.reload()
    assert cli("-w", str(ws.root), "ingest", "--source", "bad_events", "--json")[0] == 0
    return p


@pytest.fixture(scope="module")
def doc(privacy_world: Workspace, person: Person, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("access") / "person.json"
    spelling = person.raw["phone"][0]
    code, _ = cli(
        "-w", str(privacy_world.root), "export-person", "-i", f"phone:{spelling}", "--out", str(out)
    )
    assert code == 0
    assert (out.stat().st_mode & 0o777) == 0o600  # personal data: owner only
    assert not list(out.parent.glob(".*.tmp"))  # written atomically
    return json.loads(out.read_text())


def test_the_export_holds_the_persons_records(
    privacy_world: Workspace, person: Person, doc: dict
) -> None:
    uid = person.unified_id
    assert doc["persons"] == [uid]
    assert [p["unified_id"] for p in doc["profiles"]] == [uid]
    assert doc["profiles"][0]["email"] == person.email
    with privacy_world.open_store(read_only=True) as store:
        mapped = store.sql(
            "SELECT source_table, count(*) AS n FROM record_map WHERE unified_id = ? GROUP BY 1",
            [uid],
        )
        ids = store.sql(
            "SELECT identifier_type, identifier_value FROM identity_map WHERE unified_id = ? "
            "ORDER BY 1, 2",
            [uid],
        )
        lines = store.sql(
            "SELECT count(*) AS n FROM order_lines l JOIN orders o USING (source, order_id) "
            "JOIN record_map m ON m.source_table = 'orders' AND m.record_id = o.record_id "
            "WHERE m.unified_id = ?",
            [uid],
        )
    want = dict(zip(mapped["source_table"], mapped["n"].astype(int), strict=True))
    assert {t: len(doc["records"][t]) for t in want} == want
    assert len(doc["records"]["order_lines"]) == int(lines["n"].iloc[0]) > 0
    got = [(i["identifier_type"], i["identifier_value"]) for i in doc["identifiers"]]
    assert got == list(zip(ids["identifier_type"], ids["identifier_value"], strict=True))
    assert (
        len(doc["quarantine"]) == 1 and person.email.upper() in doc["quarantine"][0]["raw_record"]
    )
    for rows in (*doc["features"].values(), doc["scores"], *doc["segments"].values()):
        assert rows and {r["unified_id"] for r in rows} == {uid}


def test_the_export_holds_nothing_of_anyone_else(
    privacy_world: Workspace, person: Person, doc: dict
) -> None:
    text = json.dumps(doc)
    assert set(re.findall(r"u_[0-9a-f]{16}", text)) == {person.unified_id}
    assert "someone-else-0002" not in text
    with privacy_world.open_store(read_only=True) as store:
        others = store.sql(
            "SELECT identifier_value FROM identity_map WHERE unified_id <> ? AND "
            "identifier_type IN ('email', 'phone', 'customer_id') ",
            [person.unified_id],
        )["identifier_value"]
    leaked = [v for v in others if v in text]
    assert leaked == []


def test_stdout_and_unified_id_give_the_same_document(
    privacy_world: Workspace, person: Person, doc: dict
) -> None:
    code, text = cli("-w", str(privacy_world.root), "export-person", "-u", person.unified_id)
    assert code == 0
    again = json.loads(text)
    again.pop("generated_at")
    assert again == {k: v for k, v in doc.items() if k != "generated_at"}


def test_access_is_audited_with_counts_only(
    privacy_world: Workspace, person: Person, doc: dict
) -> None:
    with privacy_world.open_store(read_only=True) as store:
        rows = store.sql("SELECT action, detail FROM _audit_log WHERE action = 'access'")
    assert len(rows) >= 1
    detail = json.loads(rows["detail"].iloc[0])
    assert detail["persons"] == 1 and detail["records"]["events"] >= 1
    text = " ".join(rows["detail"]).lower()
    for needle in person.needles:
        assert needle.lower() not in text
