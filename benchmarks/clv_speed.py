"""Benchmark: BTYD speed on 1 M customers / ~10 M orders (synthetic, DuckDB store).

Orders are generated with numpy from a BG/NBD-like process (first purchases
spread over two years, personal Poisson rates, dropout after each purchase,
gamma-distributed amounts, 4 % returns) and appended to a DuckDB store's
orders-only table. Timed steps, each once:

1. ``summary``: :func:`features.btyd.build_btyd_summary` at ``as_of`` (DuckDB);
2. ``fit``: BG/NBD + Gamma-Gamma maximum likelihood (:func:`models.clv.fit_btyd`);
3. ``predict``: every output for every customer (``clv, expected_orders, p_alive,
   expected_spend_per_order, next_order_days``) through :class:`models.clv.CLVModel`.

Run: ``python -m benchmarks.clv_speed [--customers N] [--orders-per-customer K]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from cip.features.btyd import build_btyd_summary
from cip.models.clv import CLVModel, fit_btyd
from cip.profiles.store import ORDERS_SRC, open_store

from benchmarks._util import load_average, machine, stamp

START = pd.Timestamp("2022-01-01")
DAYS = 730


def synthetic_orders(n: int, per_customer: float, seed: int = 0) -> pa.Table:
    """About ``n * per_customer`` canonical order rows (vectorised, no Python loop)."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(0, DAYS - 30, n)
    span = DAYS - first
    lam = rng.gamma(1.0, 2.2 * (per_customer - 1) / (DAYS / 2), n)  # orders per day
    p = rng.beta(1.0, 12.0, n)
    extra = np.minimum(rng.poisson(lam * span), rng.geometric(p) - 1)
    counts = 1 + extra
    who = np.repeat(np.arange(n), counts)
    offset = np.repeat(np.cumsum(counts) - counts, counts)
    is_first = np.arange(who.size) == offset
    alive_span = span * np.minimum(1.0, extra / np.maximum(lam * span, 1e-9) + 0.05)
    day = first[who] + np.where(is_first, 0.0, rng.random(who.size) * alive_span[who])
    ts = (
        (START + pd.to_timedelta(np.round(day * 86400), unit="s"))
        .to_numpy()
        .astype("datetime64[us]")
    )
    aov = rng.gamma(3.0, 20.0, n)
    amount = np.round(rng.gamma(4.0, aov[who] / 4.0), 2)
    ids = pc.cast(pa.array(np.arange(who.size)), pa.string())
    m = who.size
    return pa.table(
        {
            "source": pa.array(["bench"] * 1, pa.string()).take(np.zeros(m, dtype=np.int64)),
            "record_id": ids,
            "source_record_id": ids,
            "order_id": ids,
            "ts": pa.array(ts),
            "customer_id": pc.cast(pa.array(who), pa.string()),
            "amount": pa.array(amount),
            "status": pa.array(np.where(rng.random(m) < 0.04, "returned", "completed")),
            "channel": pa.array(["web"] * 1).take(np.zeros(m, dtype=np.int64)),
            "currency": pa.array(["EUR"] * 1).take(np.zeros(m, dtype=np.int64)),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--orders-per-customer", type=float, default=10.0)
    ap.add_argument("--horizon-days", type=int, default=183)
    args = ap.parse_args()
    load = load_average()
    t = {}
    t0 = time.perf_counter()
    orders = synthetic_orders(args.customers, args.orders_per_customer)
    t["generate_s"] = time.perf_counter() - t0
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_store("duckdb", path=str(Path(tmp) / "b.duckdb")) as store,
    ):
        t0 = time.perf_counter()
        store.load_arrow(ORDERS_SRC, orders)
        t["load_s"] = time.perf_counter() - t0
        n_orders = len(orders)
        del orders
        as_of = START + pd.Timedelta(days=DAYS)
        t0 = time.perf_counter()
        s = build_btyd_summary(store, as_of, args.horizon_days)
        t["summary_s"] = time.perf_counter() - t0
    frame = s.rename(
        columns={c: f"btyd_{c}" for c in ("frequency", "recency", "T", "monetary_value")}
    )
    t0 = time.perf_counter()
    bg, gg = fit_btyd(frame)
    t["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = CLVModel("btyd", args.horizon_days, bg, gg).predict(frame)
    t["predict_s"] = time.perf_counter() - t0
    result = {
        "customers": len(frame),
        "orders": n_orders,
        **{k: round(v, 2) for k, v in t.items()},
        "btyd_fit_plus_predict_s": round(t["summary_s"] + t["fit_s"] + t["predict_s"], 2),
        "params": {**bg.params_, **gg.params_},
        "mean_clv": float(out["clv"].mean()),
    }
    print(f"{stamp()}; {machine()}; {load} at start")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
