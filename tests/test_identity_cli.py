"""``cip unify`` and ``cip identity ...`` on a workspace."""

from __future__ import annotations

import json

import pandas as pd
from cip.pipelines.cli import main

T0 = pd.Timestamp("2024-01-01")


def _load(ws, table: str, rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    df.insert(0, "source", "src")
    df["source_record_id"] = df["record_id"]
    df["ingested_at"] = T0
    df["ts"] = pd.to_datetime(df["ts"])
    with ws.open_store() as store:
        store.load_arrow(table, df)


def _cli(capsys, ws, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--workspace", str(ws.root), *args])
    return code, capsys.readouterr().out


def test_cli_unify_split_show_status(tmp_workspace, capsys) -> None:
    ws = tmp_workspace
    _load(
        ws,
        "customers",
        [
            {"record_id": "c1", "ts": "2024-01-01", "customer_id": "A", "email": "a@x.com"},
            {"record_id": "c2", "ts": "2024-02-01", "customer_id": "B", "email": "b@x.com"},
        ],
    )
    _load(
        ws,
        "events",
        [
            {
                "record_id": "e1",
                "ts": "2024-03-01",
                "event_type": "login",
                "customer_id": "A",
                "anonymous_id": "k1",
            },
            {
                "record_id": "e2",
                "ts": "2024-03-02",
                "event_type": "login",
                "customer_id": "B",
                "anonymous_id": "k1",
            },
            {
                "record_id": "e3",
                "ts": "2024-02-20",
                "event_type": "page_view",
                "anonymous_id": "k1",
            },
        ],
    )
    # four people giving one (valid) number: blocked by the over-merge guard
    shared = [
        {"record_id": f"s{i}", "ts": "2024-01-05", "email": f"s{i}@x.com", "phone": "0113 496 0000"}
        for i in range(4)
    ]
    _load(ws, "customers", shared)
    code, out = _cli(capsys, ws, "unify", "--json")
    res = json.loads(out)
    assert code == 0 and res["mode"] == "full" and res["records_mapped"] == 9
    assert res["persons"] == 5 and res["blocked"] == 1  # one shared cookie joins A and B
    code, out = _cli(capsys, ws, "identity", "blocked", "--json")
    blocked = [(b["identifier_value"], b["persons"]) for b in json.loads(out)]
    assert blocked == [("+441134960000", 4)]

    code, out = _cli(
        capsys,
        ws,
        "identity",
        "split",
        "--a",
        "customer_id:A",
        "--b",
        "customer_id:B",
        "--reason",
        "shared laptop",
        "--unify",
        "--json",
    )
    res = json.loads(out)
    assert code == 0 and res["forbidden"]["b"] == "customer_id:B"
    assert res["unify"]["persons"] == 6 and res["unify"]["splits"] == 1

    code, out = _cli(capsys, ws, "identity", "show", "--identifier", "customer_id:B", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["active"]
    assert {(r["identifier_type"], r["identifier_value"]) for r in rep["identifiers"]} >= {
        ("customer_id", "B"),
        ("email", "b@x.com"),
    }
    assert [h["kind"] for h in rep["history"]] == ["split"]

    code, out = _cli(capsys, ws, "identity", "forbidden", "--json")
    assert json.loads(out)[0]["reason"] == "shared laptop"
    code, out = _cli(capsys, ws, "identity", "history", "--json")
    assert [r["kind"] for r in json.loads(out)] == ["split"]

    code, out = _cli(capsys, ws, "status", "--json")
    ident = json.loads(out)["identity"]
    assert code == 0 and ident["persons"] == 6 and ident["splits"] == 1
    assert ident["forbidden_links"] == 1 and ident["last_run"]["mode"] == "incremental"
    assert ident["blocked_identifiers"] == 1

    code, out = _cli(capsys, ws, "status")
    assert "Identity: 6 persons" in out

    code, out = _cli(
        capsys, ws, "identity", "allow", "--a", "customer_id:A", "--b", "customer_id:B"
    )
    assert code == 0
    code, out = _cli(capsys, ws, "unify")  # human output; the link is allowed again
    assert code == 0 and "persons" in out and "5" in out
    code, out = _cli(capsys, ws, "identity", "history", "--json")
    assert [r["kind"] for r in json.loads(out)] == ["merge", "split"]  # latest first


def test_cli_errors_are_one_line(tmp_workspace, capsys) -> None:
    code = main(["--workspace", str(tmp_workspace.root), "identity", "split", "--a", "ssn:1"])
    err = capsys.readouterr().err
    assert code == 3 and "TYPE:VALUE" in err and "Traceback" not in err  # ConfigError
    code = main(["--workspace", str(tmp_workspace.root), "identity", "show", "-u", "u_nope"])
    assert code == 4 and "no identity tables" in capsys.readouterr().err  # NotFoundError


def test_simulator_benchmark_scores_against_a_truth_table(tmp_workspace, capsys) -> None:
    from benchmarks.identity_simulator import main as bench

    ws = tmp_workspace
    _load(
        ws,
        "customers",
        [
            {"record_id": "c1", "ts": "2024-01-01", "customer_id": "A", "email": "a@x.com"},
            {"record_id": "c2", "ts": "2024-01-01", "customer_id": "B", "email": "bad-email"},
        ],
    )
    _load(
        ws,
        "events",
        [
            {"record_id": "e1", "ts": "2024-01-02", "event_type": "page_view", "anonymous_id": "k"},
            {
                "record_id": "e2",
                "ts": "2024-01-03",
                "event_type": "login",
                "anonymous_id": "k",
                "customer_id": "A",
            },
            {"record_id": "e3", "ts": "2024-01-03", "event_type": "page_view", "anonymous_id": "z"},
        ],
    )
    _load(
        ws,
        "order_lines",
        [
            {
                "record_id": f"l{i}",
                "ts": "2024-01-04",
                "order_id": "o1",
                "email": "A@x.com",
                "item_id": "i",
                "quantity": 1.0,
                "unit_price": 1.0,
            }
            for i in range(2)
        ],
    )
    truth = pd.DataFrame(
        {
            "source": "src",
            "source_record_id": ["c1", "c2", "e1", "e2", "e3", "l0", "l1"],
            "person_id": [1, 2, 1, 1, 1, 1, 1],  # e3 is person 1 on a cookie never logged in
        }
    )
    (ws.sources_dir / "_truth").mkdir()
    truth.to_parquet(ws.sources_dir / "_truth" / "person_truth.parquet")
    bench([str(ws.root), "--unify", "--json"])
    out = json.loads(capsys.readouterr().out)
    # person 1: c1 e1 e2 l0 l1 linked, e3 apart -> 10 of 15 true pairs; no false pair
    assert out["records_scored"] == 7 and out["precision"] == 1.0
    assert out["correct_pairs"] == 10 and out["true_pairs"] == 15
    assert out["recall_ceiling"] == out["recall"] == 10 / 15
