"""The table registry, the registered model names and the SQL-quoting helpers (profiles)."""

from __future__ import annotations

import pytest
from cip.profiles.contracts import REGISTERED_MODELS, SCHEMAS
from cip.profiles.errors import ConfigError
from cip.profiles.sql import checked_ident, quote_ident, quote_literal
from cip.profiles.store import DuckDBStore
from cip.profiles.tables import TABLES, ensure_tables, table

# The columns these tables had when their DDL was a string in privacy.py, scoring.py,
# run.py and activation/_tables.py: the registry must create exactly these.
BEFORE: dict[str, list[tuple[str, str]]] = {
    "_tombstones": [
        ("identifier_type", "VARCHAR"),
        ("identifier_hash", "VARCHAR"),
        ("erased_at", "TIMESTAMP"),
    ],
    "_audit_log": [
        ("ts", "TIMESTAMP"),
        ("actor", "VARCHAR"),
        ("action", "VARCHAR"),
        ("detail", "VARCHAR"),
    ],
    "scores": [
        ("unified_id", "VARCHAR"),
        ("as_of", "TIMESTAMP"),
        ("model", "VARCHAR"),
        ("model_version", "VARCHAR"),
        ("churn_probability", "DOUBLE"),
        ("purchase_probability", "DOUBLE"),
        ("reasons", "VARCHAR"),
        ("rfm_segment", "VARCHAR"),
        # added with the CLV model (K): an older scores table gains them (see below)
        ("clv", "DOUBLE"),
        ("expected_orders", "DOUBLE"),
        ("p_alive", "DOUBLE"),
        ("next_order_date", "DATE"),
        ("clv_model_version", "VARCHAR"),
    ],
    "_pipeline_steps": [
        ("run_id", "VARCHAR"),
        ("step", "VARCHAR"),
        ("as_of", "DATE"),
        ("status", "VARCHAR"),
        ("started_at", "TIMESTAMP"),
        ("finished_at", "TIMESTAMP"),
        ("summary", "VARCHAR"),
    ],
    "segment_changes": [
        ("segment", "VARCHAR"),
        ("unified_id", "VARCHAR"),
        ("as_of", "TIMESTAMP"),
        ("change", "VARCHAR"),
        ("previous_as_of", "TIMESTAMP"),
    ],
}
_PG_TYPES = {
    "VARCHAR": "text",
    "TIMESTAMP": "timestamp without time zone",
    "DOUBLE": "double precision",
    "DATE": "date",
    "BIGINT": "bigint",
}


def _columns(store, name: str) -> list[tuple[str, str]]:
    schema = getattr(store, "schema", "main") if store.dialect == "postgres" else "main"
    df = store.sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    )
    return list(zip(df["column_name"], df["data_type"], strict=True))


def test_registry_creates_the_tables_as_before(any_store) -> None:
    store = any_store
    others = [s for n, s in TABLES.items() if n not in SCHEMAS]
    ensure_tables(store, *others)
    ensure_tables(store, *others)  # idempotent: IF NOT EXISTS
    for name, cols in BEFORE.items():
        if store.dialect == "postgres":
            cols = [(c, _PG_TYPES[t]) for c, t in cols]
        assert _columns(store, name) == cols, name
    for s in others:
        assert [c for c, _ in _columns(store, s.name)] == s.names


def test_ensure_tables_adds_new_columns_to_an_old_table(any_store) -> None:
    store = any_store
    old = BEFORE["scores"][:8]  # the scores table before the CLV columns
    types = {"VARCHAR": "VARCHAR", "TIMESTAMP": "TIMESTAMP", "DOUBLE": "DOUBLE PRECISION"}
    store.execute("CREATE TABLE scores (" + ", ".join(f"{c} {types[t]}" for c, t in old) + ")")
    store.execute(
        "INSERT INTO scores VALUES ('u1', TIMESTAMP '2024-01-01', 'cip-churn', '1', 0.25, NULL, "
        "'[]', 'Champions')"
    )
    ensure_tables(store, table("scores"))
    ensure_tables(store, table("scores"))  # idempotent
    assert [c for c, _ in _columns(store, "scores")] == table("scores").names
    row = store.sql("SELECT * FROM scores").iloc[0]
    assert row["churn_probability"] == 0.25 and row["rfm_segment"] == "Champions"
    assert row[["clv", "p_alive", "next_order_date", "clv_model_version"]].isna().all()


def test_registry_holds_every_layers_tables() -> None:
    assert set(SCHEMAS) <= set(TABLES)
    for name in (*BEFORE, "segment_members", "segment_builds", "webhook_batches"):
        assert table(name).name == name
    assert "webhook_deliveries" in TABLES and "quarantine" in TABLES
    with pytest.raises(KeyError, match="not in the table registry"):
        table("nope")


def test_model_names_have_one_home() -> None:
    from cip.models._run import KIND_SPECS
    from cip.models.recommender.tracking import REGISTRY_NAME
    from cip.models.scoring import MODEL_NAMES
    from cip.serving.settings import ServingOptions

    assert REGISTERED_MODELS == {
        "churn": "cip-churn",
        "propensity": "cip-propensity",
        "recommender": "cip-recommender",
        "clv": "cip-clv",
    }
    assert {k: s.registry_name for k, s in KIND_SPECS.items()} == {
        k: REGISTERED_MODELS[k] for k in ("churn", "propensity")
    }
    assert list(MODEL_NAMES) == [REGISTERED_MODELS["churn"], REGISTERED_MODELS["propensity"]]
    assert REGISTRY_NAME == ServingOptions().recommender_model == REGISTERED_MODELS["recommender"]
    from cip.models.clv import REGISTRY_NAME as CLV_NAME

    assert REGISTERED_MODELS["clv"] == CLV_NAME


def test_quoting_round_trips_odd_names_and_values() -> None:
    assert quote_ident("scores") == '"scores"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_literal("it's") == "'it''s'"
    assert checked_ident("ok_1") == '"ok_1"'
    with pytest.raises(ConfigError, match="invalid table or column name"):
        checked_ident("x; DROP TABLE y")
    with DuckDBStore() as store:
        name, value = 'a "quoted" table', "O'Brien's \"shop\""
        store.execute(f"CREATE TABLE {quote_ident(name)} (v VARCHAR)")
        store.execute(f"INSERT INTO {quote_ident(name)} VALUES ({quote_literal(value)})")
        assert store.sql(f"SELECT v FROM {quote_ident(name)}")["v"].tolist() == [value]
