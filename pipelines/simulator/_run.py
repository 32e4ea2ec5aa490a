"""One simulation run: the shared world, then people chunk by chunk into source tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cip.pipelines.simulator import _outcomes as outcomes
from cip.pipelines.simulator import _src_orders as src_o
from cip.pipelines.simulator import _src_people as src_p
from cip.pipelines.simulator._activity import simulate_activity, window_start
from cip.pipelines.simulator._format import (
    Counters,
    bad_rows,
    const,
    pick,
    prefixed,
    set_where,
    strs,
)
from cip.pipelines.simulator._people import PURPOSES, build_people, choose_specials
from cip.pipelines.simulator._sessions import expand_sessions, store_receipts
from cip.pipelines.simulator._world import CATEGORIES, STYLES, build_catalog

#: people simulated at once (bounds memory; part of what makes the output reproducible)
CHUNK_PEOPLE = 50_000


@dataclass
class ChunkOutput:
    tables: dict[str, pa.Table]  # source name -> table
    truth: dict[str, pa.Table] = field(default_factory=dict)  # truth file key -> table


class Run:
    """The state shared by all chunks of one simulation (catalog, specials, id counters)."""

    def __init__(self, *, customers: int, days: int, seed: int, end: date) -> None:
        self.customers, self.days, self.seed, self.end = customers, days, seed, end
        world = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        self.catalog = build_catalog(world)
        self.specials = choose_specials(world, customers, CHUNK_PEOPLE)
        self.start = window_start(end, days)
        self.t0 = int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())  # fmt: skip
        self.end_sec = days * 86400 - 1
        self.ids = Counters()
        self._world_rng = world

    def products_table(self) -> pa.Table:
        """The catalog export (one broken price)."""
        cat, rng = self.catalog, self._world_rng
        n = len(cat.sku)
        stock = np.where(cat.in_stock, np.where(rng.random(n) < 0.1, 2, 0), 1)
        price = pc.cast(pa.array(cat.price), pa.string())
        self.bad_products = bad_rows(rng, n, rate=0.0)
        return pa.table(
            {
                "sku": strs(cat.sku),
                "name": strs(cat.title),
                "category": pick(np.array(CATEGORIES), cat.category),
                "price_gbp": set_where(price, self.bad_products, "call us"),
                "stock_status": pick(np.array(["in stock", "out of stock", "In Stock"]), stock),
            }
        )

    def chunk(
        self, c: int, gidx: np.ndarray, on_stage: Callable[[float], None] | None = None
    ) -> ChunkOutput:
        """Simulate the people ``gidx`` (chunk number ``c``) and build every source's rows.

        ``on_stage(fraction)`` is called as the chunk's stages complete.
        """
        stage = on_stage or (lambda _f: None)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, c]))
        days, cat = self.days, self.catalog
        people = build_people(rng, gidx, days=days, seed=self.seed, catalog=cat, specials=self.specials)  # fmt: skip
        act = simulate_activity(rng, people, days, self.start)
        stage(0.2)
        web_ev, web_ln = expand_sessions(rng, people, cat, act.web_person, act.web_day, act.web_buy, app=False, days=days)  # fmt: skip
        app_ev, app_ln = expand_sessions(rng, people, cat, act.app_person, act.app_day, act.app_buy, app=True, days=days)  # fmt: skip
        web_ev["session_gid"] = self.ids.take("web_session", len(act.web_person))  # per session
        orders, lines = outcomes.online_orders(rng, people, act, web_ln, app_ln, web_ln["logged_in"], self.end_sec)  # fmt: skip
        is_app = orders["app"]
        order_no = pc.binary_join_element_wise(
            pick(np.array(["WEB-", "APP-"]), is_app.astype(int)),
            prefixed("", self.ids.take("online_order", len(is_app)), 8),
            "",
        )
        web_no = order_no.take(pa.array(np.flatnonzero(~is_app)))
        app_no = order_no.take(pa.array(np.flatnonzero(is_app)))
        _, first_line = np.unique(lines["order"], return_index=True)
        first_item = np.full(len(is_app), -1, dtype=np.int64)
        first_item[lines["order"][first_line]] = lines["item"][first_line]
        rv = outcomes.reviews(rng, orders, first_item, self.end_sec)
        camp = outcomes.campaign_days(self.start.weekday(), days)
        em = outcomes.email_events(rng, people, act, camp, self.end_sec)
        stage(0.45)
        rc = store_receipts(rng, people, cat, act)

        ctx = src_o.Ctx(
            rng=rng, people=people, catalog=cat, ids=self.ids, t0=self.t0, end_sec=self.end_sec,
            seed=self.seed,
        )  # fmt: skip
        built = {
            "crm_customers": src_p.crm_customers(ctx),
            "web_events": src_o.web_events(ctx, web_ev, web_no),
            "app_events": src_o.app_events(ctx, app_ev, app_no),
            "email_events": src_p.email_events(ctx, em, camp),
            "online_orders": src_o.online_orders(ctx, orders, lines, order_no),
            "store_purchases": src_o.store_purchases(ctx, rc),
            "reviews": src_p.reviews(ctx, rv, order_no),
        }
        stage(0.9)
        tables = {name: b[0] for name, b in built.items()}
        truth_parts, bad_parts = [], []
        for name, (_, truth, bad) in built.items():
            for table, (ids, person) in truth.items():
                truth_parts.append(
                    pa.table(
                        {
                            "source": const(name, len(ids)),
                            "table": const(table, len(ids)),
                            "source_record_id": ids,
                            "person_id": pick(people.person_id, person, as_dict=True),
                        }
                    )
                )
            for ids, defect in bad:
                bad_parts.append(
                    pa.table(
                        {
                            "source": const(name, len(ids)),
                            "source_record_id": ids,
                            "defect": const(defect, len(ids)),
                        }
                    )
                )
        if c == 0:
            ids = strs(self.catalog.sku[self.bad_products])
            bad_parts.insert(0, pa.table({"source": const("products", len(ids)), "source_record_id": ids, "defect": const("non-numeric price", len(ids))}))  # fmt: skip
        persons = self._persons(people, act, orders, rv)
        truth = {
            "person_truth": pa.concat_tables(truth_parts),
            "persons": persons,
            "bad_rows": pa.concat_tables(bad_parts),
        }
        return ChunkOutput(tables=tables, truth=truth)

    def _persons(self, people, act, orders, rv) -> pa.Table:
        """Per-person truth: latent traits, behaviour and outcome."""
        n = people.n
        op = orders["person"]
        day0 = np.datetime64(self.start)
        churned = act.churn_day >= 0
        churn_date = day0 + np.maximum(act.churn_day, 0).astype("timedelta64[D]")
        final = people.consent.astype(int).copy()
        rows = np.flatnonzero(people.withdraw >= 0)
        final[rows, people.withdraw[rows]] = 0
        cols = {
            "person_id": strs(people.person_id),
            "taste": pa.array(people.taste),
            "category_1": pick(np.array(CATEGORIES), people.fav_cats[:, 0]),
            "category_2": pick(np.array(CATEGORIES), people.fav_cats[:, 1]),
            "category_3": pick(np.array(CATEGORIES), people.fav_cats[:, 2]),
            "style": pick(np.array(STYLES), people.style),
            "customer_id": pick(people.customer_id, np.arange(n)),
            "email": strs(people.email),
            "new_email": pick(people.new_email, np.arange(n)),
            "phone": pick(people.phone, np.arange(n)),
            "loyalty_id": pick(people.loyalty_id, np.arange(n)),
            "newsletter": pa.array(people.newsletter),
            "app_user": pa.array(people.app_share > 0),
            "store_shopper": pa.array(people.store_rate > 0),
            "placeholder_phone": pa.array(people.placeholder),
            "family": pa.array(people.family),
            "join_date": pa.array(day0 + people.join_day.astype("timedelta64[D]")),
            "churned": pa.array(churned),
            "churn_date": pa.array(churn_date, mask=~churned),
            "engagement": pa.array(people.z_eng),
            "oneoff": pa.array(people.oneoff),
            "n_purchases": pa.array(act.n_orders),
            "n_online_orders": pa.array(np.bincount(op, minlength=n)),
            "n_late_deliveries": pa.array(
                np.bincount(op, weights=orders["late"], minlength=n).astype(np.int64)
            ),  # fmt: skip
            "n_returns": pa.array(
                np.bincount(op, weights=orders["returned"], minlength=n).astype(np.int64)
            ),  # fmt: skip
            "n_bad_reviews": pa.array(
                np.bincount(rv["person"], weights=rv["rating"] <= 2, minlength=n).astype(np.int64)
            ),  # fmt: skip
            "bad_experience": pa.array(act.bad),
        }
        for j, purpose in enumerate(PURPOSES):
            cols[f"consent_{purpose}"] = pa.array(final[:, j] == 1, mask=final[:, j] < 0)
        return pa.table(cols)
