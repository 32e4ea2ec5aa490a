"""Blocks in a workspace: ``blocks:`` config, fit-blocks, ``cip recommend`` for campaigns, erasure.

One small workspace (the serving shop: 12 customers, 13 items, consent and an
erased person in ``profiles``) fitted once per module.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from cip.pipelines.config import CIPConfig, load_config
from cip.profiles.errors import ConfigError, NotFoundError

pytest_plugins = ["tests._serving_fixtures", "tests._privacy_world"]

BLOCKS_YAML = """
blocks:
  home:
    kind: popular
    k: 4
    rules: {max_per_category: 2}
  again:
    kind: buy_again
    k: 2
    params: {half_life_days: 90}
  for_you:
    kind: personal
    k: 3
    params: {algorithm: itemknn}
"""


@pytest.fixture(scope="module")
def ws(_shop_template, tmp_path_factory):
    """The serving shop's store and registry (champion: item-kNN v1) as a workspace."""
    from cip.pipelines.api import Workspace

    w = Workspace.init(tmp_path_factory.mktemp("bws") / "ws")
    with open(w.config_path, "a") as fh:
        fh.write(BLOCKS_YAML)
    w.reload()
    shutil.copy(_shop_template / "cip.duckdb", w.store_path)
    shutil.copy(_shop_template / "mlflow.db", w.root / "mlflow.db")
    w.fit_result = w.fit_blocks()
    return w


def test_blocks_config_defaults_and_errors_name_block_and_key(tmp_path) -> None:
    assert {n: b.kind for n, b in CIPConfig().blocks.items()} == {
        k: k
        for k in (
            "personal",
            "similar",
            "bought_together",
            "buy_again",
            "popular",
            "trending",
            "recently_viewed",
            "upsell",
        )
    }
    bad = {
        "blocks:\n  cart:\n    kind: together\n": "blocks.cart.kind",
        "blocks:\n  cart:\n    kind: buy_again\n    params: {speed: 1}\n": "blocks.cart.params.speed",
        "blocks:\n  cart:\n    kind: popular\n    rules: {max_price: -1}\n": "blocks.cart.rules",
        "blocks:\n  cart:\n    kind: popular\n    k: 0\n": "blocks.cart.k",
    }
    for text, where in bad.items():
        p = tmp_path / "cip.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            load_config(p)


def test_fit_blocks_saves_named_blocks_and_logs_to_mlflow(ws) -> None:
    import mlflow

    r = ws.fit_result
    assert r.blocks == {"home": "popular", "again": "buy_again", "for_you": "personal"}
    assert r.people == 12 and r.items == 13 and r.run_id
    assert r.personal_model_version == "1"  # the registry's champion serves `personal`
    run = mlflow.get_run(r.run_id)
    assert run.data.params["again.half_life_days"] == "90"
    assert run.data.metrics["people"] == 12


def test_recommend_segment_writes_consenting_members_atomically(ws) -> None:
    out = ws.root / "exports" / "again.jsonl"
    res, rows = ws.recommend("again", segment="at_risk", n=2, out=out)
    # at_risk: U01-U07; U03 refused personalisation
    assert res.candidates == 6 and res.no_consent == 1 and res.rows == 6
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g["unified_id"] for g in got] == ["U01", "U02", "U04", "U05", "U06", "U07"]
    u1 = got[0]
    assert u1["customer_id"] == "C01" and u1["block"] == "again" and len(u1["items"]) == 2
    assert set(u1["items"]) <= {"a1", "a2", "a3"} and u1["fallback"] is None  # C01's purchases
    assert u1["model_version"] == res.model_version and res.model_version.startswith("blocks-")
    assert not list(out.parent.glob(".*.tmp"))


def test_recommend_all_formats_and_errors(ws) -> None:
    res, rows = ws.recommend("home", all_people=True, out=ws.root / "home.parquet")
    # everyone but U03 (no consent) and U11 (erased)
    assert res.rows == 10 and res.n == 4
    back = pd.read_parquet(ws.root / "home.parquet")
    assert len(back) == 10 and all(len(x) == 4 for x in back["items"])
    ws.recommend("home", all_people=True, n=2, out=ws.root / "home.csv")
    csv = pd.read_csv(ws.root / "home.csv")
    assert len(csv) == 10 and all(len(x.split()) == 2 for x in csv["items"])
    with pytest.raises(NotFoundError, match="home, again, for_you"):
        ws.recommend("nope", all_people=True)
    with pytest.raises(ConfigError, match="--segment"):
        ws.recommend("home")
    with pytest.raises(ConfigError, match="format"):
        ws.recommend("home", all_people=True, out=ws.root / "x.xlsx")


def test_cli_recommend_json(ws, monkeypatch) -> None:
    from cip.pipelines.cli import app
    from typer.testing import CliRunner

    monkeypatch.setenv("CIP_WORKSPACE", str(ws.root))
    out = ws.root / "cli.jsonl"
    r = CliRunner().invoke(
        app,
        [
            "recommend",
            "--segment",
            "at_risk",
            "--block",
            "for_you",
            "--n",
            "2",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["rows"] == 6 and doc["block"] == "for_you"
    assert len(out.read_text().splitlines()) == 6


def test_forget_removes_the_person_from_the_saved_blocks(ws) -> None:
    from cip.pipelines.workflows.blocks import forget_in_blocks, load_saved_blocks

    saved = load_saved_blocks(ws)
    before = saved.blocks.recommend("again", user_id="U02", k=2)
    assert set(before.sources) == {"buy_again"}
    n_users = saved.blocks.blocks["for_you"].model_.n_users_
    assert forget_in_blocks(ws, ["U02"]) == 1
    saved = load_saved_blocks(ws)
    assert "U02" not in set(saved.blocks.history.users)
    after = saved.blocks.recommend("again", user_id="U02", k=2)
    assert "buy_again" not in set(after.sources)  # no history left: fallbacks only
    assert saved.blocks.blocks["for_you"].model_.n_users_ == n_users - 1
    assert forget_in_blocks(ws, ["U02"]) == 0


def test_cip_forget_erases_the_person_from_the_saved_blocks(privacy_world) -> None:
    from cip.pipelines.api import Workspace
    from cip.pipelines.workflows.blocks import load_saved_blocks

    from tests._privacy_world import pick_person

    w = Workspace.open(privacy_world.root)
    w.fit_blocks()
    person = pick_person(w)
    saved = load_saved_blocks(w)
    row = saved.blocks.history.user_rows([person.unified_id])[0]
    assert row >= 0 and saved.blocks.history.counts[row].nnz > 0
    res = w.forget(unified_ids=person.unified_id, rewrite=False)
    assert res.files["blocks"] == 1
    saved = load_saved_blocks(w)
    assert person.unified_id not in set(saved.blocks.history.users)
    assert saved.blocks.history.counts[row].nnz == 0
    assert not (saved.blocks.history.purchases["u"] == row).any()
    r = saved.blocks.recommend("buy_again", user_id=person.unified_id, k=3)
    assert "buy_again" not in set(r.sources)  # served as an unknown person


def test_segment_export_carries_recommended_items_for_consenting_members(ws) -> None:
    from cip.activation import export_segment
    from cip.pipelines.workflows.blocks import recommender_for

    out = ws.root / "exports" / "at_risk.jsonl"
    with ws.open_store() as store:
        rec = recommender_for(ws, store, "again", 2)
        rep = export_segment(store, "at_risk", out, "jsonl", recommend=rec)
    rows = {r["unified_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rep.exported == len(rows) and "U01" in rows and "U03" in rows
    assert len(rows["U01"]["recommended_items"]) == 2
    assert set(rows["U01"]["recommended_items"]) <= {"a1", "a2", "a3"}
    assert rows["U03"]["recommended_items"] is None  # no consent to personalisation


def test_segment_webhook_carries_recommended_items_for_consenting_members(ws) -> None:
    """A destination with ``recommend: {block, n}``: every change carries recommended_items,
    null for a member without consent to personalisation; without fitted blocks, null for all."""
    from cip.activation import SegmentDefinition, WebhookDestination, deliver_webhooks
    from cip.activation.signing import new_secret
    from cip.pipelines.workflows.blocks import recommender_for

    from tests._webhook_receiver import Receiver

    secret = new_secret()
    seg = SegmentDefinition(
        name="at_risk",
        kind="rfm",
        rfm_segments=["At Risk"],  # not evaluated here: the changes are written below
        purpose="email",
        webhook="crm",
    )
    dest = {
        "crm": WebhookDestination(
            url="http://127.0.0.1:1/unused", secret=secret, recommend={"block": "again", "n": 2}
        )
    }
    with ws.open_store() as store:
        store.execute("DROP TABLE IF EXISTS segment_changes")
        store.execute(
            "CREATE TABLE segment_changes AS SELECT segment, unified_id, as_of, "
            "'entered' AS change, CAST(NULL AS TIMESTAMP) AS previous_as_of FROM segment_members"
        )
        rec = recommender_for(ws, store, "again", 2)
        with Receiver(fail_rate=0.0, secret=secret) as rx:
            dest["crm"] = dest["crm"].model_copy(update={"url": rx.url})
            (rep,) = deliver_webhooks(store, [seg], dest, recommend={"crm": rec})
        assert rx.rejected == 0 and rep.delivered == 1
        rows = {c["unified_id"]: c for b in rx.by_key.values() for c in b["changes"]}
        # U01..U07 entered; U05 refused e-mail (not sent), U03 refused personalisation
        assert sorted(rows) == ["U01", "U02", "U03", "U04", "U06", "U07"]
        assert rows["U03"]["recommended_items"] is None
        assert set(rows["U01"]["recommended_items"]) <= {"a1", "a2", "a3"}  # C01's purchases
        assert all(len(rows[u]["recommended_items"]) == 2 for u in rows if u != "U03")
        assert rep.recommended == 5 and rep.changes_sent == 6
        # no fitted blocks (None): the changes still go, with null items
        store.execute("DELETE FROM webhook_deliveries")
        store.execute("DELETE FROM webhook_batches")
        with Receiver(fail_rate=0.0, secret=secret) as rx:
            dest["crm"] = dest["crm"].model_copy(update={"url": rx.url})
            (rep,) = deliver_webhooks(store, [seg], dest, recommend={"crm": None})
        rows = [c for b in rx.by_key.values() for c in b["changes"]]
        assert len(rows) == 6 and all(r["recommended_items"] is None for r in rows)
        assert rep.recommended == 0
        # a destination without recommend: no recommended_items key at all
        store.execute("DELETE FROM webhook_deliveries")
        store.execute("DELETE FROM webhook_batches")
        with Receiver(fail_rate=0.0, secret=secret) as rx:
            plain = {"crm": dest["crm"].model_copy(update={"url": rx.url, "recommend": None})}
            deliver_webhooks(store, [seg], plain, recommend={"crm": rec})
        rows = [c for b in rx.by_key.values() for c in b["changes"]]
        assert len(rows) == 6 and all("recommended_items" not in r for r in rows)


def test_webhook_recommend_names_a_configured_block(tmp_path) -> None:
    p = tmp_path / "cip.yaml"
    p.write_text(
        "blocks:\n  again: {kind: buy_again}\n"
        "segments:\n  webhooks:\n    crm:\n      url: https://crm.example/hook\n"
        "      recommend: {block: personal, n: 4}\n"
    )
    with pytest.raises(ConfigError, match=r"segments\.webhooks\.crm\.recommend\.block"):
        load_config(p)
    p.write_text(p.read_text().replace("block: personal", "block: again"))
    assert load_config(p).segments.webhooks["crm"].recommend.n == 4
