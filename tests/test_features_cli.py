"""``cip features`` and ``cip features describe`` end to end."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
from cip.features import FEATURE_SET_VERSION, build_features, catalog
from cip.pipelines.cli import main

from tests._features_data import make_store
from tests.test_features_rfm import ORDERS


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_features_command_writes_store_and_parquet(tmp_workspace, capsys, tmp_path) -> None:
    ws = str(tmp_workspace.root)
    with tmp_workspace.open_store() as store:
        make_store(orders=ORDERS, store=store)
        expected = build_features(store, "2024-07-01")
    out = tmp_path / "f.parquet"
    code, stdout, _ = _run(
        capsys, "-w", ws, "features", "--as-of", "2024-07-01", "--out", str(out), "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["rows"] == 3 and summary["as_of"] == "2024-07-01"
    assert summary["table"] == "features_default" and summary["event_features"] is False
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, expected, check_like=False)
    meta = pq.read_schema(out).metadata
    assert meta[b"cip.feature_set_version"] == FEATURE_SET_VERSION.encode()

    # re-running the same as_of replaces the snapshot; another as_of is added
    assert _run(capsys, "-w", ws, "features", "--as-of", "2024-07-01")[0] == 0
    code, stdout, _ = _run(capsys, "-w", ws, "features", "--as-of", "2024-06-15")
    assert code == 0 and "persons" in stdout
    with tmp_workspace.open_store() as store:
        counts = store.sql(
            "SELECT CAST(as_of AS DATE) AS d, count(*) AS n FROM features_default GROUP BY 1 ORDER BY 1"
        )
        stored = store.sql(
            "SELECT * FROM features_default WHERE as_of = TIMESTAMP '2024-07-01' ORDER BY unified_id"
        )
    assert counts["n"].tolist() == [2, 3]  # on 06-15 C (first order 06-25) is not yet a person
    assert stored["monetary"].tolist() == expected["monetary"].tolist()
    assert stored["rfm_segment"].tolist()[:2] == ["Need Attention", "Lost"]


def test_features_command_errors_are_one_line(tmp_workspace, capsys) -> None:
    ws = str(tmp_workspace.root)
    code, _, err = _run(capsys, "-w", ws, "features")
    assert code == 3 and "--as-of" in err  # ConfigError (README, "Exit codes")
    code, _, err = _run(capsys, "-w", ws, "features", "--as-of", "not-a-date")
    assert code == 2 and "'not-a-date' is not a date" in err  # usage error, like every --as-of
    assert len(err.strip().splitlines()) == 1


def test_describe_json_and_markdown(tmp_workspace, capsys) -> None:
    ws = str(tmp_workspace.root)
    code, stdout, _ = _run(capsys, "-w", ws, "features", "describe", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert [f["name"] for f in doc["features"]] == [s.name for s in catalog()]
    assert doc["feature_set_version"] == FEATURE_SET_VERSION
    first = doc["features"][0]
    assert set(first) == {"name", "description", "dtype", "window", "source_table", "group"}
    code, stdout, _ = _run(capsys, "-w", ws, "features", "describe", "--markdown")
    assert code == 0
    assert "| feature | description | dtype | window (days) | source table |" in stdout
    assert "| `recency_days` |" in stdout and "Cannot Lose Them" in stdout


def test_write_features_replaces_a_snapshot_and_survives_new_columns() -> None:
    from cip.features import write_features
    from cip.profiles.store import open_store

    def snap(day: str, values: list[float], **extra) -> pd.DataFrame:
        df = pd.DataFrame({"unified_id": ["a", "b"], "as_of": pd.Timestamp(day), "x": values})
        return df.assign(**extra)

    with open_store("duckdb") as st:
        write_features(st, snap("2024-01-01", [1.0, 2.0]))
        write_features(st, snap("2024-01-01", [3.0, 4.0]))  # same as_of: replaced
        write_features(st, snap("2024-02-01", [5.0, 6.0]))
        assert st.sql("SELECT x FROM features_default ORDER BY as_of, unified_id")["x"].tolist() == [
            3.0, 4.0, 5.0, 6.0
        ]  # fmt: skip
        # a snapshot with a new column rebuilds the table; older snapshots get NULL there
        write_features(st, snap("2024-03-01", [7.0, 8.0], y=[1, 2]))
        got = st.sql("SELECT * FROM features_default ORDER BY as_of, unified_id")
    assert got.columns.tolist() == ["unified_id", "as_of", "x", "y"]
    assert got["x"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert got["y"].isna().sum() == 4 and got["y"].dropna().tolist() == [1, 2]


def test_checked_in_catalog_is_current() -> None:
    """features/CATALOG.md (linked from the README) is `cip features describe --markdown`."""
    from pathlib import Path

    from cip.features import catalog_markdown

    path = Path(__file__).resolve().parents[1] / "features" / "CATALOG.md"
    assert path.read_text() == catalog_markdown(), "regenerate: cip features describe --markdown"
