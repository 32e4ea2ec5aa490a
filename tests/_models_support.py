"""Test support for the model tests: a small orders-only shop and a ready MLflow store.

The shop has no events and no identity step.

Customers arrive over the window, buy at a personal rate, and lapse at a
personal time that depends non-monotonically on their typical basket (mid-size
baskets stay, small and large ones leave soon: a signal trees find and a
logistic regression on RFM cannot); the orders go into the store's orders-only table, so the
``orders`` view and the feature layer see them like an ingested orders export.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from cip.profiles.store import ORDERS_SRC

START = datetime(2023, 1, 1)
DAYS = 540


def orders_frame(n_customers: int = 600, seed: int = 0) -> pd.DataFrame:
    """Canonical ``orders`` rows (with lineage columns) for ``n_customers``."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, DAYS - 120, n_customers)
    aov = rng.lognormal(3.5, 0.6, n_customers)
    loyal = (aov > 25) & (aov < 50)
    life = rng.exponential(np.where(loyal, 500.0, 90.0))
    end = np.minimum(start + life, DAYS)
    rate = rng.gamma(2.0, 1.0 / 30.0, n_customers)  # orders per day
    counts = rng.poisson(rate * (end - start)) + 1
    who = np.repeat(np.arange(n_customers), counts)
    day = start[who] + rng.random(who.size) * (end[who] - start[who])
    ts = pd.to_datetime(START) + pd.to_timedelta(np.round(day * 86400), unit="s")
    amount = np.round(aov[who] * rng.lognormal(0.0, 0.2, who.size), 2)
    returned = rng.random(who.size) < 0.04
    order_id = np.array([f"o{i:07d}" for i in range(who.size)])
    return pd.DataFrame(
        {
            "source": "shop",
            "record_id": order_id,
            "source_record_id": order_id,
            "ingested_at": pd.Timestamp(START + timedelta(days=DAYS + 1)),
            "order_id": order_id,
            "ts": ts.astype("datetime64[us]"),
            "customer_id": np.array([f"c{i:05d}" for i in range(n_customers)])[who],
            "email": None,
            "phone": None,
            "loyalty_id": None,
            "anonymous_id": None,
            "amount": amount,
            "currency": "EUR",
            "status": np.where(returned, "returned", "completed"),
            "channel": "web",
            "delivery_days": np.nan,
        }
    )


def load_orders(store, n_customers: int = 600, seed: int = 0) -> pd.DataFrame:
    """Append :func:`orders_frame` to the store's orders-only table; returns it."""
    df = orders_frame(n_customers, seed)
    store.load_arrow(ORDERS_SRC, df, mode="append")
    return df


_TEMPLATE: Path | None = None


def mlflow_db(dest: Path) -> str:
    """A tracking URI for a SQLite MLflow store at ``dest``, ready to use.

    MLflow creates a new store by running ~50 schema migrations (10-20 s on a
    busy 2-core machine); the tests migrate one empty store per session and copy it.
    """
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="cip-mlflow-template-"))
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _TEMPLATE = folder / "mlflow.db"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE, dest)
    return f"sqlite:///{dest}"
