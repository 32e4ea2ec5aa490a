"""Retention: maximum age per table, applied atomically, honoured by ingest, in ``cip run``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cip.pipelines.cli import main
from cip.pipelines.config import load_config
from cip.profiles.errors import ConfigError
from cip.profiles.ingest import ingest_source
from cip.profiles.retention import apply_retention, cutoffs, ingest_cutoff
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store

NOW = datetime(2025, 1, 1)


def _fill(store) -> None:
    """Two rows in each covered table: one dated 2024-12-20 (young), one 2023-06-01 (old)."""
    ts = pd.to_datetime(["2024-12-20", "2023-06-01"])
    store.load_arrow(
        "events",
        pd.DataFrame(
            {
                "source": "web",
                "record_id": ["e_young", "e_old"],
                "event_id": ["1", "2"],
                "ts": ts,
                "event_type": "page_view",
                "anonymous_id": ["a1", "a2"],
            }
        ),
    )
    store.load_arrow(
        "order_lines",
        pd.DataFrame(
            {
                "source": "shop",
                "record_id": ["l_young", "l_old"],
                "order_id": ["o1", "o2"],
                "ts": ts,
                "customer_id": ["c1", "c2"],
                "item_id": "A",
                "quantity": 1.0,
                "unit_price": 2.0,
                "status": "completed",
            }
        ),
    )
    store.load_arrow(
        "quarantine",
        pd.DataFrame(
            {
                "record_id": ["q_young", "q_old"],
                "source": "shop",
                "target_table": "order_lines",
                "reason": "bad",
                "ingested_at": ts,
            }
        ),
    )
    store.execute(
        "CREATE TABLE scores (unified_id VARCHAR, as_of TIMESTAMP, churn DOUBLE PRECISION)"
    )
    store.execute("INSERT INTO scores VALUES ('u1', '2024-12-01', 0.1), ('u1', '2023-01-01', 0.2)")
    store.execute("CREATE TABLE features_default (unified_id VARCHAR, as_of TIMESTAMP)")
    store.execute("INSERT INTO features_default VALUES ('u1', '2024-12-01'), ('u1', '2022-01-01')")
    store.execute("CREATE TABLE _identity_records (source_table VARCHAR, record_id VARCHAR)")
    store.execute(
        "CREATE TABLE record_map (source_table VARCHAR, record_id VARCHAR, unified_id VARCHAR)"
    )
    for t in ("_identity_records", "record_map"):
        extra = ", 'u'" if t == "record_map" else ""
        store.execute(
            f"INSERT INTO {t} VALUES ('events', 'e_young'{extra}), ('events', 'e_old'{extra}), "
            f"('customers', 'gone_before'{extra})"
        )


def _ids(store, table: str, col: str = "record_id") -> list[str]:
    return sorted(store.sql(f"SELECT {col} FROM {table}")[col])


def test_old_rows_go_young_rows_stay(any_store) -> None:
    store = any_store
    _fill(store)
    policy = {"events": 365, "orders": 365, "quarantine": 30, "scores": 365, "features": 365}
    rep = apply_retention(store, policy, now=NOW)
    assert _ids(store, "events") == ["e_young"]
    assert _ids(store, "order_lines") == ["l_young"]
    assert _ids(store, "quarantine") == ["q_young"]
    assert store.sql("SELECT churn FROM scores")["churn"].tolist() == [0.1]
    assert store.count("features_default") == 1
    # the resolver forgets expired event records; other tables' rows are not its business
    assert _ids(store, "_identity_records") == ["e_young", "gone_before"]
    assert _ids(store, "record_map") == ["e_young", "gone_before"]
    assert rep.deleted["events"] == 1 and rep.deleted["order_lines"] == 1
    assert rep.deleted["quarantine"] == 1 and rep.deleted["scores"] == 1
    assert rep.deleted["features_default"] == 1 and rep.deleted["_identity_records"] == 1
    assert rep.total == 7
    # idempotent: nothing more to delete at the same reference time
    assert apply_retention(store, policy, now=NOW).total == 0


def test_keys_not_in_the_policy_are_kept_forever() -> None:
    with open_store("duckdb") as store:
        _fill(store)
        rep = apply_retention(store, {"quarantine": 1}, now=NOW)
        assert rep.deleted == {"quarantine": 2}
        assert store.count("events") == 2 and store.count("order_lines") == 2


def test_a_failure_mid_way_deletes_nothing(monkeypatch) -> None:
    with open_store("duckdb") as store:
        _fill(store)
        real = store.execute

        def failing(sql, params=None):
            if "order_lines" in sql:
                raise RuntimeError("disk full")
            return real(sql, params)

        monkeypatch.setattr(store, "execute", failing)
        with pytest.raises(RuntimeError):
            apply_retention(store, {"events": 365, "orders": 365}, now=NOW)
        monkeypatch.undo()
        assert store.count("events") == 2 and store.count("order_lines") == 2


def test_ingest_does_not_load_rows_the_policy_has_expired(tmp_path: Path) -> None:
    (tmp_path / "ev.csv").write_text(
        "id,when,cookie\n1,2024-12-30 10:00:00,a1\n2,2020-01-01 10:00:00,a2\n3,garbage,a3\n"
    )
    src = SourceConfig.model_validate(
        {
            "name": "web",
            "table": "events",
            "path": "ev.csv",
            "columns": {
                "event_id": "id",
                "ts": "when",
                "anonymous_id": "cookie",
                "event_type": {"value": "page_view"},
            },
        }
    )
    limits = cutoffs({"events": 365, "orders": 30}, now=NOW)
    limit = ingest_cutoff(limits, "events")
    assert limit == datetime(2024, 1, 2)
    # order lines are dated by the orders policy; products have none
    assert ingest_cutoff(limits, "order_lines") == limits["orders"]
    assert ingest_cutoff(limits, "products") is None
    with open_store("duckdb") as store:
        rep = ingest_source(store, src, base_dir=tmp_path, expire_before=limit)
        assert (rep.rows_loaded, rep.rows_expired, rep.rows_quarantined) == (1, 1, 1)
        assert store.sql("SELECT event_id FROM events")["event_id"].tolist() == ["1"]
        again = ingest_source(store, src, base_dir=tmp_path, expire_before=limit)
        assert (again.rows_loaded, again.rows_already_present, again.rows_expired) == (0, 1, 1)


def test_policy_errors_name_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "cip.yaml"
    cfg.write_text(yaml.safe_dump({"retention": {"evnts": 30}}))
    with pytest.raises(ConfigError, match=r"cip\.yaml: retention: unknown table 'evnts'"):
        load_config(cfg)
    cfg.write_text(yaml.safe_dump({"retention": {"events": 0}}))
    with pytest.raises(ConfigError, match=r"cip\.yaml: retention: .*positive whole days"):
        load_config(cfg)
    cfg.write_text(yaml.safe_dump({"retention": {"events": 730, "quarantine": 90}}))
    assert load_config(cfg).retention == {"events": 730, "quarantine": 90}


def test_cli_show_and_apply(tmp_workspace, capsys) -> None:
    ws = tmp_workspace
    with ws.open_store() as store:
        _fill(store)
    cfg = yaml.safe_load(ws.config_path.read_text()) or {}
    cfg["retention"] = {"events": 365, "quarantine": 30}
    ws.config_path.write_text(yaml.safe_dump(cfg))
    w = ["--workspace", str(ws.root)]
    assert main([*w, "retention", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["events"]["days"] == 365 and shown["quarantine"]["days"] == 30
    assert main([*w, "retention", "apply", "--now", "2025-01-01", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["deleted"]["events"] == 1 and rep["deleted"]["quarantine"] == 1
    assert rep["total"] == 4  # + the resolver's two rows of the expired event
    assert main([*w, "retention", "apply", "--now", "yesterday"]) != 0
    assert "is not a date" in capsys.readouterr().err
