"""Message facts, attribution and lift (issue M): hand-made fixtures and the campaign simulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from cip.activation.measure import (
    attribute_orders,
    campaign_outcomes,
    lift,
    message_facts,
    newcombe_interval,
    summarise_attribution,
    sync_trigger_log,
    welch_interval,
)
from cip.activation.triggers import ensure_trigger_tables
from cip.pipelines.api import Workspace
from cip.pipelines.cli import main
from cip.pipelines.simulator.campaigns import simulate_campaigns
from cip.profiles.ingest import ingest_source
from cip.profiles.sources import SourceConfig
from cip.profiles.store import open_store
from scipy import stats

from tests._models_support import mlflow_db

T0 = pd.Timestamp("2025-03-03 10:00")


def _load(store, table: str, rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    df.insert(0, "source", "shop")
    df["source_record_id"] = df["record_id"]
    df["ingested_at"] = T0
    df["ts"] = pd.to_datetime(df["ts"])
    store.load_arrow(table, df)


def _cli(capsys, ws, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--workspace", str(ws.root), *args])
    return code, capsys.readouterr().out


_EXPORT = """\
Message Id,Event,When,Recipient,Campaign,Medium,Bot
m1,sent,2025-03-01 09:00:00,ANNA@Example.com,spring,email,
m1,delivered,2025-03-01 09:00:05,anna@example.com,spring,email,
m1,opened,2025-03-01 09:00:06,anna@example.com,spring,email,
m1,clicked,2025-03-01 12:00:00,anna@example.com,spring,email,
m2,sent,2025-03-02 09:00:00,ben@example.com,spring,email,
m2,opened,2025-03-02 18:00:00,ben@example.com,spring,email,true
m3,control,2025-03-01 09:00:00,carl@example.com,spring,email,
m4,sent,2025-03-04 09:00:00,ben@example.com,late,email,
"""


def test_store_purchase_joined_by_loyalty_card_is_attributed_to_an_email_click(
    tmp_workspace, tmp_path, capsys
) -> None:
    ws = tmp_workspace
    with ws.open_store() as store:
        _load(
            store,
            "customers",
            [
                {"record_id": "c1", "ts": "2025-01-01", "customer_id": "A",
                 "email": "anna@example.com", "loyalty_id": "L-77"},
                {"record_id": "c2", "ts": "2025-01-01", "customer_id": "B",
                 "email": "ben@example.com"},
                {"record_id": "c3", "ts": "2025-01-01", "customer_id": "C",
                 "email": "carl@example.com"},
            ],
        )  # fmt: skip
        _load(
            store,
            "_orders_src",
            [  # Anna pays at the till with her loyalty card two days after her click
                {"record_id": "o1", "order_id": "T-1", "ts": "2025-03-03 12:00",
                 "loyalty_id": "L-77", "amount": 80.0, "channel": "store"},
                # Ben buys online, two days after a send he opened (a machine open)
                {"record_id": "o2", "order_id": "W-1", "ts": "2025-03-04 08:00",
                 "customer_id": "B", "amount": 20.0, "channel": "web"},
                # Anna again, 20 days later: outside the 7-day window
                {"record_id": "o3", "order_id": "W-2", "ts": "2025-03-21 08:00",
                 "customer_id": "A", "amount": 50.0, "channel": "web"},
            ],
        )  # fmt: skip
    assert _cli(capsys, ws, "unify", "--json")[0] == 0
    export = tmp_path / "esp.csv"
    export.write_text(_EXPORT)
    src = SourceConfig.model_validate(
        {
            "name": "esp",
            "table": "message_events",
            "path": str(export),
            "columns": {
                "message_id": "Message Id", "ts": "When", "email": "Recipient",
                "campaign": "Campaign", "channel": "Medium", "machine_open": "Bot",
                "event_type": {"expr": "CASE \"Event\" WHEN 'sent' THEN 'send' WHEN 'opened' "
                               "THEN 'open' WHEN 'clicked' THEN 'click' ELSE \"Event\" END"},
            },
        }
    )  # fmt: skip
    with ws.open_store() as store:
        rep = ingest_source(store, src, base_dir=tmp_path)
        assert rep.rows_loaded == 8 and rep.rows_quarantined == 0
        facts = message_facts(store)
    assert facts["unified_id"].notna().all() and len(facts) == 8
    opens = facts[facts["event_type"] == "open"].set_index("message_id")["machine"]
    assert opens.to_dict() == {"m1": True, "m2": True}  # 1 s after delivery; provider's flag
    code, out = _cli(
        capsys, ws, "measure", "attribution", "--by", "campaign,order_channel", "--json"
    )
    res = json.loads(out)
    assert code == 0 and res["orders"] == 3 and res["attributed_orders"] == 1
    assert res["rows"] == [
        {"campaign": "spring", "order_channel": "store", "orders": 1, "revenue": 80.0,
         "mean_messages_before": 1.0}
    ]  # fmt: skip
    # counted on sends: Ben's web order (send m2 two days before) is attributed too
    att = Workspace.open(ws.root).measure.attribution(touch="send", by=("campaign", "day"))
    assert {(r["campaign"], r["day"], r["orders"]) for r in att.rows} == {
        ("spring", "2025-03-03", 1),
        ("spring", "2025-03-04", 1),
    }
    # Carl is spring's control group; Anna and Ben were sent: lift is reported with warnings
    code, out = _cli(capsys, ws, "measure", "lift", "--campaign", "spring", "--json")
    lr = json.loads(out)["campaigns"][0]
    assert code == 0 and (lr["n_treatment"], lr["n_control"]) == (2, 1)
    conv = lr["metrics"][0]
    assert conv["metric"] == "conversion_rate" and conv["treatment"] == 1.0
    assert conv["control"] == 0.0 and lr["warnings"]  # far too small to detect 10 %
    code, _ = _cli(capsys, ws, "measure", "lift", "--campaign", "nope")
    assert code == 4


def test_trigger_log_becomes_send_and_control_facts_once() -> None:
    with open_store("duckdb") as store:
        ensure_trigger_tables(store)
        rows = [
            ("a", "cart", "u1", "sent", False, "ok"),
            ("b", "cart", "u2", "held_out", True, "control group of cart (10 %, bucket 3.00)"),
            ("c", "cart", "u3", "held_out", True, "global control group (5 %, bucket 1.00)"),
            ("d", "cart", "u4", "capped", False, "frequency cap"),
            ("e", "cart", "u5", "no_consent", False, "no consent"),
        ]
        for mid, trig, uid, decision, control, reason in rows:
            store.execute(
                'INSERT INTO messages (message_id, "trigger", unified_id, window_key, step, '
                "channel, decision, control, reason, decided_at) VALUES (?, ?, ?, 'k', 0, "
                "'email', ?, ?, ?, ?)",
                [mid, trig, uid, decision, control, reason, T0.to_pydatetime()],
            )
        assert sync_trigger_log(store) == 3
        assert sync_trigger_log(store) == 0  # idempotent
        f = message_facts(store).sort_values("unified_id")
    assert list(f["event_type"]) == ["send", "control", "control"]
    assert list(f["scope"]) == ["trigger", "trigger", "global"]
    assert set(f["campaign"]) == {"cart"}


def test_attribution_first_last_touch_and_message_count() -> None:
    facts = pd.DataFrame(
        [  # unified_id, ts, event_type, campaign, channel
            ("u1", "2025-03-01 09:00", "send", "a", "email"),
            ("u1", "2025-03-01 10:00", "click", "a", "email"),
            ("u1", "2025-03-02 09:00", "send", "b", "sms"),
            ("u1", "2025-03-02 09:30", "click", "b", "sms"),
            ("u1", "2025-02-01 09:00", "click", "old", "email"),  # outside the window
            ("u2", "2025-03-05 09:00", "click", "a", "email"),  # after u2's order
        ],
        columns=["unified_id", "ts", "event_type", "campaign", "channel"],
    ).assign(ts=lambda d: pd.to_datetime(d["ts"]), machine=False)
    orders = pd.DataFrame(
        [
            ("u1", "o1", "2025-03-03 09:00", 30.0, "app"),
            ("u2", "o2", "2025-03-04 00:00", 10.0, "web"),
        ],
        columns=["unified_id", "order_id", "ts", "amount", "order_channel"],
    ).assign(ts=lambda d: pd.to_datetime(d["ts"]))
    a = attribute_orders(facts, orders, window_days=7)
    assert len(a) == 1
    r = a.iloc[0]
    assert (r["first_campaign"], r["last_campaign"], r["last_channel"]) == ("a", "b", "sms")
    assert r["messages"] == 2
    first = summarise_attribution(a, model="first", by=("campaign", "channel"))
    assert [(x["campaign"], x["channel"], x["orders"]) for x in first.rows] == [("a", "email", 1)]
    with pytest.raises(ValueError, match="unknown attribution dimension"):
        summarise_attribution(a, by=("hour",))


def test_interval_methods_match_published_and_scipy_values() -> None:
    # Newcombe (1998), table II example (h): 56/70 vs 48/80 -> 0.0524 to 0.3339
    lo, hi = newcombe_interval(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(3, 1, 300), rng.lognormal(3, 0.5, 200)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert np.allclose(welch_interval(a, b), (ci.low, ci.high))
    big = pd.DataFrame(
        {"treated": [True, False] * 20000, "converted": [False] * 40000, "revenue": 0.0,
         "orders": 0}
    )  # fmt: skip
    big.loc[::20, "converted"] = True  # treated: 10 %
    big.loc[1::40, "converted"] = True  # control: 5 %
    res = lift(big, "x", effect=0.5)
    assert not res.warnings and math.isclose(res.metric("conversion_rate").difference, 0.05)
    small = lift(big.iloc[:2000], "x", effect=0.5)  # MDE ~2.4 points > 2.5 % wanted
    assert "groups too small" in small.warnings[0]


def _covers(effect: float, seeds: range) -> tuple[int, int]:
    cover = exclude0 = 0
    for seed in seeds:
        sim = simulate_campaigns(1500, seed=seed, effect=effect, control_pct=50)
        res = lift(sim.assignments, "c0")  # one row per person: treated, converted, ...
        m = res.metric("conversion_rate")
        truth = float(sim.truth["true_conversion_lift"].iloc[0])
        cover += m.ci_low <= truth <= m.ci_high
        exclude0 += m.significant
    return cover, exclude0


def test_lift_intervals_cover_the_simulated_truth() -> None:
    cover, _ = _covers(1.0, range(20))
    assert cover >= 17
    _, false_alarms = _covers(0.0, range(100, 120))
    assert false_alarms <= 2


def test_campaign_outcomes_rebuild_the_simulated_groups_from_events_and_orders() -> None:
    sim = simulate_campaigns(800, campaigns=2, seed=3, control_pct=30)
    groups = campaign_outcomes(sim.message_events, sim.orders, window_days=7)
    assert sorted(groups) == ["c0", "c1"]
    for name, g in groups.items():
        want = sim.assignments[sim.assignments["campaign"] == name].sort_values("unified_id")
        assert list(g["unified_id"]) == list(want["unified_id"])
        assert (g["treated"].to_numpy() == want["treated"].to_numpy()).all()
        assert (g["orders"].to_numpy() == want["orders"].to_numpy()).all()
        assert np.allclose(g["revenue"].to_numpy(), want["revenue"].to_numpy())
        rev = lift(g, name).metric("revenue_per_person")
        assert math.isfinite(rev.ci_low) and rev.ci_low < rev.ci_high


def test_train_uplift_on_a_simulated_campaign_registers_gates_and_scores(
    tmp_workspace, capsys
) -> None:
    from cip.pipelines.simulator.campaigns import history_orders

    mlflow_db(tmp_workspace.root / "mlflow.db")  # a migrated store (copied, not rebuilt)
    sim = simulate_campaigns(600, seed=5, control_pct=50)
    past = history_orders(sim.persons, sim.assignments["ts"].min(), seed=5)
    orders = pd.concat([past, sim.orders], ignore_index=True)
    ws = tmp_workspace
    with ws.open_store() as store:
        _load(
            store,
            "_orders_src",
            orders.rename(columns={"unified_id": "customer_id", "order_channel": "channel"})
            .assign(record_id=lambda d: d["order_id"], status="completed")
            .to_dict("records"),
        )
        ev = sim.message_events.drop(columns="scope").assign(
            record_id=lambda d: d["message_id"] + d["event_type"],
            customer_id=lambda d: d["unified_id"],
        )
        _load(store, "message_events", ev.to_dict("records"))
    code, out = _cli(capsys, ws, "train", "uplift", "--campaign", "c0", "--json")
    res = json.loads(out)
    assert code == 0, out
    m = res["metrics"]
    assert set(m) == {"t_learner", "x_learner", "purchase_probability", "random"}
    champ = m[res["champion"]]["qini"]
    assert res["promoted"] == (champ > 0 and champ > m["purchase_probability"]["qini"])
    assert res["registry_name"] == "cip-uplift-c0" and res["version"] == "1"
    with ws.open_store() as store:
        sc = store.sql("SELECT * FROM uplift_scores")
    assert len(sc) == res["scored"] == 600 and sc["sleeping_dog"].sum() == res["sleeping_dogs"]
    truth = sc.merge(sim.persons, on="unified_id")
    # the model learned something true: persuadables score above sleeping dogs on average
    by_type = truth.groupby("response_type")["uplift"].mean()
    assert by_type["persuadable"] > by_type["sleeping_dog"]
    code, _ = _cli(capsys, ws, "train", "uplift", "--campaign", "nope")
    assert code == 4


def test_simulate_with_campaigns_writes_sources_and_truth(tmp_path) -> None:
    from cip.pipelines.simulator import simulate

    res = simulate(tmp_path, customers=120, days=30, seed=2, campaigns=2)
    decls = {d["name"]: SourceConfig.model_validate(d) for d in res.sources}
    assert decls["campaign_messages"].table == "message_events"
    assert decls["campaign_orders"].table == "orders"
    msgs = pd.read_csv(tmp_path / "campaign_messages.csv")
    assert set(msgs["event"]) <= {"send", "control", "click"} and res.counts[
        "campaign_messages"
    ] == len(msgs)
    truth = pd.read_parquet(tmp_path / "_truth" / "campaign_truth.parquet")
    assert list(truth["campaign"]) == ["c0", "c1"] and (truth["true_conversion_lift"] > 0).all()
    persons = pd.read_parquet(tmp_path / "_truth" / "campaign_persons.parquet")
    assert set(persons["response_type"]) <= {
        "persuadable",
        "sure_thing",
        "lost_cause",
        "sleeping_dog",
    }
    assert msgs["recipient"].isin(persons["email"]).all()


def test_global_control_group_compares_everyone_messaged_with_the_global_holdout() -> None:
    rows = [  # unified_id, campaign, event_type, scope
        ("u1", "cart", "send", "trigger"), ("u1", "price", "send", "trigger"),
        ("u2", "price", "send", "trigger"), ("u3", "cart", "control", "trigger"),
        ("g1", "cart", "control", "global"), ("g2", "price", "control", "global"),
    ]  # fmt: skip
    facts = pd.DataFrame(rows, columns=["unified_id", "campaign", "event_type", "scope"]).assign(
        ts=T0, channel="email"
    )
    orders = pd.DataFrame(
        {"unified_id": ["u1", "g2", "u3"], "ts": T0 + pd.Timedelta(days=1), "amount": 10.0}
    )
    per = campaign_outcomes(facts, orders)
    assert sorted(per) == ["cart", "price"]  # global holdouts are not a trigger's control
    assert per["cart"].set_index("unified_id")["treated"].to_dict() == {"u1": True, "u3": False}
    g = campaign_outcomes(facts, orders, global_control=True)["*"].set_index("unified_id")
    assert g["treated"].to_dict() == {"g1": False, "g2": False, "u1": True, "u2": True}
    assert g["orders"].to_dict() == {"g1": 0, "g2": 1, "u1": 1, "u2": 0}


def test_best_channel_from_clicks_with_the_shop_default_below_five_responses() -> None:
    from cip.activation.measure import best_channel_and_hour

    rows = []
    for i in range(6):  # u1: six e-mails and six SMS at 19:00; clicks only the SMS
        for ch in ("email", "sms"):
            ts = T0.normalize() + pd.Timedelta(days=i, hours=19)
            rows.append(("u1", f"{ch}{i}", ch, "send", ts))
            if ch == "sms":
                rows.append(("u1", f"{ch}{i}", ch, "click", ts + pd.Timedelta(minutes=5)))
    rows += [  # u2: one push click only -> the shop's default (sms has the best rate)
        ("u2", "p1", "push", "send", T0), ("u2", "p1", "push", "click", T0),
        ("u2", "p2", "push", "send", T0), ("u2", "e1", "email", "send", T0), ("u2", "e2", "email", "send", T0),
    ]  # fmt: skip
    facts = pd.DataFrame(rows, columns=["unified_id", "message_id", "channel", "event_type", "ts"])
    best = best_channel_and_hour(facts.assign(machine=False)).set_index("unified_id")
    assert best.loc["u1", ["channel", "hour", "basis"]].tolist() == ["sms", 19, "person"]
    assert best.loc["u2", ["channel", "basis"]].tolist() == ["sms", "default"]
    assert best.loc["u2", "responses"] == 1
