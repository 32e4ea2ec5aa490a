"""Opt-in real-data test: the Online Retail example mapping loads both real files.

Skips outside CI when ../shared/data is absent; fails in CI (see conftest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cip.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.realdata
def test_online_retail_example_ingests_both_files_idempotently(
    shared_data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("CIP_SHARED", str(shared_data.parent))
    ws = tmp_path / "retail"
    assert main(["init", str(ws), "--config", str(REPO / "examples" / "online_retail.yaml")]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws), "ingest", "--json"]) == 0
    first = {r["source"]: r for r in json.loads(capsys.readouterr().out)}
    lines = first["retail_2009_2010"]["rows_loaded"] + first["retail_2010_2011"]["rows_loaded"]
    assert lines > 1_000_000
    # credit notes are kept as returns; bad rows are quarantined with their reason
    assert first["retail_2010_2011"]["quarantine_reasons"]["negative quantity"] > 0
    assert first["retail_2009_2010"]["rows_filtered"] > 0  # the overlap with the second file
    assert main(["--workspace", str(ws), "status", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["tables"]
    before.pop("_ingest_runs")
    assert main(["--workspace", str(ws), "ingest", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert all(r["rows_loaded"] == 0 for r in second if r["target_table"] != "products")
    assert main(["--workspace", str(ws), "status", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["tables"]
    assert after.pop("_ingest_runs") == 2 * len(first)
    assert after == before
    from cip.pipelines.workspace import Workspace

    with Workspace.open(ws).open_store() as store:
        st = store.sql("SELECT status, count(*) AS n FROM orders GROUP BY status")
        counts = dict(zip(st.status, st.n, strict=True))
        assert counts["returned"] > 5_000 and counts["completed"] > 35_000
        guests = store.sql("SELECT count(*) AS n FROM order_lines WHERE customer_id IS NULL")
        assert guests["n"].iloc[0] > 200_000  # guest lines kept for item popularity
        bad_products = store.sql(
            "SELECT count(*) AS n FROM products WHERE item_id IN ('POST', 'D', 'M', 'BANK CHARGES')"
        )
        assert bad_products["n"].iloc[0] == 0


def test_missing_cip_shared_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("CIP_SHARED", raising=False)
    rc = main(
        ["init", str(tmp_path / "w"), "--config", str(REPO / "examples" / "online_retail.yaml")]
    )
    assert rc == 3  # ConfigError
    err = capsys.readouterr().err
    assert "CIP_SHARED is not set" in err and "shared" in err
    assert os.environ.get("CIP_SHARED") is None
